// `cairn up` supervises the nats-server it started: when it exits unasked (a crash, a kill
// from outside) it is started again on the same port and store, after a back-off that grows
// with each failed attempt, until it runs or the stack stops. Clients reconnect by themselves
// (maxReconnectAttempts -1) and JetStream keeps what was acknowledged, so work in flight goes on.
import type { NatsServerProcess } from '@cairn/nats-server';

/** Waits before restart attempts 1, 2, 3…; the last repeats. */
export const RESTART_BACKOFF_MS = [0, 500, 1000, 2000, 5000, 10_000] as const;

export interface NatsExit { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly pid: number | undefined }

export interface NatsRestart {
  readonly exit: NatsExit;
  readonly attempts: number;
  readonly downMs: number;
  readonly pid: number | undefined;
}

export interface NatsSupervision {
  readonly state: 'running' | 'restarting' | 'stopped';
  readonly restarts: number;
  readonly lastExit?: NatsExit & { readonly at: string };
  readonly lastRestartAt?: string;
}

export interface NatsSupervisor {
  /** To be called by the nats-server process on an unexpected exit. */
  exited(exit: NatsExit): void;
  status(): NatsSupervision;
  /** No more restarts (the stack is stopping). */
  stop(): void;
}

export interface SupervisorHooks {
  readonly say?: (line: string) => void;
  readonly onExit?: (exit: NatsExit) => void;
  readonly onRestarted?: (restart: NatsRestart) => void;
  readonly onAttemptFailed?: (attempt: number, error: Error) => void;
  readonly backoffMs?: readonly number[];
}

export function superviseNats(server: () => NatsServerProcess | undefined, hooks: SupervisorHooks = {}): NatsSupervisor {
  const backoff = hooks.backoffMs ?? RESTART_BACKOFF_MS;
  let state: NatsSupervision['state'] = 'running';
  let restarts = 0;
  let lastExit: NatsSupervision['lastExit'];
  let lastRestartAt: string | undefined;
  let timer: NodeJS.Timeout | undefined;

  const attempt = (exit: NatsExit, n: number, downSince: number) => {
    timer = setTimeout(() => {
      timer = undefined;
      const s = server();
      if (state === 'stopped' || !s) return;
      s.start().then(() => {
        if (state === 'stopped') return;
        state = 'running';
        restarts++;
        lastRestartAt = new Date().toISOString();
        const downMs = Date.now() - downSince;
        hooks.say?.(`nats-server          restarted (pid ${s.pid}) after ${(downMs / 1000).toFixed(1)} s, attempt ${n}`);
        hooks.onRestarted?.({ exit, attempts: n, downMs, pid: s.pid });
      }, (e: unknown) => {
        if (state === 'stopped') return;
        hooks.onAttemptFailed?.(n, e as Error);
        attempt(exit, n + 1, downSince);
      });
    }, backoff[Math.min(n - 1, backoff.length - 1)]);
  };

  return {
    exited(exit) {
      if (state !== 'running') return;
      state = 'restarting';
      lastExit = { ...exit, at: new Date().toISOString() };
      hooks.say?.(`nats-server          exited unasked (${exit.signal ?? `code ${exit.code}`}); restarting`);
      hooks.onExit?.(exit);
      attempt(exit, 1, Date.now());
    },
    status: () => ({ state, restarts, ...(lastExit ? { lastExit } : {}), ...(lastRestartAt ? { lastRestartAt } : {}) }),
    stop() {
      state = 'stopped';
      clearTimeout(timer);
    },
  };
}

/**
 * One view of a cluster's supervisors (`cairn up --cluster`): running when every member runs,
 * restarting while one is down; restarts summed, the latest exit and restart shown.
 */
export function combinedSupervision(members: readonly NatsSupervisor[]): NatsSupervisor {
  return {
    exited() { /* each member is told by its own process */ },
    status() {
      const all = members.map((m) => m.status());
      const state = all.some((s) => s.state === 'stopped') ? 'stopped' : all.every((s) => s.state === 'running') ? 'running' : 'restarting';
      const latest = <K extends 'lastExit' | 'lastRestartAt'>(k: K) => all.map((s) => s[k]).filter((x) => x !== undefined)
        .sort((a, b) => String(typeof a === 'object' ? a.at : a).localeCompare(String(typeof b === 'object' ? b.at : b))).at(-1);
      const lastExit = latest('lastExit') as NatsSupervision['lastExit'];
      const lastRestartAt = latest('lastRestartAt') as string | undefined;
      return { state, restarts: all.reduce((n, s) => n + s.restarts, 0), ...(lastExit ? { lastExit } : {}), ...(lastRestartAt ? { lastRestartAt } : {}) };
    },
    stop() { for (const m of members) m.stop(); },
  };
}
