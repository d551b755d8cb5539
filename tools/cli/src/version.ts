// The CLI's version: put in by the bundler (tools/cli/build.mjs), or read from the root
// package.json when the sources run through tsx.
import { readFileSync } from 'node:fs';

export function cliVersion(): string {
  const built = process.env['CAIRN_CLI_VERSION'];
  if (built) return built;
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
