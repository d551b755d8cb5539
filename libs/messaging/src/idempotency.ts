// Idempotency: consumers drop a message whose id they already processed, and command
// responders answer a repeated idempotency key with the first reply. The ports are here; the
// NATS KV adapters live in idempotency.adapter.ts.
import { createHash } from 'node:crypto';
import type { CommandReply } from '@cairn/contracts';

/** Ids of messages a consumer has fully handled (bounded: old ids expire). */
export interface ProcessedMessages {
  has(consumer: string, messageId: string): Promise<boolean>;
  add(consumer: string, messageId: string): Promise<void>;
}

export type ReplyClaim =
  /** First time: run the handler, then `complete` (or `abandon` to let a retry run it). */
  | { readonly state: 'claimed'; readonly token: number }
  /** Handled before with the same payload: answer with this reply. */
  | { readonly state: 'done'; readonly reply: CommandReply }
  /** Someone is handling the same key right now. */
  | { readonly state: 'pending' }
  /** The key was used before with a different payload. */
  | { readonly state: 'conflict' };

/** First replies of commands, by idempotency key, for a bounded window. */
export interface CommandReplies {
  claim(key: string, fingerprint: string): Promise<ReplyClaim>;
  complete(key: string, token: number, fingerprint: string, reply: CommandReply): Promise<void>;
  abandon(key: string, token: number): Promise<void>;
}

function canonical(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonical);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]));
  }
  return value;
}

/** Hash of what a command asks (name, version, payload), key order ignored. */
export function commandFingerprint(name: string, schemaVersion: number, payload: unknown): string {
  return createHash('sha256').update(JSON.stringify(canonical({ name, schemaVersion, payload }))).digest('base64url');
}

const KV_KEY = /^[-_=a-zA-Z0-9]{1,128}$/;

/** A KV-safe key token: kept when already safe, else a hash of it. */
export function kvToken(value: string): string {
  return KV_KEY.test(value) ? value : `h_${createHash('sha256').update(value).digest('base64url')}`;
}
