// The notifier: follows the site's event log from its own checkpoint, turns what deserves it
// (job failed, damage found, RPO missed, approval waiting, dead letters) into notices, routes
// them by kind, severity, site and VM to the routes recorded in the log (`notifyroute-*`), and
// sends each route's notices as one message per group (digests: a storm is one message, at
// most one per interval). Nothing is missed across restarts: the saved position never passes
// a notice that was not sent, and each route remembers up to where it was sent, so a restart
// sends nothing twice, except the one message whose receipt was not yet recorded when the
// process died (sent again with the same id: e-mail Message-ID, webhook Idempotency-Key).
import type { NatsConnection } from '@nats-io/transport-node';
import { createJetStreamEventLog, type EventSubscriber, type EventSubscription, type Recorded } from '@cairn/eventlog';
import type { NotificationRoute } from '@cairn/contracts';
import {
  addToGroup, createTransport, digestTimes, dueAt, foldRoutes, matches, messageOf, noticeOf,
  type Group, type NotificationTransport,
} from '@cairn/notifications';
import { EMPTY_STATE, NatsKvNotifierStateStore, type NotifierStateStore } from './notifier-state.adapter.ts';

export interface NotifierLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface StartNotifierOptions {
  readonly site: string;
  /** For the default log and state store. */
  readonly nc?: NatsConnection;
  readonly log?: EventSubscriber;
  readonly stateStore?: NotifierStateStore;
  /** How a route's target is reached (default: webhook, e-mail or syslog as the route says). */
  readonly transportFor?: (route: NotificationRoute) => NotificationTransport;
  /** Where e-mail routes' `passwordEnv` is looked up (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly now?: () => number;
  readonly logger?: NotifierLogger;
  /** Retry of a failed send: first delay (default 1 s), doubled up to the cap (default 5 min). */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

export interface NotifierHealth {
  /** Position of the last event read. */
  readonly read: string;
  /** Position saved: everything up to it is handled. */
  readonly saved: string;
  readonly routes: number;
  /** Notices waiting in groups (digests not yet due, or sends being retried). */
  readonly pending: number;
  readonly messagesSent: number;
  /** Consecutive failures of the send being retried (0 = healthy). */
  readonly failures: number;
  readonly lastError?: string;
}

export interface RunningNotifier {
  health(): NotifierHealth;
  close(): Promise<void>;
}

const silent: NotifierLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };
const MAX_JOB_VMS = 5000;

export async function startNotifier(options: StartNotifierOptions): Promise<RunningNotifier> {
  if (!options.log && !options.nc) throw new Error('the notifier needs a NATS connection or a log');
  const ownLog = options.log ? undefined : await createJetStreamEventLog({ nc: options.nc!, site: options.site, createStream: false });
  const store = options.stateStore ?? await NatsKvNotifierStateStore.open(options.nc!, options.site);
  const notifier = new Notifier(options, options.log ?? ownLog!, store);
  await notifier.start();
  return {
    health: () => notifier.health(),
    async close() {
      await notifier.stop();
      await ownLog?.close();
    },
  };
}

class Notifier {
  private readonly now: () => number;
  private readonly logger: NotifierLogger;
  private routes = new Map<string, NotificationRoute>();
  /** Routes as of the saved position, and the route events read since (to compute the routes of a position). */
  private savedRoutes = new Map<string, NotificationRoute>();
  private routeLog: Array<{ position: bigint; event: { type: string; data: unknown } }> = [];
  private readonly delivered = new Map<string, { through: bigint; at: number }>();
  private readonly groups = new Map<string, Group>();
  private readonly inFlight = new Map<string, Group>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly transports = new Map<string, NotificationTransport>();
  private readonly jobVms = new Map<string, string>();
  /** Messages that were being sent when the last process stopped: rebuilt from the log, sent again first. */
  private readonly resend = new Map<string, { through: bigint; group?: Group }>();
  private readPosition = 0n;
  private savedPosition = 0n;
  private subscription: EventSubscription | undefined;
  private reading: Promise<void> | undefined;
  private saving: Promise<void> = Promise.resolve();
  private saveTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private wake: (() => void) | undefined;
  private messagesSent = 0;
  private failures = 0;
  private lastError: string | undefined;

  constructor(private readonly options: StartNotifierOptions, private readonly log: EventSubscriber, private readonly store: NotifierStateStore) {
    this.now = options.now ?? Date.now;
    this.logger = options.logger ?? silent;
  }

  async start(): Promise<void> {
    const state = (await this.store.load()) ?? EMPTY_STATE;
    this.readPosition = this.savedPosition = BigInt(state.position);
    for (const r of state.routes) this.routes.set(r.routeId, r);
    this.savedRoutes = new Map(this.routes);
    for (const [id, d] of Object.entries(state.delivered)) this.delivered.set(id, { through: BigInt(d.through), at: d.at });
    for (const [job, vm] of state.jobVms) this.jobVms.set(job, vm);
    for (const [id, x] of Object.entries(state.sending ?? {})) this.resend.set(id, { through: BigInt(x.through) });
    this.reading = this.read();
    this.logger.info({ site: this.options.site, from: state.position, routes: this.routes.size }, 'notifier started');
  }

  health(): NotifierHealth {
    let pending = 0;
    for (const g of this.unsent()) pending += g.count;
    return {
      read: this.readPosition.toString(), saved: this.savedPosition.toString(), routes: this.routes.size, pending,
      messagesSent: this.messagesSent, failures: this.failures, ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    for (const t of this.timers.values()) clearTimeout(t);
    clearTimeout(this.saveTimer);
    await this.subscription?.stop();
    await this.reading;
    await this.save();
    for (const t of this.transports.values()) await t.close().catch(() => undefined);
  }

  /** Follows the log; a failed subscription is opened again where it stopped. */
  private async read(): Promise<void> {
    let delay = this.options.minBackoffMs ?? 1000;
    while (!this.stopping) {
      const sub = this.log.subscribe({
        from: this.readPosition,
        onInvalid: (record) => this.logger.error({ position: String(record.position), error: record.error.message }, 'unreadable record: no notice from it'),
      });
      this.subscription = sub;
      try {
        for await (const r of sub) {
          this.handle(r);
          delay = this.options.minBackoffMs ?? 1000;
        }
        return;
      } catch (e) {
        if (this.stopping) return;
        this.logger.error({ error: String(e), retryInMs: delay }, 'log subscription failed, subscribing again');
        await sub.stop().catch(() => undefined);
        await this.pause(delay);
        delay = Math.min(this.options.maxBackoffMs ?? 300_000, delay * 2);
      }
    }
  }

  private handle(r: Recorded): void {
    const e = r.event;
    if (e.type === 'NotificationRouteAdded' || e.type === 'NotificationRouteRemoved') {
      this.routeLog.push({ position: r.position, event: e });
      this.routes = foldRoutes(this.routes, e);
      const id = e.data.routeId;
      void this.transports.get(id)?.close().catch(() => undefined);
      this.transports.delete(id);
      if (!this.routes.has(id)) {
        this.groups.delete(id);
        this.resend.delete(id);
        clearTimeout(this.timers.get(id));
        this.timers.delete(id);
      }
    }
    if (e.type === 'JobRequested') {
      this.jobVms.set(e.data.jobId, e.data.vmId);
      if (this.jobVms.size > MAX_JOB_VMS) this.jobVms.delete(this.jobVms.keys().next().value!);
    } else if (e.type === 'JobCompleted' || e.type === 'JobCancelled') {
      this.jobVms.delete(e.data.jobId);
    }
    const notice = noticeOf(e, r.position, { vmOf: (job) => this.jobVms.get(job) });
    this.readPosition = r.position;
    if (notice) {
      const now = this.now();
      for (const route of this.routes.values()) {
        if (!matches(route.match, notice)) continue;
        const done = this.delivered.get(route.routeId);
        if (done && r.position <= done.through) continue; // sent before a restart
        const again = this.resend.get(route.routeId);
        if (again && r.position <= again.through) {
          again.group = addToGroup(again.group, notice, now);
          if (r.position === again.through) {
            this.resend.delete(route.routeId);
            void this.send(route, again.group);
          }
          continue;
        }
        this.groups.set(route.routeId, addToGroup(this.groups.get(route.routeId), notice, now));
        this.schedule(route.routeId);
      }
    }
    this.saveSoon();
  }

  private schedule(routeId: string): void {
    // The send in flight (or the one to send again first) schedules the rest when done.
    if (this.stopping || this.inFlight.has(routeId) || this.resend.has(routeId)) return;
    const group = this.groups.get(routeId);
    const route = this.routes.get(routeId);
    if (!group || !route) return;
    const due = dueAt(group, this.delivered.get(routeId)?.at, digestTimes(route.digest));
    clearTimeout(this.timers.get(routeId));
    this.timers.set(routeId, setTimeout(() => void this.flush(routeId), Math.max(0, due - this.now())));
  }

  private async flush(routeId: string): Promise<void> {
    this.timers.delete(routeId);
    const group = this.groups.get(routeId);
    const route = this.routes.get(routeId);
    if (!group || !route || this.stopping) return;
    this.groups.delete(routeId);
    await this.send(route, group);
  }

  /** Sends one group, recording first that it is being sent (so a crash sends the same message again). */
  private async send(route: NotificationRoute, group: Group): Promise<void> {
    const routeId = route.routeId;
    this.inFlight.set(routeId, group);
    await this.save();
    const message = messageOf(routeId, this.options.site, group);
    let delay = this.options.minBackoffMs ?? 1000;
    for (;;) {
      try {
        await this.transport(route).send(message);
        this.failures = 0;
        this.lastError = undefined;
        break;
      } catch (e) {
        this.failures++;
        this.lastError = `${route.name}: ${e instanceof Error ? e.message : String(e)}`;
        this.logger.warn({ route: route.name, message: message.id, failures: this.failures, error: this.lastError, retryInMs: delay }, 'notification not sent, retrying');
        this.transports.delete(routeId);
        await this.pause(delay);
        delay = Math.min(this.options.maxBackoffMs ?? 300_000, delay * 2);
        // Stopped, or the route removed or replaced meanwhile: the group is not sent here.
        // Stopped: the group stays in flight, so the saved position stays before it.
        if (this.stopping) return;
        // The route was removed (its notices go nowhere) or replaced (they go to its new target).
        if (this.routes.get(routeId) !== route) {
          this.inFlight.delete(routeId);
          if (this.routes.has(routeId) && !this.groups.has(routeId)) this.groups.set(routeId, group);
          this.schedule(routeId);
          return;
        }
      }
    }
    this.inFlight.delete(routeId);
    this.delivered.set(routeId, { through: group.lastPosition, at: this.now() });
    this.messagesSent++;
    this.logger.info({ route: route.name, message: message.id, notices: group.count }, 'notification sent');
    await this.save();
    this.schedule(routeId);
  }

  private transport(route: NotificationRoute): NotificationTransport {
    let t = this.transports.get(route.routeId);
    if (!t) {
      t = this.options.transportFor ? this.options.transportFor(route) : createTransport(route.target, { ...(this.options.env ? { env: this.options.env } : {}) });
      this.transports.set(route.routeId, t);
    }
    return t;
  }

  /** Every group whose notices are not yet sent. */
  private unsent(): Group[] {
    return [...this.groups.values(), ...this.inFlight.values(), ...[...this.resend.values()].flatMap((x) => (x.group ? [x.group] : []))];
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => { clearTimeout(timer); resolve(); };
    });
  }

  private saveSoon(): void {
    if (this.saveTimer || this.stopping) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.save();
    }, 200);
  }

  /** Saves the position before the oldest notice not yet sent (or the read position), with the routes as of it. */
  private save(): Promise<void> {
    this.saving = this.saving.then(async () => {
      let position = this.readPosition;
      for (const g of this.unsent()) {
        if (g.firstPosition - 1n < position) position = g.firstPosition - 1n;
      }
      let routes = this.savedRoutes;
      for (const x of this.routeLog) if (x.position <= position) routes = foldRoutes(routes, x.event);
      const delivered = Object.fromEntries([...this.delivered].map(([id, d]) => [id, { through: d.through.toString(), at: d.at }]));
      const sending = Object.fromEntries([
        ...[...this.resend].map(([id, x]) => [id, { through: x.through.toString() }] as const),
        ...[...this.inFlight].map(([id, g]) => [id, { through: g.lastPosition.toString() }] as const),
      ]);
      try {
        await this.store.save({ position: position.toString(), routes: [...routes.values()], delivered, sending, jobVms: [...this.jobVms] });
        this.savedRoutes = routes;
        this.routeLog = this.routeLog.filter((x) => x.position > position);
        this.savedPosition = position;
      } catch (e) {
        this.logger.warn({ error: String(e) }, 'notifier state not saved (saved again with the next change)');
      }
    });
    return this.saving;
  }
}
