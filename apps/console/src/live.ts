// The live feed: one EventSource on /v1/events/stream for the whole console. It keeps the
// latest events (with their log positions), each job's latest state and transfer progress,
// and tells the query cache which answers went stale. The browser reconnects on its own and
// sends Last-Event-ID, so the gateway resumes after the last event shown (nothing missed);
// when the browser gives up (an error status), we reopen with ?after= the same position.
import { useEffect, useState } from 'preact/hooks';
import type { JobState } from './api.ts';

export interface LiveEvent {
  position: string; id: string; type: string; streamId: string; correlationId: string; time: string;
  actor: { kind: string; id: string }; data: Record<string, unknown>;
}
export interface DiskProgress { disk: string; bytesDone: number; bytesPlanned: number }
export type FeedStatus = 'connecting' | 'live' | 'reconnecting';

const KEEP = 500;
const JOB_STATE_OF: Record<string, JobState> = {
  JobRequested: 'requested', JobStarted: 'running', JobCompleted: 'completed', JobFailed: 'failed', JobCancelled: 'cancelled',
  RestoreRequested: 'requested', RestoreStarted: 'running', RestoreCompleted: 'completed', RestoreFailed: 'failed',
};

export class LiveFeed {
  events: LiveEvent[] = [];
  readonly jobStates = new Map<string, JobState>();
  readonly progress = new Map<string, Map<string, DiskProgress>>();
  status: FeedStatus = 'connecting';
  lastPosition: string | undefined;
  private source: EventSource | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly eventListeners = new Set<(e: LiveEvent) => void>();
  private retry: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  start(): void {
    this.stopped = false;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.source?.close();
    this.source = undefined;
  }

  private open(): void {
    const url = `/v1/events/stream${this.lastPosition ? `?after=${encodeURIComponent(this.lastPosition)}` : ''}`;
    const es = new EventSource(url, { withCredentials: true });
    this.source = es;
    es.addEventListener('open', () => this.setStatus('live'));
    es.addEventListener('ready', (m) => {
      this.lastPosition ??= (m as MessageEvent<string>).lastEventId || undefined;
      this.setStatus('live');
    });
    es.addEventListener('log', (m) => this.onLog(m as MessageEvent<string>));
    es.addEventListener('progress', (m) => this.onProgress(m as MessageEvent<string>));
    es.addEventListener('error', () => {
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (an error status while the gateway restarts): reopen where we were.
        es.close();
        this.setStatus('reconnecting');
        if (!this.stopped) this.retry = setTimeout(() => this.open(), 1000);
      } else {
        this.setStatus('reconnecting');
      }
    });
  }

  private onLog(m: MessageEvent<string>): void {
    const e = JSON.parse(m.data) as LiveEvent;
    // A resumed stream never repeats, but a reopened one after a lost frame could: keep each position once.
    if (this.lastPosition !== undefined && BigInt(e.position) <= BigInt(this.lastPosition) && this.events.some((x) => x.position === e.position)) return;
    this.lastPosition = e.position;
    this.events = [e, ...this.events].slice(0, KEEP);
    const jobState = JOB_STATE_OF[e.type];
    const jobId = typeof e.data['jobId'] === 'string' ? e.data['jobId']
      : e.streamId.startsWith('job-') ? e.streamId.slice(4) : e.streamId.startsWith('restore-') ? e.streamId.slice(8) : undefined;
    if (jobState && jobId) this.jobStates.set(jobId, jobState);
    for (const l of this.eventListeners) l(e);
    this.changed();
  }

  private onProgress(m: MessageEvent<string>): void {
    const p = JSON.parse(m.data) as DiskProgress & { jobId: string };
    let disks = this.progress.get(p.jobId);
    if (!disks) this.progress.set(p.jobId, (disks = new Map()));
    disks.set(p.disk, { disk: p.disk, bytesDone: p.bytesDone, bytesPlanned: p.bytesPlanned });
    this.changed();
  }

  /** A job's transfer progress in percent (100 once it completed), or undefined before any. */
  percentOf(jobId: string, fallbackState?: JobState): number | undefined {
    const state = this.jobStates.get(jobId) ?? fallbackState;
    if (state === 'completed') return 100;
    const disks = this.progress.get(jobId);
    if (!disks) return undefined;
    let done = 0; let planned = 0;
    for (const d of disks.values()) { done += d.bytesDone; planned += d.bytesPlanned; }
    return planned > 0 ? Math.min(100, Math.floor((done / planned) * 100)) : 0;
  }

  private setStatus(s: FeedStatus): void {
    if (this.status === s) return;
    this.status = s;
    this.changed();
  }

  private changed(): void {
    for (const l of this.listeners) l();
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onEvent(listener: (e: LiveEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }
}

export const feed = new LiveFeed();

/** Re-renders the caller whenever the feed changes (coalesced to one render per 50 ms). */
export function useFeed(): LiveFeed {
  const [, setTick] = useState(0);
  useEffect(() => {
    let scheduled = false;
    return feed.subscribe(() => {
      if (scheduled) return;
      scheduled = true;
      setTimeout(() => { scheduled = false; setTick((t) => t + 1); }, 50);
    });
  }, []);
  return feed;
}
