import { describe, expect, it } from 'vitest';
import { checkEvent, isUuid } from '@cairn/contracts';
import { deadLetterEvent, deadLetterEventId, type DeadLetter } from './dead-letter.ts';

const dl: DeadLetter = {
  reason: 'schema_mismatch',
  detail: '1 problem(s)',
  problems: [{ path: '/data/attempt', message: 'Expected integer' }],
  consumer: 'catalogue-jobs',
  stream: 'CAIRN_EVT_SITE_A',
  subject: 'cairn.site-a.evt.job.job-1',
  streamSequence: 42,
  deliveries: 1,
  payload: Buffer.from('x'.repeat(5000)),
  headers: { 'Nats-Msg-Id': ['abc'] },
  correlationId: 'job-1',
};

describe('dead-letter event', () => {
  it('is a valid MessageDeadLettered with the reason, place and a bounded preview', () => {
    const e = deadLetterEvent(dl, { site: 'site-a', actor: { kind: 'service', id: 'catalogue@site-a' } });
    expect(() => checkEvent(e)).not.toThrow();
    expect(e.streamId).toBe('deadletter-catalogue-jobs');
    expect(e.correlationId).toBe('job-1');
    expect(e.data).toMatchObject({ consumer: 'catalogue-jobs', streamSequence: 42, deliveries: 1, payloadBytes: 5000 });
    expect(e.data.reason).toBe('schema_mismatch: 1 problem(s) [/data/attempt: Expected integer]');
    expect(Buffer.from(e.data.payloadPreview, 'base64').byteLength).toBe(1024);
  });

  it('has an id derived from the message, so recording it twice is one event', () => {
    const a = deadLetterEventId(dl);
    expect(isUuid(a)).toBe(true);
    expect(deadLetterEventId({ ...dl, deliveries: 7 } as DeadLetter)).toBe(a);
    expect(deadLetterEventId({ ...dl, streamSequence: 43 })).not.toBe(a);
  });
});
