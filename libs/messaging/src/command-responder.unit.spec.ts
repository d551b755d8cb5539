// What a command handler throws, as the caller's reply: a Refusal with its code and details
// (kept for a retry), anything else as the route's failure code or `internal`.
import { describe, expect, it } from 'vitest';
import { Refusal } from '@cairn/contracts';
import { replyForError } from './command-responder.ts';

describe('replyForError', () => {
  it('answers a Refusal with its code and details, kept for a retry (unless unavailable)', () => {
    expect(replyForError(new Refusal('conflict', 'job j1 has ended', { jobId: 'j1' })))
      .toEqual({ reply: { accepted: false, error: { code: 'conflict', message: 'job j1 has ended', details: { jobId: 'j1' } } }, stored: true });
    expect(replyForError(new Refusal('unavailable', 'target away')).stored).toBe(false);
    class Named extends Refusal {}
    expect(replyForError(new Named('not_found', 'no such thing'), 'restore_failed').reply).toMatchObject({ error: { code: 'not_found' } });
  });

  it('answers anything else with the route failure code (kept) or internal (not kept)', () => {
    expect(replyForError(new Error('disk on fire'), 'restore_failed'))
      .toEqual({ reply: { accepted: false, error: { code: 'restore_failed', message: 'disk on fire' } }, stored: true });
    expect(replyForError(new Error('disk on fire')))
      .toEqual({ reply: { accepted: false, error: { code: 'internal', message: 'disk on fire' } }, stored: false });
  });
});
