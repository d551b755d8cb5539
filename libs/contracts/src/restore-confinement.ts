// Where a restore may write (docs/security.md, "Restore targets"): one pure rule that every
// restore path (disk, job, file-level) applies, once to the path as written and once to the path
// as the file system resolves it. No I/O here; the data mover does the resolving.
import { isAbsolute, resolve, sep } from 'node:path';

/** The longest restore target path accepted (PATH_MAX on Linux). */
export const MAX_RESTORE_PATH_BYTES = 4096;
/** The longest name of one directory or file (NAME_MAX). */
export const MAX_NAME_BYTES = 255;

export interface RestoreConfinement {
  /** Directories the administrator lists for restores (and the stack's own `<data>/restores`). */
  readonly roots: readonly string[];
  /**
   * Never written, whatever the roots say: the repository, secrets, security material, the
   * event store, the stack's state file. A root inside one of these is ignored.
   */
  readonly forbidden: readonly string[];
  /** The data directory: refused except below a root that lies inside it (`<data>/restores`). */
  readonly dataDir?: string;
  /**
   * The person running the local CLI named this target with their own signed `--to`: it may lie
   * outside the roots (never in a forbidden place or the data directory).
   */
  readonly ownTarget?: boolean;
}

export type ConfinementDecision =
  | { readonly ok: true; readonly target: string }
  | { readonly ok: false; readonly code: 'invalid_command' | 'forbidden'; readonly message: string };

/** True when `path` is `dir` or lies below it (both absolute and normalised). */
export function isWithin(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** Decides whether a restore may write the file at `path` (absolute, normalised by `resolve`). */
export function confineRestoreTarget(path: string, c: RestoreConfinement): ConfinementDecision {
  const invalid = (message: string): ConfinementDecision => ({ ok: false, code: 'invalid_command', message });
  const forbidden = (message: string): ConfinementDecision => ({ ok: false, code: 'forbidden', message });
  if (typeof path !== 'string' || path.length === 0) return invalid('restore target is empty');
  if (Buffer.byteLength(path) > MAX_RESTORE_PATH_BYTES) return invalid(`restore target is longer than ${MAX_RESTORE_PATH_BYTES} bytes`);
  if (path.includes('\0')) return invalid('restore target contains a NUL byte');
  if (!isAbsolute(path)) return invalid(`restore target ${JSON.stringify(path)} must be an absolute path`);
  if (path.split(sep).some((part) => Buffer.byteLength(part) > MAX_NAME_BYTES)) return invalid(`restore target has a name longer than ${MAX_NAME_BYTES} bytes`);
  const target = resolve(path);
  const hard = c.forbidden.map((f) => resolve(f));
  const hit = hard.find((f) => isWithin(target, f));
  if (hit !== undefined) return forbidden(`restore target ${target} is inside ${hit}, which a restore never writes`);
  const roots = c.roots.map((r) => resolve(r)).filter((r) => !hard.some((f) => isWithin(r, f)));
  const root = roots.find((r) => target !== r && isWithin(target, r));
  const dataDir = c.dataDir === undefined ? undefined : resolve(c.dataDir);
  if (dataDir !== undefined && isWithin(target, dataDir) && !(root !== undefined && isWithin(root, dataDir) && root !== dataDir)) {
    return forbidden(`restore target ${target} is inside the data directory ${dataDir} (restore into ${resolve(dataDir, 'restores')} or a directory of your own)`);
  }
  if (root !== undefined) return { ok: true, target };
  if (c.ownTarget && !roots.includes(target)) return { ok: true, target };
  const listed = roots.length ? roots.join(', ') : 'none configured';
  return forbidden(`restore target ${target} is outside the restore directories (${listed}); an administrator lists them in the data mover's configuration (CAIRN_RESTORE_ROOTS), or name the file with \`cairn restore --to\` on the local CLI`);
}
