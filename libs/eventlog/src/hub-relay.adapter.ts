// The hub's global log: copies every site's event stream (CAIRN_EVT_<SITE>, read in the
// site's JetStream domain across the leaf connection) into the hub's stream CAIRN_EVT_HUB
// on `cairn.hub.sites.<site>`, in order and exactly once, waiting out sites that are away.
//
// Why not a JetStream `sources` entry: nats-server 2.9 keeps the origin's
// `Nats-Expected-Last-Subject-Sequence` header on a sourced message and checks it against the
// hub's stream, where the sequences differ ("last sequence by subject mismatch"); the source
// then stalls and events of the site never reach the hub (seen after a site's restart).
//
// Exactly once: each copied message carries `Cairn-Origin-Seq`; the relay starts after the
// last one the hub holds for the site and publishes each expecting the hub's previous
// sequence for that subject, so a second relay or a retry can never add a message twice.
import { DeliverPolicy, JetStreamApiError, jetstream, jetstreamManager, type ConsumerMessages } from '@nats-io/jetstream';
import { headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { assertSite, eventStreamName } from '@cairn/contracts';

export const HUB_SITES_PREFIX = 'cairn.hub.sites';
export const ORIGIN_SEQ_HEADER = 'Cairn-Origin-Seq';
export const ORIGIN_SUBJECT_HEADER = 'Cairn-Origin-Subject';

export const hubSiteSubject = (site: string): string => `${HUB_SITES_PREFIX}.${assertSite(site)}`;

export interface HubRelayOptions {
  readonly nc: NatsConnection;
  /** The hub's stream (taking `cairn.hub.sites.*`). */
  readonly hubStream: string;
  readonly sites: readonly string[];
  readonly logger?: { info(o: object, m: string): void; warn(o: object, m: string): void };
  /** Longest wait before trying an unreachable site again (default 5 s). */
  readonly maxRetryMs?: number;
}

export interface HubRelaySiteStatus {
  readonly site: string;
  /** Sequence of the site's stream copied last. */
  readonly originSeq: number;
  readonly connected: boolean;
  readonly lastError?: string;
}

export interface RunningHubRelay {
  addSite(site: string): void;
  /** Stops copying the site (its leaf user was removed); what was copied stays. */
  removeSite(site: string): Promise<void>;
  status(): HubRelaySiteStatus[];
  stop(): Promise<void>;
}

interface SiteLoop {
  status: { site: string; originSeq: number; connected: boolean; lastError?: string };
  stopped: boolean;
  messages?: ConsumerMessages | undefined;
  wake?: () => void;
  done: Promise<void>;
}

const COPIED_HEADERS = ['Cairn-Revision', 'Cairn-Event-Type', 'Cairn-Schema-Version', 'traceparent', 'tracestate'];

export function startHubRelay(o: HubRelayOptions): RunningHubRelay {
  const loops = new Map<string, SiteLoop>();
  const hubJs = jetstream(o.nc);

  async function lastCopied(site: string): Promise<{ originSeq: number; hubSeq: number }> {
    const jsm = await jetstreamManager(o.nc);
    try {
      const m = await jsm.streams.getMessage(o.hubStream, { last_by_subj: hubSiteSubject(site) });
      if (!m) return { originSeq: 0, hubSeq: 0 };
      return { originSeq: Number(m.header.get(ORIGIN_SEQ_HEADER) || 0), hubSeq: m.seq };
    } catch (e) {
      if (e instanceof JetStreamApiError && e.code === 10037) return { originSeq: 0, hubSeq: 0 }; // no message
      throw e;
    }
  }

  async function run(loop: SiteLoop): Promise<void> {
    const site = loop.status.site;
    let failures = 0;
    while (!loop.stopped) {
      try {
        let { originSeq, hubSeq } = await lastCopied(site);
        loop.status.originSeq = originSeq;
        const siteJs = jetstream(o.nc, { domain: site });
        const consumer = await siteJs.consumers.get(eventStreamName(site), {
          deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: originSeq + 1,
        });
        loop.messages = await consumer.consume({ max_messages: 256, expires: 5_000 });
        if (loop.stopped) break;
        if (!loop.status.connected) o.logger?.info({ fromSite: site, from: originSeq + 1 }, 'hub relay: copying the site\'s events');
        loop.status.connected = true;
        delete loop.status.lastError;
        for await (const m of loop.messages) {
          failures = 0;
          if (m.seq <= originSeq) continue;
          const h = natsHeaders();
          for (const k of COPIED_HEADERS) { const v = m.headers?.get(k); if (v) h.set(k, v); }
          h.set(ORIGIN_SEQ_HEADER, String(m.seq));
          h.set(ORIGIN_SUBJECT_HEADER, m.subject);
          const ack = await hubJs.publish(hubSiteSubject(site), m.data, {
            headers: h, msgID: `${site}:${m.seq}`, expect: { lastSubjectSequence: hubSeq },
          });
          hubSeq = ack.seq;
          originSeq = m.seq;
          loop.status.originSeq = originSeq;
          if (loop.stopped) break;
        }
      } catch (e) {
        if (loop.stopped) break;
        failures++;
        if (loop.status.connected || loop.status.lastError !== (e as Error).message) {
          o.logger?.warn({ fromSite: site, err: (e as Error).message }, 'hub relay: site not reachable or copy interrupted; trying again');
        }
        loop.status.connected = false;
        loop.status.lastError = (e as Error).message;
      } finally {
        const closing = loop.messages?.close().catch(() => undefined);
        if (closing) await Promise.race([closing, new Promise((r) => setTimeout(r, 1_000).unref())]);
        loop.messages = undefined;
      }
      if (!loop.stopped) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, Math.min(o.maxRetryMs ?? 5_000, 100 * 2 ** Math.min(failures, 6)));
          loop.wake = () => { clearTimeout(t); resolve(); };
        });
      }
    }
  }

  function addSite(site: string): void {
    assertSite(site);
    if (loops.has(site)) return;
    const loop = { status: { site, originSeq: 0, connected: false }, stopped: false } as SiteLoop;
    loop.done = run(loop);
    loops.set(site, loop);
  }

  async function removeSite(site: string): Promise<void> {
    const l = loops.get(site);
    if (!l) return;
    loops.delete(site);
    l.stopped = true; l.wake?.(); l.messages?.stop();
    await l.done;
  }

  for (const s of o.sites) addSite(s);
  return {
    addSite,
    removeSite,
    status: () => [...loops.values()].map((l) => ({ ...l.status })),
    async stop() {
      for (const l of loops.values()) { l.stopped = true; l.wake?.(); l.messages?.stop(); }
      await Promise.allSettled([...loops.values()].map((l) => l.done));
    },
  };
}
