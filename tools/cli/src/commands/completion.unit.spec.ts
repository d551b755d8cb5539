import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../main.ts';
import { completionScript } from './completion.command.ts';

/** What bash completes after `cairn <words…> <cur>`, with the generated script sourced. */
function complete(script: string, words: readonly string[]): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'cairn-completion-'));
  const file = join(dir, 'cairn.bash');
  try {
    writeFileSync(file, script);
    const all = ['cairn', ...words].map((w) => `'${w}'`).join(' ');
    const out = execFileSync('bash', ['-c', `source ${file}; COMP_WORDS=(${all}); COMP_CWORD=${words.length}; _cairn; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
    return out.split('\n').filter(Boolean).sort();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('cairn completion', () => {
  const bash = completionScript(buildProgram(), 'bash');

  it('completes sub-commands and options from the command tree (bash)', () => {
    expect(complete(bash, ['restore-'])).toEqual(['restore-export', 'restore-point']);
    expect(complete(bash, ['restore-point', ''])).toEqual(expect.arrayContaining(['list', 'lock']));
    expect(complete(bash, ['backup', 'vm1', '--w'])).toEqual(['--wait']);
    expect(complete(bash, ['--json', 'job', 'wa'])).toEqual(['watch']);
  });

  it('writes zsh (through bashcompinit) and fish scripts, and refuses other shells', () => {
    expect(completionScript(buildProgram(), 'zsh')).toContain('bashcompinit');
    const fish = completionScript(buildProgram(), 'fish');
    expect(fish).toContain("complete -c cairn -n '__fish_use_subcommand' -a 'backup'");
    expect(fish).toContain('-l wait');
    expect(() => completionScript(buildProgram(), 'tcsh')).toThrow(/no completion for the shell "tcsh"/);
  });
});
