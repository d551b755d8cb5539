// Writing to a secure site's log as one of its identities, honestly or as an attacker would.
//
// - `logAs(stack, identity)`: the site's log through a connection of that identity, signing as
//   it (what a test uses to plant the events a service would have written: VmDiscovered as the
//   coordinator, RestorePointExpired as the scheduler). On a stack that is not secure: stack.log.
// - `forgeEvent(...)`: what a compromised identity can do with its NATS credentials and its own
//   nkey, around the log client: publish an event straight on its JetStream subject, signed by
//   hand with its key (any kind, any writer named) or unsigned. Returns how it ended: refused by
//   NATS (publish permission), or stored at a position (for readers to refuse). Reusable by the
//   hostile-input table (harden).
import { readFile } from 'node:fs/promises';
import { jetstream } from '@nats-io/jetstream';
import { fromSeed } from '@nats-io/nkeys';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { eventSigningString, eventSubject, type CairnEvent } from '@cairn/contracts';
import { bindEventProvenance, createJetStreamEventLog, eventSignerFromSeed, signEvent, type AppendOptions, type EventLog } from '@cairn/eventlog';
import { identityConnectOptions, identityPublicKeys, type AnyIdentity, type SiteSecurity } from '@cairn/nats-security';

interface SecureStack {
  readonly site: string;
  readonly natsUrl: string;
  readonly log: EventLog;
  readonly security?: SiteSecurity;
}

const open = new Map<string, { nc: NatsConnection; log: EventLog }>();

async function connectAs(stack: SecureStack & { security: SiteSecurity }, identity: AnyIdentity): Promise<{ nc: NatsConnection; log: EventLog }> {
  const key = `${stack.natsUrl}|${identity}`;
  const cached = open.get(key);
  if (cached && !cached.nc.isClosed()) return cached;
  const nc = await connect({ servers: stack.natsUrl, reconnect: false, ...identityConnectOptions(stack.security.credentials(identity)) });
  bindEventProvenance(nc, { signer: eventSignerFromSeed(identity, await readFile(stack.security.credentials(identity).seedFile, 'utf8')) });
  const log = await createJetStreamEventLog({ nc, site: stack.site, createStream: false });
  const entry = { nc, log };
  open.set(key, entry);
  return entry;
}

/** The site's log as `identity` (appends signed by it); stack.log on a stack that is not secure. */
export async function logAs(stack: SecureStack, identity: AnyIdentity): Promise<EventLog> {
  if (!stack.security) return stack.log;
  return (await connectAs(stack as SecureStack & { security: SiteSecurity }, identity)).log;
}

/**
 * Appends one batch whose events are signed by different identities (as if each service had
 * written its own, without anyone writing between them): each event signed by its writer, the
 * batch sent through a client that adds no signature. On a stack that is not secure: as is.
 */
export async function appendSignedBatch(stack: SecureStack, streamId: string, batch: ReadonlyArray<{ readonly identity: AnyIdentity; readonly event: CairnEvent }>, options: AppendOptions): Promise<void> {
  if (!stack.security) {
    await stack.log.append(streamId, batch.map((b) => b.event), options);
    return;
  }
  const security = stack.security;
  const signed = await Promise.all(batch.map(async (b) => signEvent(b.event, eventSignerFromSeed(b.identity, await readFile(security.credentials(b.identity).seedFile, 'utf8')))));
  const { nc } = await connectAs(stack as SecureStack & { security: SiteSecurity }, 'admin');
  const plain = await createJetStreamEventLog({ nc, site: stack.site, createStream: false, provenance: {} });
  await plain.append(streamId, signed, options);
}

/** Closes the connections logAs/forgeEvent opened (afterAll). */
export async function closeIdentityConnections(): Promise<void> {
  await Promise.all([...open.values()].map((c) => c.nc.close().catch(() => undefined)));
  open.clear();
}

export type Forgery = 'signed' | 'unsigned' | 'signed-as-other';

export type ForgeOutcome =
  | { readonly refusedBy: 'nats'; readonly message: string }
  | { readonly refusedBy?: undefined; readonly position: bigint };

/**
 * Publishes `event` on its JetStream subject with `identity`'s NATS credentials, the way a
 * compromised host would: `signed` with its own nkey naming itself as writer, `signed-as-other`
 * with its own key naming `claimWriter` (default gateway), or `unsigned`.
 */
export async function forgeEvent(o: {
  readonly stack: SecureStack & { security: SiteSecurity };
  readonly identity: AnyIdentity;
  readonly event: CairnEvent;
  readonly how: Forgery;
  readonly claimWriter?: string;
}): Promise<ForgeOutcome> {
  const { nc } = await connectAs(o.stack, o.identity);
  const seed = (await readFile(o.stack.security.credentials(o.identity).seedFile, 'utf8')).trim();
  const kp = fromSeed(new TextEncoder().encode(seed));
  let event: CairnEvent = o.event;
  if (o.how !== 'unsigned') {
    const writer = o.how === 'signed' ? o.identity : (o.claimWriter ?? 'gateway');
    const signature = Buffer.from(kp.sign(new TextEncoder().encode(eventSigningString(o.event, writer, kp.getPublicKey())))).toString('base64url');
    event = { ...o.event, provenance: { writer, publicKey: kp.getPublicKey(), signature } };
  }
  const h = headers();
  h.set('Cairn-Event-Type', event.type);
  h.set('Cairn-Schema-Version', String(event.schemaVersion));
  try {
    const ack = await jetstream(nc).publish(eventSubject(o.stack.site, event.streamId), new TextEncoder().encode(JSON.stringify(event)), { msgID: event.id, headers: h, timeout: 5_000 });
    return { position: BigInt(ack.seq) };
  } catch (e) {
    return { refusedBy: 'nats', message: (e as Error).message };
  }
}

/** Public keys of the stack's identities (for checks in tests). */
export function stackKeys(stack: { readonly security: SiteSecurity }): Promise<Map<string, string>> {
  return identityPublicKeys(stack.security.dir);
}
