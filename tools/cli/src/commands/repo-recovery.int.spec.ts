// `cairn repo key export-recovery` end to end: the recovery key goes to a new 0600 file (never
// to stdout), and with --recovery-key-file the repository opens and gets a new passphrase after
// the old one is lost.
import { execFile } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DirectoryBackend, initRepository } from '@cairn/repository';
import { useHarness } from '@cairn/testing';

const CLI = resolve(fileURLToPath(new URL('../../bin/cairn.js', import.meta.url)));
const PASSPHRASE = 'correct horse battery staple';

function cairn(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const childEnv: Record<string, string | undefined> = { ...process.env, CAIRN_REPO_PASSPHRASE: PASSPHRASE, ...env };
    for (const k of Object.keys(childEnv)) if (childEnv[k] === undefined) delete childEnv[k];
    execFile(process.execPath, [CLI, ...args], { env: childEnv, timeout: 60_000 }, (error, stdout, stderr) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('cairn repo key export-recovery', () => {
  const h = useHarness();

  it('exports to a new 0600 file, and the key opens the repository once the passphrase is lost', async () => {
    const dir = await h.tmpDir('cairn-cli-recovery-');
    const repoDir = join(dir, 'repo');
    const repo = await initRepository(new DirectoryBackend(repoDir, { createRoot: true }), { passphrase: PASSPHRASE, kdf: { N: 1024, r: 8, p: 1 } });
    await repo.close();
    const out = join(dir, 'recovery.txt');
    const exported = await cairn(['repo', 'key', 'export-recovery', '--repo', repoDir, '--out', out]);
    expect(exported.code, exported.stderr).toBe(0);
    const key = (await readFile(out, 'utf8')).trim();
    expect(key).toMatch(/^cairn-recovery-v1:/);
    expect(exported.stdout).not.toContain(key.split(':')[2]);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    expect((await cairn(['repo', 'key', 'export-recovery', '--repo', repoDir, '--out', out])).code).not.toBe(0); // never overwrites

    // The passphrase is lost: the recovery key opens the repository and sets a new one.
    const lost = await cairn(['repo', 'stats', '--repo', repoDir], { CAIRN_REPO_PASSPHRASE: 'not it' });
    expect(lost.stderr).toMatch(/wrong passphrase/);
    const newPass = join(dir, 'new-pass');
    await writeFile(newPass, 'a new passphrase\n');
    const rotated = await cairn(['repo', 'key', 'rotate', '--repo', repoDir, '--recovery-key-file', out, '--new-passphrase-file', newPass], { CAIRN_REPO_PASSPHRASE: undefined });
    expect(rotated.code, rotated.stderr).toBe(0);
    const opened = await cairn(['repo', 'stats', '--repo', repoDir, '--passphrase-file', newPass], { CAIRN_REPO_PASSPHRASE: undefined });
    expect(opened.code, opened.stderr).toBe(0);

    await writeFile(join(dir, 'bad'), key.slice(0, -4) + 'AAAA\n');
    const bad = await cairn(['repo', 'stats', '--repo', repoDir, '--recovery-key-file', join(dir, 'bad')], { CAIRN_REPO_PASSPHRASE: undefined });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/recovery key is mistyped/);
  }, 120_000);
});
