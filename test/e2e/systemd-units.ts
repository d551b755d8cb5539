// Reads a systemd unit of infra/systemd the way systemd would start it, without systemd: its
// Environment= and EnvironmentFile= (later ones win), specifiers (%i %H %S %%) and ${VAR}/$VAR
// in ExecStart, so a test can run the very command line and environment the unit gives.
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';

export interface UnitCommand {
  readonly argv: string[];
  readonly env: Record<string, string>;
  readonly stateDirectories: string[];
  /** Restart= and RestartSec=: whether systemd starts the service again after it failed, and after how long. */
  readonly restart: { readonly onFailure: boolean; readonly delayMs: number };
}

export interface UnitContext {
  /** The template instance (`9111` of cairn-data-mover@9111). */
  readonly instance?: string;
  /** Where an absolute path of the unit lives on this machine (`/etc/cairn/x` → a test dir). */
  readonly path: (absolute: string) => string;
  /** Drop-in overrides: Environment= lines appended after the unit's own. */
  readonly override?: Record<string, string>;
}

/** `A=1 "B=two words"` → entries (systemd's quoting, the simple cases). */
function words(text: string): string[] {
  const out: string[] = [];
  const re = /"([^"]*)"|'([^']*)'|(\S+)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(m[1] ?? m[2] ?? m[3]!);
  return out;
}

function assignments(entries: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of entries) {
    const i = e.indexOf('=');
    if (i > 0) out[e.slice(0, i)] = e.slice(i + 1);
  }
  return out;
}

async function environmentFile(file: string): Promise<Record<string, string>> {
  const text = await readFile(file, 'utf8');
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#') && !l.startsWith(';'));
  return assignments(lines.map((l) => l.replace(/^([A-Za-z_][A-Za-z0-9_]*)=(["'])(.*)\2$/, '$1=$3')));
}

export async function unitCommand(unitFile: string, ctx: UnitContext): Promise<UnitCommand> {
  const text = await readFile(unitFile, 'utf8');
  const service: Array<[string, string]> = [];
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) { section = s[1]!; continue; }
    const i = line.indexOf('=');
    if (section === 'Service' && i > 0) service.push([line.slice(0, i), line.slice(i + 1)]);
  }
  const spec = (v: string) => v.replace(/%(.)/g, (_m, c: string) => {
    switch (c) {
      case 'i': return ctx.instance ?? '';
      case 'H': return hostname();
      case 'S': return '/var/lib';
      case '%': return '%';
      default: throw new Error(`${unitFile}: specifier %${c} is not handled here`);
    }
  });
  /** Absolute paths of the unit (and in its values) moved to where this machine keeps them. */
  const mapPaths = (v: string) => v.replace(/(^|[\s=:,])(\/(?!\/)[^\s,:]+)/g, (_m, pre: string, p: string) => pre + ctx.path(p));
  const env: Record<string, string> = {};
  for (const [key, value] of service) {
    if (key === 'Environment') Object.assign(env, assignments(words(spec(value))));
    if (key === 'EnvironmentFile') {
      const optional = value.startsWith('-');
      const file = ctx.path(spec(optional ? value.slice(1) : value));
      const vars = await environmentFile(file).catch((e: unknown) => { if (optional) return {}; throw e; });
      Object.assign(env, vars);
    }
  }
  Object.assign(env, ctx.override ?? {});
  for (const k of Object.keys(env)) env[k] = mapPaths(env[k]!);
  const exec = service.filter(([k]) => k === 'ExecStart').at(-1)?.[1];
  if (!exec) throw new Error(`${unitFile} has no ExecStart`);
  const argv = words(spec(exec)).flatMap((w) => {
    // $VAR alone splits into words (empty: none); ${VAR} is one word.
    const bare = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(w);
    if (bare) return words(env[bare[1]!] ?? '');
    return [w.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_m, k: string) => env[k] ?? '')];
  }).map((a) => (a.startsWith('/') ? ctx.path(a) : a));
  const stateDirectories = service.filter(([k]) => k === 'StateDirectory').flatMap(([, v]) => words(spec(v))).map((d) => ctx.path(`/var/lib/${d}`));
  const last = (key: string) => service.filter(([k]) => k === key).at(-1)?.[1];
  const restartSec = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(last('RestartSec') ?? '0.1s');
  const delayMs = restartSec ? Number(restartSec[1]) * (restartSec[2] === 'ms' ? 1 : 1000) : 100;
  return { argv, env, stateDirectories, restart: { onFailure: ['on-failure', 'always', 'on-abnormal'].includes(last('Restart') ?? 'no'), delayMs } };
}
