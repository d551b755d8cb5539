// Ties a NATS connection to one identity with two proofs, both checked by nats-server:
// - its client certificate, which `tls { verify_and_map: true }` maps to the user named by the
//   certificate's subject (`CN=<identity>@<site>`): the certificate decides who connects;
// - a password that only the identity's nkey can make (an ed25519 signature, deterministic, of
//   `cairn-nats-connect-v1\n<identity>@<site>`), which the server checks against the bcrypt hash
//   in its config. So a certificate of one identity with the nkey of another is refused, and so
//   is a certificate without the nkey (issue 22). nats-server 2.9 checks an nkey user's
//   challenge or a certificate-mapped user's password, never both an nkey and a certificate:
//   this is how both secrets stay required.
import { nativeSigner } from '@cairn/eventlog/ed25519';
import type { Authenticator } from '@nats-io/transport-node';
import bcrypt from 'bcryptjs';

/** The NATS user of an identity: its certificate's subject as nats-server prints it. */
export const identityUser = (identity: string, site: string) => `CN=${identity}@${site}`;

/** The connect password only the holder of the identity's nkey seed can make. */
export function identityPassword(seed: string, identity: string, site: string): string {
  // Node's ed25519 (deterministic: the same signature tweetnacl makes, without its ~40 ms per connect).
  return Buffer.from(nativeSigner(seed).sign(new TextEncoder().encode(`cairn-nats-connect-v1\n${identity}@${site}`))).toString('base64url');
}

/**
 * bcrypt of the connect password, as the server config holds it (never the password). The
 * password is a 512-bit signature, not something a person chose: no work factor makes guessing
 * it any harder, so the cost is the lowest that keeps every connect cheap (nats-server checks
 * the hash at each connect; cost 11 took seconds on a loaded machine).
 */
export function hashIdentityPassword(password: string): Promise<string> {
  return bcrypt.hash(password, 4);
}

/** Sends the password only: the user comes from the certificate. */
export function identityAuthenticator(seed: string, identity: string, site: string): Authenticator {
  const pass = identityPassword(seed, identity, site);
  return () => ({ pass }) as unknown as ReturnType<Authenticator>;
}
