// Signing in the browser with a person's operator key (docs/console.md, "Operator key"): the
// key file the CLI uses (`cairn user key add`, `cairn up`: `{kind: 'cairn-operator-key', userId,
// site?, publicKey, seed}`) is read once, its seed (an nkey, `SU…`) decoded and imported into
// WebCrypto as a **non-extractable** Ed25519 CryptoKey; the seed's text and bytes are dropped at
// once. Nothing of it goes to the server or to storage: the CryptoKey lives in this tab's memory
// until sign-out or reload (keyring.ts).
//
// What it signs, byte for byte as the CLI does (libs/command-auth `signCommand`, libs/contracts
// `commandSigningString`, `approvalStatement`, `signStatement`): ed25519 is deterministic, so the
// same key, command and time give the CLI's very signature (signing.unit.spec.ts checks it
// against the vector libs/command-auth/src/signing.vector.json, which the CLI's spec checks too).

export interface Actor { readonly kind: 'user' | 'service'; readonly id: string }

/** A command envelope as libs/contracts `Command` (the console does not import the server's libraries). */
export interface SignedCommand<P = unknown> {
  readonly id: string;
  readonly name: string;
  readonly schemaVersion: number;
  readonly idempotencyKey: string;
  readonly actor: Actor;
  readonly site: string;
  readonly time: string;
  readonly auth?: { readonly publicKey: string; readonly signature: string; readonly issuedAt: string };
  readonly payload: P;
}

export interface PersonSignature { readonly publicKey: string; readonly signature: string; readonly issuedAt: string }

/** An operator key loaded for the session: who, which key, and a CryptoKey that cannot be exported. */
export interface OperatorKey {
  readonly userId: string;
  readonly publicKey: string;
  /** The site the key was made for, when the file says (keys are per site). */
  readonly site?: string;
  readonly key: CryptoKey;
}

export class KeyFileError extends Error {
  override readonly name = 'KeyFileError';
}

// ---- nkeys (base32 + CRC-16/XMODEM), decoding only --------------------------------------------

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const PREFIX_SEED = 18 << 3;
const PREFIX_USER = 20 << 3;

function base32Decode(text: string): Uint8Array<ArrayBuffer> {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of text) {
    const v = B32.indexOf(ch);
    if (v < 0) throw new KeyFileError(`not an nkey: the character ${JSON.stringify(ch)} is not base32`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Uint8Array.from(out);
}

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The nkey's bytes without its checksum, after checking it. */
function nkeyBytes(text: string, what: string): Uint8Array<ArrayBuffer> {
  const raw = base32Decode(text.trim());
  if (raw.length < 4) throw new KeyFileError(`${what} is too short to be an nkey`);
  const body = raw.subarray(0, raw.length - 2);
  const sum = raw[raw.length - 2]! | (raw[raw.length - 1]! << 8);
  if (crc16(body) !== sum) throw new KeyFileError(`${what} is damaged (its checksum does not match)`);
  return body;
}

/** The 32-byte ed25519 seed of a user seed `SU…`. */
export function decodeUserSeed(seed: string): Uint8Array<ArrayBuffer> {
  const b = nkeyBytes(seed, 'the seed');
  const kind = b[0]! & 0xf8;
  const role = ((b[0]! & 0x07) << 5) | ((b[1]! & 0xf8) >> 3);
  if (kind !== PREFIX_SEED || role !== PREFIX_USER || b.length !== 34) throw new KeyFileError('the seed is not a user nkey seed (SU…)');
  return b.slice(2);
}

/** The 32-byte ed25519 public key of a user public key `U…`. */
export function decodeUserPublicKey(publicKey: string): Uint8Array<ArrayBuffer> {
  const b = nkeyBytes(publicKey, 'the public key');
  if (b[0] !== PREFIX_USER || b.length !== 33) throw new KeyFileError('the public key is not a user nkey (U…)');
  return b.slice(1);
}

// ---- the key file ------------------------------------------------------------------------------

export function toBase64Url(bytes: Uint8Array): string {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const USER_ID = /^[A-Za-z0-9_-]{1,64}$/;

/**
 * Reads an operator key file's text into a session key. The CryptoKey cannot be exported; the
 * seed is checked against the file's public key by signing a probe and verifying it.
 */
export async function importOperatorKey(text: string): Promise<OperatorKey> {
  let parsed: { kind?: unknown; userId?: unknown; site?: unknown; publicKey?: unknown; seed?: unknown };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    throw new KeyFileError('this file is not a Cairn operator key (not JSON): choose the file `cairn user key add --out` or `cairn up` wrote');
  }
  if (parsed?.kind !== 'cairn-operator-key' || typeof parsed.seed !== 'string' || typeof parsed.userId !== 'string' || typeof parsed.publicKey !== 'string') {
    throw new KeyFileError('this file is not a Cairn operator key (made by `cairn user key add` or `cairn up`)');
  }
  if (!USER_ID.test(parsed.userId)) throw new KeyFileError(`the key file names an invalid user ${JSON.stringify(parsed.userId)}`);
  const seed = decodeUserSeed(parsed.seed);
  const pub = decodeUserPublicKey(parsed.publicKey);
  let key: CryptoKey;
  try {
    key = await crypto.subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', d: toBase64Url(seed), x: toBase64Url(pub) }, { name: 'Ed25519' }, false, ['sign']);
  } catch (e) {
    throw new KeyFileError(`the key file's seed and public key do not belong together, or this browser cannot sign with Ed25519 (${(e as Error).message})`);
  } finally {
    seed.fill(0);
  }
  const verifier = await crypto.subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
  const probe = new TextEncoder().encode('cairn-operator-key-probe');
  if (!(await crypto.subtle.verify({ name: 'Ed25519' }, verifier, await crypto.subtle.sign({ name: 'Ed25519' }, key, probe), probe))) {
    throw new KeyFileError('the key file\'s seed does not match its public key');
  }
  return { userId: parsed.userId, publicKey: parsed.publicKey, ...(typeof parsed.site === 'string' ? { site: parsed.site } : {}), key };
}

// ---- what is signed (the same text as libs/contracts) -------------------------------------------

/** JSON with object keys sorted at every level and no whitespace (libs/contracts `canonicalJson`). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

async function sha256Hex(text: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** libs/contracts `commandSigningString`: id, idempotency key, name, version, site, actor, time, payload hash. */
export async function commandSigningString(command: Omit<SignedCommand, 'auth'>, issuedAt: string): Promise<string> {
  return [
    'cairn-command-v1', command.id, command.idempotencyKey, command.name, String(command.schemaVersion), command.site,
    `${command.actor.kind}:${command.actor.id}`, issuedAt, await sha256Hex(canonicalJson(command.payload)),
  ].join('\n');
}

async function sign(key: CryptoKey, text: string): Promise<string> {
  return toBase64Url(new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, key, new TextEncoder().encode(text))));
}

/** The command with `auth`, signed at `now` (libs/command-auth `signCommand`). */
export async function signCommand<P>(command: SignedCommand<P>, key: Pick<OperatorKey, 'key' | 'publicKey'>, now: Date = new Date()): Promise<SignedCommand<P>> {
  const { auth: _ignored, ...unsigned } = command;
  const issuedAt = now.toISOString();
  const signature = await sign(key.key, await commandSigningString(unsigned, issuedAt));
  return { ...unsigned, auth: { publicKey: key.publicKey, signature, issuedAt } };
}

/**
 * The latest schema version of the commands the console sends (libs/contracts COMMAND_SCHEMAS;
 * signing.unit.spec.ts fails when one moves on without the console).
 */
export const COMMAND_VERSIONS = {
  RequestBackup: 1, CreatePolicy: 1, UpdatePolicy: 1, RestoreDisk: 1, DecideApproval: 1,
} as const;
export type ConsoleCommand = keyof typeof COMMAND_VERSIONS;

/** A new command from the key's user to `site`, signed now. */
export function newSignedCommand<P>(name: ConsoleCommand, payload: P, site: string, key: OperatorKey, now: Date = new Date()): Promise<SignedCommand<P>> {
  return signCommand({
    id: crypto.randomUUID(), name, schemaVersion: COMMAND_VERSIONS[name], idempotencyKey: crypto.randomUUID(),
    actor: { kind: 'user', id: key.userId }, site, time: now.toISOString(), payload,
  }, key, now);
}

export type ApprovalDecision = 'request' | 'grant' | 'reject';

/** libs/contracts `approvalStatement`: one line each. */
export function approvalStatement(o: { approvalId: string; decision: ApprovalDecision; userId: string; action: unknown; issuedAt: string }): string {
  return ['cairn-approval-v1', o.approvalId, o.decision, o.userId, o.issuedAt, canonicalJson(o.action)].join('\n');
}

/** The person's signature of a four-eyes decision (libs/contracts `signStatement` over `approvalStatement`). */
export async function signApproval(key: OperatorKey, approvalId: string, decision: ApprovalDecision, action: unknown, now: Date = new Date()): Promise<PersonSignature> {
  const issuedAt = now.toISOString();
  const signature = await sign(key.key, approvalStatement({ approvalId, decision, userId: key.userId, action, issuedAt }));
  return { publicKey: key.publicKey, signature, issuedAt };
}
