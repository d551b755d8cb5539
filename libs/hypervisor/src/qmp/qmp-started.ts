// The monitor of a QEMU just spawned: its socket file appears at bind(), a moment before QEMU
// listens on it, so a missing file or a refused connection is tried again until QEMU answers,
// is gone (exited, or never started) or the time is up. One place for what the test restore,
// the demo VM, the benchmark's VM and the test harness's VMs each did on their own.
import { QmpClient, type QmpClientOptions } from './qmp-client.ts';

export interface StartedQmpOptions {
  /** Whether the QEMU process is gone: then no more tries, the caller says why in its words. */
  readonly gone: () => boolean;
  /** Total time to wait for an answer (default 20 s). */
  readonly timeoutMs?: number;
  /** Pause between tries (default 50 ms). */
  readonly intervalMs?: number;
  /** The client's own options (connectTimeoutMs defaults to 2 s per try here). */
  readonly client?: QmpClientOptions;
}

/**
 * The connected client, or `undefined` when QEMU went away first. Past the time, throws the
 * last connection error (its message names the socket).
 */
export async function connectStartedQmp(path: string, o: StartedQmpOptions): Promise<QmpClient | undefined> {
  const deadline = Date.now() + (o.timeoutMs ?? 20_000);
  for (;;) {
    if (o.gone()) return undefined;
    try {
      return await QmpClient.connect(path, { connectTimeoutMs: 2_000, ...o.client });
    } catch (e) {
      if (o.gone()) return undefined;
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, o.intervalMs ?? 50));
    }
  }
}
