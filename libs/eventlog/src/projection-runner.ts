// Runs a projection (a read model fed from the log): resumes after its checkpoint, hands each
// event to `handle`, then saves the event's position. At-least-once: after a crash between
// handle and save, the last event is handed again, so handlers must tolerate a repeat.
// A read model is rebuilt by dropping it, resetting the checkpoint and running again.
import type { CheckpointStore } from './checkpoint-store.ts';
import type { EventSubscriber, EventSubscription, OnInvalidRecord, Recorded } from './event-log.port.ts';

export interface ProjectionOptions {
  /** Also the checkpoint key: letters, digits, '-', '_', '='. */
  readonly name: string;
  readonly log: EventSubscriber;
  readonly checkpointStore: CheckpointStore;
  readonly handle: (recorded: Recorded) => void | Promise<void>;
  /** Only this stream category. */
  readonly category?: string;
  /** What to do with an unreadable record; without it the projection stops with InvalidRecordError. */
  readonly onInvalid?: OnInvalidRecord;
}

export interface RunningProjection {
  readonly name: string;
  /** Position of the last event handled and checkpointed. */
  readonly position: bigint;
  /** Resolves once the projection has handled everything up to `position` (inclusive). */
  waitForPosition(position: bigint, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
  /** Settles when the projection ends: resolves after stop(), rejects when it fails. */
  readonly done: Promise<void>;
}

export async function runProjection(options: ProjectionOptions): Promise<RunningProjection> {
  const { name, log, checkpointStore, handle } = options;
  let position = await checkpointStore.load(name);
  const subscription: EventSubscription = log.subscribe({
    from: position,
    ...(options.category !== undefined ? { category: options.category } : {}),
    ...(options.onInvalid ? { onInvalid: options.onInvalid } : {}),
  });
  const waiters = new Set<{ target: bigint; resolve: () => void }>();
  let failure: unknown;
  const notify = () => {
    for (const w of waiters) {
      if (position >= w.target || subscription.position >= w.target || failure !== undefined) {
        waiters.delete(w);
        w.resolve();
      }
    }
  };
  const done = (async () => {
    try {
      for await (const recorded of subscription) {
        await handle(recorded);
        await checkpointStore.save(name, recorded.position);
        position = recorded.position;
        notify();
      }
    } catch (e) {
      failure = e;
      notify();
      await subscription.stop();
      throw e;
    }
  })();
  done.catch(() => undefined);
  return {
    name,
    get position() { return position; },
    async waitForPosition(target, timeoutMs = 10_000) {
      if (position >= target) return;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`projection ${name} did not reach position ${target} within ${timeoutMs} ms (at ${position})`));
        }, timeoutMs);
        const w = { target, resolve: () => { clearTimeout(timer); resolve(); } };
        waiters.add(w);
        notify();
      });
      if (failure !== undefined) throw failure;
    },
    async stop() {
      await subscription.stop();
      await done.catch(() => undefined);
    },
    done,
  };
}

/** Forgets a projection's checkpoint so its next run replays the whole log. */
export async function resetProjection(name: string, checkpointStore: CheckpointStore): Promise<void> {
  await checkpointStore.reset(name);
}
