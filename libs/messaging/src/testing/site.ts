// Test support for the messaging integration tests: a site's event stream and work stream on
// a real nats-server, events to publish, and reading back what was dead-lettered.
import { randomUUID } from 'node:crypto';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { RetentionPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import {
  eventStreamName, eventSubject, eventSubjectFilter, newEvent, workSubject,
  type Actor, type JobStarted, type MessageDeadLettered,
} from '@cairn/contracts';

export const SITE = 'site-a';
export const ACTOR: Actor = { kind: 'service', id: 'test@site-a' };
export const EVENTS = eventStreamName(SITE);
export const WORK = 'CAIRN_WORK_SITE_A';

export interface TestSite {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
}

/** Connects and creates the event stream (`cairn.site-a.evt.>`) and a work-queue stream. */
export async function openSite(url: string): Promise<TestSite> {
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: EVENTS, subjects: [eventSubjectFilter(SITE)], duplicate_window: 60_000_000_000 });
  await jsm.streams.add({ name: WORK, subjects: [`cairn.${SITE}.work.>`], retention: RetentionPolicy.Workqueue });
  return { nc, js: jetstream(nc), jsm };
}

/** A valid event in stream `job-<jobId>`. */
export function jobStarted(jobId: string = randomUUID()): JobStarted {
  return newEvent('JobStarted', { jobId, attempt: 1 }, { site: SITE, actor: ACTOR, streamId: `job-${jobId}` });
}

export function jobSubject(jobId: string): string {
  return eventSubject(SITE, `job-${jobId}`);
}

export function workQueue(queue: string): string {
  return workSubject(SITE, queue);
}

/** Dead-letter events recorded for a consumer, oldest first. */
export async function deadLetters(site: TestSite, consumer: string): Promise<MessageDeadLettered[]> {
  const subject = eventSubject(SITE, `deadletter-${consumer}`);
  const info = await site.jsm.streams.info(EVENTS, { subjects_filter: subject });
  const count = info.state.subjects?.[subject] ?? 0;
  if (count === 0) return [];
  const out: MessageDeadLettered[] = [];
  let seq = info.state.first_seq;
  // Bounded walk of the (small) test stream.
  for (let i = 0; i < 10_000 && out.length < count && seq <= info.state.last_seq; i++, seq++) {
    const m = await site.jsm.streams.getMessage(EVENTS, { seq }).catch(() => null);
    if (m?.subject === subject) out.push(m.json<MessageDeadLettered>());
  }
  return out;
}

/** Consumer state: how many messages wait and how many are delivered but not acked. */
export async function backlog(site: TestSite, stream: string, durable: string): Promise<{ pending: number; ackPending: number }> {
  const ci = await site.jsm.consumers.info(stream, durable);
  return { pending: ci.num_pending, ackPending: ci.num_ack_pending };
}
