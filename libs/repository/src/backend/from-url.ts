// Turns a repository location as an operator writes it (CLI flag, config file) into a
// Backend: `file:///srv/repo` or a plain path → directory; `s3://bucket/prefix?endpoint=…` → S3.
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Backend } from './backend.ts';
import { DirectoryBackend, type DirectoryBackendOptions } from './directory.adapter.ts';
import { S3Backend, type S3BackendOptions } from './s3.adapter.ts';

export interface BackendUrlOptions {
  /** S3 credentials; default from CAIRN_S3_ACCESS_KEY / CAIRN_S3_SECRET_KEY in `env`. */
  accessKey?: string;
  secretKey?: string;
  sessionToken?: string;
  /** Where credentials are looked up (default process.env). */
  env?: Record<string, string | undefined>;
  directory?: DirectoryBackendOptions;
  /** Extra S3 settings (part size, page size, …) not expressible in the URL. */
  s3?: Partial<Omit<S3BackendOptions, 'bucket' | 'prefix' | 'endPoint' | 'accessKey' | 'secretKey'>>;
}

const FORMS = 'expected file:///path, a plain path, or s3://bucket[/prefix][?endpoint=http(s)://host:port&region=…&pathStyle=true|false&conditionalPut=true&objectLock=true]';

export function createBackendFromUrl(url: string, options: BackendUrlOptions = {}): Backend {
  const trimmed = url.trim();
  if (trimmed === '') throw new Error(`empty repository location: ${FORMS}`);
  if (trimmed.startsWith('file:')) return new DirectoryBackend(fileURLToPath(trimmed), options.directory);
  if (trimmed.startsWith('s3:')) return new S3Backend(s3OptionsFromUrl(trimmed, options));
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) throw new Error(`unsupported repository location ${url}: ${FORMS}`);
  return new DirectoryBackend(isAbsolute(trimmed) ? trimmed : resolve(trimmed), options.directory);
}

/** Parses an `s3://` location (exported for the CLI's `--dry-run` style checks and tests). */
export function s3OptionsFromUrl(url: string, options: BackendUrlOptions = {}): S3BackendOptions {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`malformed repository location ${url}: ${FORMS}`);
  }
  const bucket = parsed.hostname;
  if (!bucket) throw new Error(`repository location ${url} names no bucket: ${FORMS}`);
  const prefix = decodeURIComponent(parsed.pathname).replace(/^\/+|\/+$/g, '');
  const env = options.env ?? process.env;
  const accessKey = options.accessKey ?? env.CAIRN_S3_ACCESS_KEY;
  const secretKey = options.secretKey ?? env.CAIRN_S3_SECRET_KEY;
  if (!accessKey || !secretKey) {
    throw new Error(`no S3 credentials for ${url}: set CAIRN_S3_ACCESS_KEY and CAIRN_S3_SECRET_KEY (or pass them explicitly)`);
  }
  const q = parsed.searchParams;
  const known = new Set(['endpoint', 'region', 'pathStyle', 'conditionalPut', 'objectLock']);
  for (const name of q.keys()) {
    if (!known.has(name)) throw new Error(`unknown parameter "${name}" in repository location ${url}: ${FORMS}`);
  }
  const endpointParam = q.get('endpoint');
  let endPoint = 's3.amazonaws.com';
  let useSSL = true;
  let port: number | undefined;
  if (endpointParam) {
    let ep: URL;
    try {
      ep = new URL(endpointParam.includes('://') ? endpointParam : `https://${endpointParam}`);
    } catch {
      throw new Error(`malformed endpoint ${endpointParam} in ${url}: expected http(s)://host[:port]`);
    }
    if (ep.protocol !== 'http:' && ep.protocol !== 'https:') throw new Error(`endpoint ${endpointParam} in ${url} must be http:// or https://`);
    endPoint = ep.hostname.replace(/^\[|\]$/g, '');
    useSSL = ep.protocol === 'https:';
    if (ep.port) port = Number(ep.port);
  }
  const region = q.get('region') ?? undefined;
  const pathStyleParam = q.get('pathStyle');
  const pathStyle = pathStyleParam === null ? endpointParam !== null : pathStyleParam === 'true';
  const conditionalPut = q.get('conditionalPut') === 'true';
  const objectLock = q.get('objectLock') === 'true';
  const sessionToken = options.sessionToken ?? env.CAIRN_S3_SESSION_TOKEN;
  return {
    ...options.s3,
    endPoint,
    useSSL,
    ...(port !== undefined ? { port } : {}),
    ...(region !== undefined ? { region } : {}),
    ...(sessionToken ? { sessionToken } : {}),
    pathStyle,
    ...(conditionalPut ? { conditionalPut } : {}),
    ...(objectLock ? { objectLock } : {}),
    accessKey,
    secretKey,
    bucket,
    prefix,
  };
}
