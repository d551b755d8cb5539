// NATS security for a site: least-privilege identities (nkeys + permissions), the site CA and
// certificates (mutual TLS), the nats-server config, and client connection options.
export * from './permissions.ts';
export * from './pki.ts';
export * from './site-security.ts';
export * from './connect.ts';
export * from './leaf.ts';
export * from './hub-security.ts';
export * from './identity-keys.ts';
export * from './identity-binding.ts';
export * from './key-escrow.ts';
export * from './nbd-server-tls.ts';
export * from './kubernetes-secrets.ts';
