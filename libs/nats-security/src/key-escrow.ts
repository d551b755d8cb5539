// Key escrow for disaster recovery between sites (issue 24; docs/security.md, "Key escrow").
//
// Each site gets an X25519 key pair for escrow when the hub registers it (`cairn hub add-site`):
// the private key goes only into the site's bundle, and the public key is vouched for by the hub
// CA's signature over a short statement (site, key, time), so a source site can check the key a
// target shows it against the hub CA it already trusts for its leaf link. The source wraps its
// repository secret for each target it replicates to in a sealed box (ECIES with node:crypto:
// an ephemeral X25519 key, ECDH, HKDF-SHA-256, AES-256-GCM, the header as associated data); the
// target keeps the envelope with its replicas and can open it only with its own private key —
// which it does only once the source site has been declared lost with a four-eyes approval.
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, sign, verify, X509Certificate, type KeyObject } from 'node:crypto';

/** A site's escrow public key as the hub vouches for it (`escrow.json` in the site's bundle). */
export interface EscrowKeyStatement {
  readonly version: 1;
  readonly site: string;
  /** X25519 public key, raw 32 bytes, base64url. */
  readonly publicKey: string;
  readonly issuedAt: string;
  /** The hub CA's ECDSA signature (DER, base64) over `escrowStatementText`. */
  readonly signature: string;
}

/** What is wrapped for a target, kept with the target's replicas of the source. */
export interface EscrowEnvelope {
  readonly version: 1;
  readonly sourceSite: string;
  readonly targetSite: string;
  readonly repositoryId: string;
  /** The source repository's key ids when it was wrapped (a rotation changes them and re-wraps). */
  readonly keyIds: readonly string[];
  /** The target's escrow public key it is sealed to (base64url). */
  readonly recipient: string;
  readonly wrappedAt: string;
  /** Ephemeral X25519 public key (base64url), AES-GCM nonce, ciphertext and tag (base64). */
  readonly ephemeral: string;
  readonly nonce: string;
  readonly ciphertext: string;
  readonly tag: string;
}

/** The secret a target gets back: what opens the source's repository (its passphrase). */
export interface EscrowedSecret {
  readonly passphrase: string;
}

export class EscrowError extends Error {
  override readonly name = 'EscrowError';
}

const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');
const X25519_SPKI = Buffer.from('302a300506032b656e032100', 'hex');

function x25519Public(raw: string): KeyObject {
  const bytes = Buffer.from(raw, 'base64url');
  if (bytes.length !== 32) throw new EscrowError(`not an X25519 public key (${bytes.length} bytes)`);
  return createPublicKey({ key: Buffer.concat([X25519_SPKI, bytes]), format: 'der', type: 'spki' });
}
const rawPublic = (k: KeyObject): string => b64u(k.export({ format: 'der', type: 'spki' }).subarray(X25519_SPKI.length));

export function escrowStatementText(s: Pick<EscrowKeyStatement, 'site' | 'publicKey' | 'issuedAt'>): Buffer {
  return Buffer.from(['cairn-escrow-key-v1', s.site, s.publicKey, s.issuedAt].join('\n'), 'utf8');
}

/** A new escrow key pair for `site`, its public key signed with the hub CA's key (PEM). */
export function makeEscrowKey(site: string, hubCaKeyPem: string, now = new Date()): { readonly privateKeyPem: string; readonly statement: EscrowKeyStatement } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const body = { site, publicKey: rawPublic(publicKey), issuedAt: now.toISOString() };
  const signature = sign('sha256', escrowStatementText(body), hubCaKeyPem).toString('base64');
  return { privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), statement: { version: 1, ...body, signature } };
}

/** Checks a target's statement against the hub CA certificate (PEM) and the site it should name. */
export function verifyEscrowStatement(statement: EscrowKeyStatement, hubCaPem: string, site: string): void {
  if (statement?.version !== 1 || typeof statement.publicKey !== 'string' || typeof statement.signature !== 'string') throw new EscrowError('not an escrow key statement');
  if (statement.site !== site) throw new EscrowError(`the escrow key offered for site ${site} is site ${statement.site}'s`);
  const ca = new X509Certificate(hubCaPem);
  if (!verify('sha256', escrowStatementText(statement), ca.publicKey, Buffer.from(statement.signature, 'base64'))) {
    throw new EscrowError(`the escrow key of site ${site} is not signed by the hub CA (${ca.subject.replace(/\n/g, ', ')})`);
  }
  x25519Public(statement.publicKey);
}

function aad(e: Omit<EscrowEnvelope, 'nonce' | 'ciphertext' | 'tag'>): Buffer {
  return Buffer.from(JSON.stringify(['cairn-escrow-v1', e.sourceSite, e.targetSite, e.repositoryId, [...e.keyIds].sort(), e.recipient, e.wrappedAt, e.ephemeral]), 'utf8');
}

function kek(shared: Buffer, ephemeral: string, recipient: string): Buffer {
  return Buffer.from(hkdfSync('sha256', shared, Buffer.from(`${ephemeral}.${recipient}`, 'utf8'), 'cairn-escrow-v1 aes-256-gcm', 32));
}

/** Seals `secret` for the target named by a verified `recipient` statement. */
export function sealEscrow(o: { readonly sourceSite: string; readonly recipient: EscrowKeyStatement; readonly repositoryId: string; readonly keyIds: readonly string[]; readonly secret: EscrowedSecret; readonly now?: Date }): EscrowEnvelope {
  const eph = generateKeyPairSync('x25519');
  const header = {
    version: 1 as const, sourceSite: o.sourceSite, targetSite: o.recipient.site, repositoryId: o.repositoryId, keyIds: [...o.keyIds].sort(),
    recipient: o.recipient.publicKey, wrappedAt: (o.now ?? new Date()).toISOString(), ephemeral: rawPublic(eph.publicKey),
  };
  const shared = diffieHellman({ privateKey: eph.privateKey, publicKey: x25519Public(o.recipient.publicKey) });
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', kek(shared, header.ephemeral, header.recipient), nonce);
  c.setAAD(aad(header));
  const ciphertext = Buffer.concat([c.update(JSON.stringify(o.secret), 'utf8'), c.final()]);
  return { ...header, nonce: nonce.toString('base64'), ciphertext: ciphertext.toString('base64'), tag: c.getAuthTag().toString('base64') };
}

/** Opens an envelope with the target's private key (PEM); any change to it, or another key, fails. */
export function openEscrow(envelope: EscrowEnvelope, privateKeyPem: string): EscrowedSecret {
  const priv = createPrivateKey(privateKeyPem);
  const mine = rawPublic(createPublicKey(priv));
  if (envelope.recipient !== mine) throw new EscrowError(`the escrow of site ${envelope.sourceSite} is sealed to another key than this site's (${envelope.recipient.slice(0, 8)}…, here ${mine.slice(0, 8)}…)`);
  const shared = diffieHellman({ privateKey: priv, publicKey: x25519Public(envelope.ephemeral) });
  try {
    const d = createDecipheriv('aes-256-gcm', kek(shared, envelope.ephemeral, envelope.recipient), Buffer.from(envelope.nonce, 'base64'));
    d.setAAD(aad(envelope));
    d.setAuthTag(Buffer.from(envelope.tag, 'base64'));
    const plain = Buffer.concat([d.update(Buffer.from(envelope.ciphertext, 'base64')), d.final()]);
    const secret = JSON.parse(plain.toString('utf8')) as EscrowedSecret;
    if (typeof secret.passphrase !== 'string') throw new Error('no passphrase inside');
    return secret;
  } catch (e) {
    throw new EscrowError(`the escrow of site ${envelope.sourceSite} does not open: ${(e as Error).message}`);
  }
}

/** The public key (base64url) of a private escrow key (PEM). */
export function escrowPublicKey(privateKeyPem: string): string {
  return rawPublic(createPublicKey(createPrivateKey(privateKeyPem)));
}
