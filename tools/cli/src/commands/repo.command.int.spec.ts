// `cairn repo …` end to end: the real CLI binary in a child process against a directory
// repository; a restore point is written through the library, then damaged on disk.
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { DirectoryBackend, WrongKeyError, initRepository, openRepository } from '@cairn/repository';
import { useHarness } from '@cairn/testing';

const CLI = resolve(fileURLToPath(new URL('../../bin/cairn.js', import.meta.url)));
const PASSPHRASE = 'correct horse battery staple';
const CHUNK = 64 * 1024;

interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function cairn(args: string[], env: Record<string, string | undefined> = {}): Promise<CliRun> {
  return new Promise((done) => {
    const childEnv: Record<string, string | undefined> = { ...process.env, CAIRN_REPO_PASSPHRASE: PASSPHRASE, ...env };
    for (const k of Object.keys(childEnv)) if (childEnv[k] === undefined) delete childEnv[k];
    execFile(process.execPath, [CLI, ...args], { env: childEnv, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

/** A chunk of recognisable bytes, different per index. */
function chunkData(i: number): Uint8Array {
  const b = new Uint8Array(CHUNK);
  for (let j = 0; j < b.length; j += 4) b[j] = (i * 31 + j) & 0xff;
  return b;
}

async function writeOneRestorePoint(repoDir: string): Promise<string> {
  const repo = await openRepository(new DirectoryBackend(repoDir), { passphrase: PASSPHRASE });
  try {
    const result = await repo.writeRestorePoint({
      vm: { id: 'vm-1', name: 'web' },
      disks: [{ name: 'sda', sizeBytes: 4 * CHUNK, extents: [0, 1, 3].map((i) => ({ offset: i * CHUNK, data: chunkData(i) })) }],
    });
    return result.restorePointId;
  } finally {
    await repo.close();
  }
}

async function chunkFiles(repoDir: string): Promise<string[]> {
  const entries = await readdir(join(repoDir, 'chunks'), { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

describe('cairn repo', () => {
  const h = useHarness();
  let repoDir = '';
  let rpId = '';

  beforeAll(async () => {
    // Made through the library with a cheap KDF so the many CLI runs below stay quick; the
    // CLI's own init (default KDF) is tested on a separate directory.
    repoDir = join(await h.tmpDir('cairn-cli-repo-'), 'repo');
    const repo = await initRepository(new DirectoryBackend(repoDir, { createRoot: true }), {
      passphrase: PASSPHRASE, kdf: { N: 1024, r: 8, p: 1 }, chunkSize: CHUNK,
    });
    await repo.close();
    rpId = await writeOneRestorePoint(repoDir);
  });

  it('init creates a repository and refuses to overwrite one', async () => {
    const dir = join(await h.tmpDir('cairn-cli-init-'), 'new-repo');
    const init = await cairn(['repo', 'init', '--repo', dir, '--chunk-size', '64K', '--json']);
    expect(init.stderr).toBe('');
    expect(init.code).toBe(0);
    expect(JSON.parse(init.stdout)).toMatchObject({ chunkSize: CHUNK });
    const again = await cairn(['repo', 'init', '--repo', dir]);
    expect(again.code).toBe(4);
    expect(again.stderr).toMatch(/already exists/);
  }, 120_000);

  it('says clearly what is wrong: wrong passphrase, no repository, no passphrase', async () => {
    const wrong = await cairn(['repo', 'stats', '--repo', repoDir], { CAIRN_REPO_PASSPHRASE: 'not the passphrase' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/wrong passphrase/);
    expect(wrong.stderr).not.toContain('not the passphrase');

    const missing = await cairn(['repo', 'stats', '--repo', join(repoDir, 'nothing-here')]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/no repository at/);

    const noSecret = await cairn(['repo', 'stats', '--repo', repoDir], { CAIRN_REPO_PASSPHRASE: undefined });
    expect(noSecret.stderr).toMatch(/no passphrase/);
    expect(noSecret.code).toBe(2);
    expect(noSecret.stderr).toMatch(/CAIRN_REPO_PASSPHRASE/);
  }, 120_000);

  it('stats, verify of an intact repository, gc', async () => {
    const stats = await cairn(['repo', 'stats', '--repo', repoDir]);
    expect(stats.stderr).toBe('');
    expect(stats.code).toBe(0);
    expect(stats.stdout).toMatch(/restorePoints: 1/);
    expect(stats.stdout).toMatch(/chunks: 3/);

    const clean = await cairn(['repo', 'verify', '--repo', repoDir, '--json']);
    expect(clean.code).toBe(0);
    expect(JSON.parse(clean.stdout)).toMatchObject({ ok: true, damaged: [], restorePoints: [rpId] });

    const gc = await cairn(['--json', 'repo', 'gc', '--repo', repoDir, '--grace', '0s']);
    expect(gc.code).toBe(0);
    expect(JSON.parse(gc.stdout)).toMatchObject({ chunksDeleted: 0, restorePoints: 1 });
  }, 120_000);

  it('verify fails on a damaged chunk and names it with its restore point and offset', async () => {
    const victim = (await chunkFiles(repoDir)).sort()[0]!;
    const bytes = await readFile(victim);
    const at = bytes.length >> 1;
    bytes[at] = bytes[at]! ^ 0x40;
    await writeFile(victim, bytes);
    const victimId = victim.split('/').at(-1)!;

    const damaged = await cairn(['repo', 'verify', '--repo', repoDir]);
    expect(damaged.code).toBe(1);
    expect(damaged.stdout).toContain(`chunk ${victimId}`);
    expect(damaged.stdout).toContain(`restore point ${rpId}, disk sda, offsets`);
    expect(damaged.stderr).toMatch(/verify found 1 damaged object/);

    const json = await cairn(['repo', 'verify', '--repo', repoDir, '--restore-point', rpId, '--json']);
    expect(json.code).toBe(1);
    const report = JSON.parse(json.stdout) as { ok: boolean; damaged: Array<{ id: string; uses: Array<{ restorePointId: string; offsets: number[] }> }> };
    expect(report.ok).toBe(false);
    expect(report.damaged).toHaveLength(1);
    expect(report.damaged[0]!.id).toBe(victimId);
    expect(report.damaged[0]!.uses[0]!.restorePointId).toBe(rpId);
    expect([0, CHUNK, 3 * CHUNK]).toContain(report.damaged[0]!.uses[0]!.offsets[0]);
  }, 120_000);

  it('key rotate re-wraps the keys under a new passphrase read from a file', async () => {
    const passFile = join(await h.tmpDir(), 'new-pass');
    await writeFile(passFile, 'a new passphrase\n');
    const rotate = await cairn(['repo', 'key', 'rotate', '--repo', repoDir, '--new-passphrase-file', passFile]);
    expect(rotate.code).toBe(0);
    expect(rotate.stdout).not.toContain('a new passphrase');
    await expect(openRepository(new DirectoryBackend(repoDir), { passphrase: PASSPHRASE })).rejects.toBeInstanceOf(WrongKeyError);
    const withNew = await cairn(['repo', 'stats', '--repo', repoDir, '--passphrase-file', passFile], { CAIRN_REPO_PASSPHRASE: undefined });
    expect(withNew.code).toBe(0);
  }, 120_000);
});
