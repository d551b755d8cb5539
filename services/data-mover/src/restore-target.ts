// A restore target as the file system sees it: the pure rule (`confineRestoreTarget` in
// contracts) applied to the path as written, then to the path with every symbolic link of its
// existing part resolved, so no link (in a parent directory, or the target itself, even a
// dangling one) leads a restore somewhere the rule refuses. Every restore kind calls this.
import { lstat, realpath } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Refusal, confineRestoreTarget, type RestoreConfinement } from '@cairn/contracts';

export class RestoreTargetRefused extends Refusal {
  constructor(override readonly code: 'invalid_command' | 'forbidden', message: string) {
    super(code, message);
  }
}

/** Resolves what exists of `p` through its links; the missing tail is appended as written. */
async function realOf(p: string): Promise<string> {
  const tail: string[] = [];
  let probe = p;
  for (;;) {
    const real = await realpath(probe).catch(() => undefined);
    if (real !== undefined) return join(real, ...tail.reverse());
    if (dirname(probe) === probe) return p;
    tail.push(basename(probe));
    probe = dirname(probe);
  }
}

/** The absolute target a restore may write, or RestoreTargetRefused saying why not. */
export async function checkRestoreTarget(path: string, confinement: RestoreConfinement): Promise<string> {
  const written = confineRestoreTarget(path, confinement);
  if (!written.ok) throw new RestoreTargetRefused(written.code, written.message);
  const target = written.target;
  const self = await lstat(target).catch(() => undefined);
  if (self?.isSymbolicLink()) throw new RestoreTargetRefused('forbidden', `restore target ${target} is a symbolic link; a restore does not follow it`);
  if (self && !self.isFile()) throw new RestoreTargetRefused('forbidden', `restore target ${target} exists and is not a regular file`);
  const realTarget = await realOf(target);
  // The places themselves may be reached through links (/tmp → /private/tmp): compare like with like.
  const real = {
    roots: await Promise.all(confinement.roots.map(realOf)),
    forbidden: await Promise.all(confinement.forbidden.map(realOf)),
    ...(confinement.dataDir !== undefined ? { dataDir: await realOf(confinement.dataDir) } : {}),
    ...(confinement.ownTarget ? { ownTarget: true } : {}),
  };
  const resolved = confineRestoreTarget(realTarget, real);
  if (!resolved.ok) {
    throw new RestoreTargetRefused('forbidden', realTarget === target ? resolved.message : `restore target ${target} leads through a symbolic link to ${realTarget}: ${resolved.message}`);
  }
  return target;
}
