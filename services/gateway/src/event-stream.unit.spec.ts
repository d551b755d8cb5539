import { describe, expect, it } from 'vitest';
import { eventVisibleTo, resumeFrom, ResumeError, sseFrame } from './event-stream.ts';

describe('event stream rules', () => {
  it('shows security streams to administrators and auditors only', () => {
    expect(eventVisibleTo(['auditor'], { streamId: 'token-abc' })).toBe(true);
    expect(eventVisibleTo(['administrator'], { streamId: 'approval-x' })).toBe(true);
    expect(eventVisibleTo(['operator'], { streamId: 'token-abc' })).toBe(false);
    expect(eventVisibleTo(['restore-operator'], { streamId: 'user-bob' })).toBe(false);
    expect(eventVisibleTo(['operator'], { streamId: 'job-1' })).toBe(true);
    expect(eventVisibleTo([], { streamId: 'job-1' })).toBe(false);
  });

  it('frames an event with its position as id, on one data line', () => {
    const f = sseFrame({ id: '42', event: 'log', data: { text: 'a\nb', n: 5n } });
    expect(f).toBe('event: log\nid: 42\ndata: {"text":"a\\nb","n":"5"}\n\n');
    expect(sseFrame({ data: 1 })).toBe('data: 1\n\n');
  });

  it('resumes after Last-Event-ID, else ?after=, else at the head', () => {
    expect(resumeFrom('17', '3')).toBe(17n);
    expect(resumeFrom(undefined, '3')).toBe(3n);
    expect(resumeFrom('', undefined)).toBe('head');
    expect(() => resumeFrom('-1', undefined)).toThrow(ResumeError);
    expect(() => resumeFrom(undefined, 'abc')).toThrow(/not a log position/);
  });
});
