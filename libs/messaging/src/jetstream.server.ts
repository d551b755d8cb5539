// The Nest transport for Cairn: event/work handlers bind to durable JetStream pull consumers
// (ack after success, nak with growing delay, dead-letter poison), command handlers to
// queue-group request/reply subscriptions. `listen` connects and binds; `close` drains.
//
//   const app = await NestFactory.createMicroservice(AppModule, { strategy: new JetStreamServer({ ... }) });
import { EventEmitter } from 'node:events';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Logger } from '@nestjs/common';
import { Server, type CustomTransportStrategy, type MessageHandler } from '@nestjs/microservices';
import { isObservable, lastValueFrom } from 'rxjs';
import type { Actor } from '@cairn/contracts';
import { JetStreamEventLog } from '@cairn/eventlog';
import { commandSecurityOf, type CommandAuthorizer } from '@cairn/command-auth';
import { CommandResponder, type CommandHandlerFn } from './command-responder.ts';
import { asPermissionDenied } from './permissions.ts';
import { EventLogDeadLetterSink, type DeadLetterSink, type EventAppender } from './dead-letter.ts';
import {
  COMMAND_EXTRAS, JETSTREAM_EXTRAS, JETSTREAM_TRANSPORT, commandPattern, jetStreamPattern,
  type CommandHandlerOptions, type CommandRoute, type JetStreamHandlerOptions,
} from './decorators.ts';
import { errorMessage } from './errors.ts';
import type { CommandContext, JetStreamContext } from './handler-context.ts';
import type { CommandReplies, ProcessedMessages } from './idempotency.ts';
import { KvCommandReplies, KvProcessedMessages } from './idempotency.adapter.ts';
import { JetStreamConsumer, consumerSettings, type ConsumerLogger, type ConsumerSettings, type MessageHandlerFn } from './jetstream-consumer.ts';
import { DEFAULT_MAX_MESSAGE_BYTES } from './limits.ts';

export { DEFAULT_MAX_MESSAGE_BYTES } from './limits.ts';

export interface JetStreamServerOptions {
  /** NATS URL(s); ignored when `connection` is given. */
  readonly servers?: string | string[];
  /** An open connection to use (the server then does not close it). */
  readonly connection?: NatsConnection;
  /** Connection name shown by the NATS server. */
  readonly name?: string;
  /** The site this process serves (command subjects, dead-letter events). */
  readonly site: string;
  /** This service's identity, recorded as the actor of dead-letter events. */
  readonly actor: Actor;
  /** Where dead letters go; default: appended to the site's event log. */
  readonly deadLetters?: DeadLetterSink;
  /** The site's event log to append dead letters to (default: a JetStream event log opened on the connection). */
  readonly eventLog?: EventAppender;
  /** Default: a NATS KV bucket `cairn_processed` (24 h); `false` turns dedup off. */
  readonly processed?: ProcessedMessages | false;
  /** Default: a NATS KV bucket `cairn_command_replies` (24 h). */
  readonly commandReplies?: CommandReplies;
  /** Larger messages are dead-lettered / rejected (default 1 MiB). */
  readonly maxMessageBytes?: number;
  /** Defaults for every JetStream handler (each handler's options win). */
  readonly consumerDefaults?: Partial<Omit<ConsumerSettings, 'stream' | 'durable'>>;
  /** How long `close` waits for handlers in flight (default 10 s). */
  readonly drainTimeoutMs?: number;
  /** Checks who sent each command (signed commands); default: the one bound to the connection (`bindCommandSecurity`). */
  readonly commandAuthorizer?: CommandAuthorizer;
}

type ServerEvents = { disconnect: (server: string) => void; reconnect: (server: string) => void; error: (err: Error) => void };

export class JetStreamServer extends Server<ServerEvents> implements CustomTransportStrategy {
  override readonly transportId = JETSTREAM_TRANSPORT;
  // Our consumers await each handler's outcome to decide ack/nak/term.
  override readonly propagatesEventHandlerErrors = true;
  protected override readonly logger = new Logger(JetStreamServer.name);

  private nc: NatsConnection | undefined;
  private readonly consumers: JetStreamConsumer[] = [];
  private readonly responders: CommandResponder[] = [];
  private readonly events = new EventEmitter();
  private readonly log: ConsumerLogger;

  constructor(private readonly options: JetStreamServerOptions) {
    super();
    const l = this.logger;
    this.log = { log: (m) => l.log(m), warn: (m) => l.warn(m), error: (m) => l.error(m) };
  }

  /** Registers a JetStream handler without Nest (plain scripts, tests). */
  addJetStreamHandler(options: JetStreamHandlerOptions, fn: (payload: unknown, ctx: JetStreamContext) => unknown): void {
    this.addHandler(jetStreamPattern(options.durable), fn as MessageHandler, true, { [JETSTREAM_EXTRAS]: options });
  }

  /** Registers a command handler without Nest (plain scripts, tests). */
  addCommandHandler(service: string, name: string, fn: (payload: unknown, ctx: CommandContext) => unknown, options: CommandHandlerOptions = {}): void {
    const route: CommandRoute = { service, name, ...options };
    this.addHandler(commandPattern(service, name), fn as MessageHandler, false, { [COMMAND_EXTRAS]: route });
  }

  async listen(callback: (err?: unknown) => void): Promise<void> {
    try {
      await this.start();
      this._status$.next('connected');
      callback();
    } catch (e) {
      await this.close().catch(() => undefined);
      callback(asPermissionDenied(e, this.options.actor.id) ?? e);
    }
  }

  private async start(): Promise<void> {
    const o = this.options;
    const nc = o.connection ?? (await connect({ servers: o.servers ?? [], ...(o.name ? { name: o.name } : {}) }));
    this.nc = nc;
    void this.watchStatus(nc);
    const maxMessageBytes = o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const handlers = [...this.messageHandlers.entries()];

    const eventHandlers = handlers.filter(([, h]) => h.isEventHandler);
    if (eventHandlers.length > 0) {
      const js = jetstream(nc);
      const jsm = await jetstreamManager(nc);
      const sinkOptions = { site: o.site, actor: o.actor };
      const deadLetters = o.deadLetters
        ?? new EventLogDeadLetterSink(o.eventLog ?? (await JetStreamEventLog.open({ nc, site: o.site })), sinkOptions);
      const processed = o.processed === false ? undefined : (o.processed ?? (await KvProcessedMessages.open(nc)));
      const deps = { js, jsm, deadLetters, processed, maxMessageBytes, logger: this.log };
      for (const [pattern, handler] of eventHandlers) {
        const opts = handler.extras?.[JETSTREAM_EXTRAS] as JetStreamHandlerOptions | undefined;
        if (!opts) throw new Error(`handler ${pattern} has no JetStream options: decorate it with @JetStreamHandler({ stream, durable, … })`);
        const consumer = new JetStreamConsumer(deps, consumerSettings(opts, o.consumerDefaults), this.invoker(handler));
        this.consumers.push(consumer);
      }
    }

    const commandHandlers = handlers.filter(([, h]) => !h.isEventHandler);
    if (commandHandlers.length > 0) {
      const replies = o.commandReplies ?? (await KvCommandReplies.open(nc));
      const authorizer = o.commandAuthorizer ?? commandSecurityOf(nc)?.authorizer;
      const deps = { nc, site: o.site, replies, maxMessageBytes, logger: this.log, ...(authorizer ? { authorizer } : {}) };
      for (const [pattern, handler] of commandHandlers) {
        const route = handler.extras?.[COMMAND_EXTRAS] as CommandRoute | undefined;
        if (!route) throw new Error(`handler ${pattern} has no command route: decorate it with @CommandHandler(service, name)`);
        this.responders.push(new CommandResponder(deps, route, this.invoker(handler)));
      }
    }

    for (const c of this.consumers) await c.start();
    for (const r of this.responders) r.start();
    // A round trip makes sure the server has registered every subscription before we say ready,
    // and a subscription outside this identity's permissions is refused here, not silently dead.
    await nc.flush();
    for (const r of this.responders) {
      const refused = await r.refusal();
      if (refused) throw asPermissionDenied(refused, o.actor.id) ?? refused;
    }
  }

  /** Calls a Nest handler (a proxy that may resolve to an Observable) and settles on its outcome. */
  private invoker(handler: MessageHandler): MessageHandlerFn & CommandHandlerFn {
    return async (payload: unknown, ctx: unknown) => {
      const out: unknown = await handler(payload, ctx);
      return isObservable(out) ? lastValueFrom(out, { defaultValue: undefined }) : out;
    };
  }

  /** Consumers for tests and metrics. */
  getConsumers(): readonly JetStreamConsumer[] {
    return this.consumers;
  }

  async close(): Promise<void> {
    const timeout = this.options.drainTimeoutMs ?? 10_000;
    await Promise.all([
      ...this.consumers.map((c) => c.stop(timeout)),
      ...this.responders.map((r) => r.stop(timeout)),
    ]);
    this.consumers.length = 0;
    this.responders.length = 0;
    const nc = this.nc;
    this.nc = undefined;
    if (nc && !this.options.connection && !nc.isClosed()) {
      await nc.drain().catch((e) => this.log.warn(`drain failed: ${errorMessage(e)}`));
    }
    this.events.removeAllListeners();
  }

  on<K extends keyof ServerEvents>(event: K, callback: ServerEvents[K]): void {
    this.events.on(event, callback);
  }

  unwrap<T>(): T {
    if (!this.nc) throw new Error('JetStreamServer is not listening (call listen first)');
    return this.nc as T;
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      switch (s.type) {
        case 'disconnect':
          this._status$.next('disconnected');
          this.events.emit('disconnect', s.server);
          break;
        case 'reconnect':
          this._status$.next('connected');
          this.events.emit('reconnect', s.server);
          break;
        case 'error':
          if (this.events.listenerCount('error') > 0) this.events.emit('error', s.error);
          break;
        default:
          break;
      }
    }
  }
}
