// Helpers for end-to-end tests: the `cairn` CLI as a child process, waiting on the catalogue,
// and checking a restored image against the demo VM's write log.
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CatalogueClient, type JobDetail, type JobView } from '@cairn/catalogue-client';
import { waitFor } from '@cairn/testing';
import { DEMO_BLOCK, demoBaseBlock, matchWritePrefix, type DemoWrite } from '@cairn/cli';

export const ROOT = join(import.meta.dirname, '..', '..');
export const CAIRN = join(ROOT, 'tools', 'cli', 'bin', 'cairn.js');

export interface CliResult { readonly code: number; readonly stdout: string; readonly stderr: string }

/** Runs `cairn <args>` with the Node running the tests; never throws on a non-zero exit. */
export function cli(args: readonly string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CAIRN, ...args], { cwd: ROOT, env: { ...process.env, CAIRN_LOG_LEVEL: 'warn', ...env } });
    let stdout = ''; let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr }); });
  });
}

export async function jobsWhere(catalogue: CatalogueClient, pred: (j: JobView) => boolean): Promise<JobView[]> {
  const { items } = await catalogue.query('job.list', { limit: 500 });
  return items.filter(pred);
}

export async function waitForJobEnd(catalogue: CatalogueClient, jobId: string, timeoutMs = 120_000): Promise<JobDetail> {
  return waitFor(async () => {
    const j = await catalogue.query('job.get', { jobId }).catch(() => undefined);
    return j && ['completed', 'failed', 'cancelled'].includes(j.state) ? j : undefined;
  }, { timeoutMs, intervalMs: 200, what: `job ${jobId} to end` });
}

/** The restored raw image equals the demo disk after exactly a prefix of its writes. */
export async function checkRestoredDemoImage(file: string, writes: readonly DemoWrite[]): Promise<{ ok: boolean; prefix?: number; reason?: string }> {
  const image = await readFile(file);
  const read = (offset: number) => image.subarray(offset, offset + DEMO_BLOCK);
  const r = matchWritePrefix(read, demoBaseBlock, writes);
  if (!r.ok) return { ok: false, reason: r.reason };
  // Blocks never written must still be the base.
  const written = new Set(writes.map((w) => w.offset));
  for (let off = 0; off < image.length; off += DEMO_BLOCK) {
    if (!written.has(off) && !read(off).equals(demoBaseBlock(off))) return { ok: false, reason: `unwritten block at ${off} changed` };
  }
  return { ok: true, prefix: r.prefix };
}
