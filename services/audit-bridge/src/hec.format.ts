// Splunk HTTP Event Collector form: one `{time, host, source, sourcetype, event}` object per
// Cairn event; a batch is the objects one after another (newline-separated) in one POST to
// /services/collector/event.
import { forSiem } from './cef.format.ts';
import type { CairnEvent } from '@cairn/contracts';

export interface HecEnvelope {
  /** Seconds since the epoch (milliseconds as the fraction). */
  readonly time: number;
  readonly host: string;
  readonly source: string;
  readonly sourcetype: string;
  readonly index?: string;
  readonly event: CairnEvent & { readonly position: string };
}

export interface HecFormatOptions {
  readonly host: string;
  readonly source?: string;
  readonly sourcetype?: string;
  readonly index?: string;
}

export function toHec(event: CairnEvent, position: bigint, options: HecFormatOptions): HecEnvelope {
  return {
    time: Date.parse(event.time) / 1000,
    host: options.host,
    source: options.source ?? `cairn:${event.site}`,
    sourcetype: options.sourcetype ?? 'cairn:event',
    ...(options.index ? { index: options.index } : {}),
    event: { ...forSiem(event), position: position.toString() },
  };
}

export function hecBatchBody(envelopes: readonly HecEnvelope[]): string {
  return envelopes.map((e) => JSON.stringify(e)).join('\n');
}
