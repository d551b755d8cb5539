// What a handler learns about the message it handles, besides the payload: where it came
// from, how often it was delivered, its trace, and (for commands) the envelope.
import { BaseRpcContext } from '@nestjs/microservices';
import type { Context } from '@opentelemetry/api';
import type { Command, TraceContext } from '@cairn/contracts';

export interface JetStreamMessageInfo {
  readonly subject: string;
  readonly stream: string;
  readonly consumer: string;
  readonly streamSequence: number;
  /** 1 on first delivery. */
  readonly deliveryCount: number;
  /** Event id / `Nats-Msg-Id`, when the message has one. */
  readonly messageId: string | undefined;
  readonly headers: Readonly<Record<string, readonly string[]>>;
  /** The trace of this handling (the consumer span when recording, else the sender's). */
  readonly trace: TraceContext | undefined;
  /** OpenTelemetry context to parent further spans and to publish with. */
  readonly otelContext: Context;
}

/** Second argument of a JetStream handler (`@Ctx() ctx: JetStreamContext`). */
export class JetStreamContext extends BaseRpcContext<[JetStreamMessageInfo, () => void]> {
  get info(): JetStreamMessageInfo { return this.args[0]; }
  get subject(): string { return this.args[0].subject; }
  get deliveryCount(): number { return this.args[0].deliveryCount; }
  get messageId(): string | undefined { return this.args[0].messageId; }
  get trace(): TraceContext | undefined { return this.args[0].trace; }
  get otelContext(): Context { return this.args[0].otelContext; }
  /** Tells the server the handler is still working (the consumer also does so on a timer). */
  working(): void { this.args[1](); }
}

export interface CommandInfo {
  readonly subject: string;
  readonly service: string;
  readonly command: Command;
  readonly trace: TraceContext | undefined;
  readonly otelContext: Context;
  /**
   * Who vouched for the actor, where the connection checks commands: `user` when the person's
   * own current key signed it (the local CLI), `service` when a service identity did (the
   * gateway for an API user), `unchecked` on a site that does not require signatures.
   */
  readonly vouchedBy?: 'service' | 'user' | 'unchecked' | 'statement';
}

/** Second argument of a command handler (`@Ctx() ctx: CommandContext`). */
export class CommandContext extends BaseRpcContext<[CommandInfo]> {
  get info(): CommandInfo { return this.args[0]; }
  get command(): Command { return this.args[0].command; }
  get actor(): Command['actor'] { return this.args[0].command.actor; }
  get idempotencyKey(): string { return this.args[0].command.idempotencyKey; }
  get trace(): TraceContext | undefined { return this.args[0].trace; }
  get otelContext(): Context { return this.args[0].otelContext; }
}
