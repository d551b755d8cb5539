// The contenders: how to init, back up, back up again and restore with each tool, as
// commands the runner measures. restic and borg read the whole image file each time, as
// they must; Cairn's child process is fed the changed extents as a dirty bitmap gives them.
import { execFileSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandSpec } from './measure.ts';

/** Where one tool keeps its repository and caches during one run, and what it backs up. */
export interface ToolContext {
  /** Scratch directory of this tool for this run (repository, caches, state). */
  readonly workDir: string;
  /** Directory holding `disk.raw`, the image to back up (base, then the changed copy). */
  readonly imageDir: string;
  readonly imageName: string;
  readonly diskSizeBytes: number;
  /** JSON file with the changed blocks: `{ blockSize, blocks: number[] }`. */
  readonly changesFile: string;
  readonly passphrase: string;
}

export interface BenchTool {
  readonly name: string;
  version(): string;
  /** Directory whose size is the repository size. */
  repoDir(ctx: ToolContext): string;
  init(ctx: ToolContext): CommandSpec;
  full(ctx: ToolContext): CommandSpec;
  incremental(ctx: ToolContext): CommandSpec;
  restore(ctx: ToolContext, targetDir: string): CommandSpec;
  /** Path of the restored disk image under `targetDir`. */
  restoredFile(ctx: ToolContext, targetDir: string): Promise<string>;
  /** One line for the report: encryption, compression and key derivation used. */
  readonly settings: string;
}

function firstLine(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).split('\n')[0]!.trim();
  } catch {
    return 'not installed';
  }
}

async function findFile(dir: string, name: string): Promise<string> {
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && e.name === name) return join(e.parentPath, e.name);
  }
  throw new Error(`no ${name} restored under ${dir}`);
}

export const restic: BenchTool = {
  name: 'restic',
  settings: 'repository format 2, compression auto (zstd), AES-256-CTR + Poly1305; scrypt as calibrated by `restic init` (N=32768, r=8, p=5 here)',
  version: () => firstLine('restic', ['version']),
  repoDir: (ctx) => join(ctx.workDir, 'repo'),
  init: (ctx) => ({
    command: 'restic',
    args: ['init', '--repo', join(ctx.workDir, 'repo'), '--repository-version', '2', '--cache-dir', join(ctx.workDir, 'cache'), '-q'],
    env: { RESTIC_PASSWORD: ctx.passphrase },
  }),
  full: (ctx) => resticBackup(ctx),
  incremental: (ctx) => resticBackup(ctx),
  restore: (ctx, target) => ({
    command: 'restic',
    args: ['restore', 'latest', '--repo', join(ctx.workDir, 'repo'), '--cache-dir', join(ctx.workDir, 'cache'), '--target', target, '-q'],
    env: { RESTIC_PASSWORD: ctx.passphrase },
  }),
  restoredFile: (ctx, target) => findFile(target, ctx.imageName),
};

function resticBackup(ctx: ToolContext): CommandSpec {
  return {
    command: 'restic',
    args: ['backup', '--repo', join(ctx.workDir, 'repo'), '--cache-dir', join(ctx.workDir, 'cache'), '--host', 'bench', '-q', ctx.imageName],
    cwd: ctx.imageDir,
    env: { RESTIC_PASSWORD: ctx.passphrase },
  };
}

function borgEnv(ctx: ToolContext): Record<string, string> {
  // Keep borg's cache, config and security dirs in the scratch dir so runs start equal.
  return { BORG_PASSPHRASE: ctx.passphrase, BORG_BASE_DIR: join(ctx.workDir, 'home'), BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes' };
}

export const borg: BenchTool = {
  name: 'borg',
  settings: 'repokey-blake2 (AES-256-CTR + BLAKE2b), default compression lz4, default chunker; PBKDF2-SHA256 100000 iterations (fixed by borg)',
  version: () => firstLine('borg', ['--version']),
  repoDir: (ctx) => join(ctx.workDir, 'repo'),
  init: (ctx) => ({ command: 'borg', args: ['init', '-e', 'repokey-blake2', join(ctx.workDir, 'repo')], env: borgEnv(ctx) }),
  full: (ctx) => ({ command: 'borg', args: ['create', `${join(ctx.workDir, 'repo')}::full`, ctx.imageName], cwd: ctx.imageDir, env: borgEnv(ctx) }),
  incremental: (ctx) => ({ command: 'borg', args: ['create', `${join(ctx.workDir, 'repo')}::incremental`, ctx.imageName], cwd: ctx.imageDir, env: borgEnv(ctx) }),
  restore: (ctx, target) => ({ command: 'borg', args: ['extract', '--sparse', `${join(ctx.workDir, 'repo')}::incremental`], cwd: target, env: borgEnv(ctx) }),
  restoredFile: (ctx, target) => findFile(target, ctx.imageName),
};

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const cairnChild = fileURLToPath(new URL('./cairn-child.ts', import.meta.url));
/** The bundled child (tools/bench/src/bundle.ts), once `useCairnBundle` named it. */
let cairnBundle: string | undefined;

/** Runs Cairn's child from an esbuild bundle (plain JavaScript) instead of through tsx. */
export function useCairnBundle(path: string | undefined): void {
  cairnBundle = path;
}

function cairnOp(ctx: ToolContext, op: string, extra: string[] = []): CommandSpec {
  const child = cairnBundle ? [cairnBundle] : ['--import', 'tsx', cairnChild];
  return {
    // The same Node that runs the benchmark (24): the bundled child, or TypeScript through tsx.
    command: process.execPath,
    args: [...child, op, '--work', ctx.workDir, '--image', join(ctx.imageDir, ctx.imageName), '--changes', ctx.changesFile, ...extra],
    cwd: repoRoot,
    env: { CAIRN_REPO_PASSPHRASE: ctx.passphrase },
  };
}

export const cairn: BenchTool = {
  name: 'cairn',
  settings: 'zstd level from the repository config, AES-256-GCM, HMAC-SHA-256 chunk ids; scrypt N=32768, r=8, p=5 (the parameters restic calibrated)',
  // CAIRN_BENCH_COMMIT names the commit when the benchmark runs from an exported snapshot.
  version: () => `cairn ${process.env.CAIRN_BENCH_COMMIT ?? firstLine('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD'])} on Node ${process.version}`,
  repoDir: (ctx) => join(ctx.workDir, 'repo'),
  init: (ctx) => cairnOp(ctx, 'init'),
  full: (ctx) => cairnOp(ctx, 'full'),
  incremental: (ctx) => cairnOp(ctx, 'incremental'),
  restore: (ctx, target) => cairnOp(ctx, 'restore', ['--target', join(target, ctx.imageName)]),
  restoredFile: async (ctx, target) => join(target, ctx.imageName),
};

export const TOOLS: Readonly<Record<string, BenchTool>> = { cairn, restic, borg };
