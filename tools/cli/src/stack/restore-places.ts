// Where the data mover of `cairn up` / `cairn run data-mover` may restore to, and where never
// (docs/security.md, Restore targets): `<data>/restores` and the directories an administrator
// lists in CAIRN_RESTORE_ROOTS (separated like PATH); never the repository, secrets, security
// material, event store or state file, nor elsewhere in the data directory.
import { delimiter, join, resolve } from 'node:path';
import { STATE_FILE } from '../session.ts';

/** The restore roots an administrator configured (CAIRN_RESTORE_ROOTS), absolute. */
export function configuredRestoreRoots(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env['CAIRN_RESTORE_ROOTS'] ?? '').split(delimiter).map((d) => d.trim()).filter(Boolean).map((d) => resolve(d));
}

export interface RestorePlaces {
  readonly restoreRoots: readonly string[];
  readonly forbiddenRestorePaths: readonly string[];
  readonly dataDir: string;
}

/** The restore places of a stack with this data directory; `extra` are more places it keeps (repository, security dir). */
export function restorePlaces(dataDir: string, o: { readonly roots?: readonly string[]; readonly forbidden?: readonly string[] } = {}): RestorePlaces {
  const data = resolve(dataDir);
  return {
    restoreRoots: [join(data, 'restores'), ...(o.roots ?? configuredRestoreRoots())],
    forbiddenRestorePaths: [
      ...['repository', 'secrets', 'security', 'nats', 'catalogue', 'coordinator', 'logs', 'replicas', STATE_FILE].map((d) => join(data, d)),
      ...(o.forbidden ?? []).map((d) => resolve(d)),
    ],
    dataDir: data,
  };
}
