// HTTP targets: OCSF records as JSON lines in one POST per batch, and Splunk HEC batches.
// A batch is delivered when the collector answers 2xx; anything else (5xx, 4xx, no answer)
// fails the batch and the bridge sends it again after a backoff.
import type { Recorded } from '@cairn/eventlog';
import { postBody, type AuditTarget } from './audit-target.ts';
import { toOcsf } from './ocsf.mapping.ts';
import { hecBatchBody, toHec, type HecFormatOptions } from './hec.format.ts';

export interface OcsfHttpTargetOptions {
  readonly name: string;
  readonly url: string;
  readonly headers?: Record<string, string>;
  readonly timeoutMs?: number;
}

export class OcsfHttpTarget implements AuditTarget {
  readonly name: string;
  constructor(private readonly options: OcsfHttpTargetOptions, private readonly version: string) {
    this.name = options.name;
  }
  async send(records: readonly Recorded[]): Promise<void> {
    const body = records.map((r) => JSON.stringify(toOcsf(r.event, r.position, this.version))).join('\n') + '\n';
    await postBody(this.name, this.options.url, { 'content-type': 'application/x-ndjson', ...this.options.headers }, body, this.options.timeoutMs ?? 10_000);
  }
  async close(): Promise<void> {}
}

export interface HecTargetOptions extends Partial<HecFormatOptions> {
  readonly name: string;
  /** Base URL of the collector, e.g. `https://splunk:8088`; `/services/collector/event` is appended. */
  readonly url: string;
  readonly token: string;
  readonly timeoutMs?: number;
}

export class HecTarget implements AuditTarget {
  readonly name: string;
  constructor(private readonly options: HecTargetOptions, private readonly defaultHost: string) {
    this.name = options.name;
  }
  async send(records: readonly Recorded[]): Promise<void> {
    const { host, source, sourcetype, index } = this.options;
    const format: HecFormatOptions = {
      host: host ?? this.defaultHost,
      ...(source ? { source } : {}), ...(sourcetype ? { sourcetype } : {}), ...(index ? { index } : {}),
    };
    const body = hecBatchBody(records.map((r) => toHec(r.event, r.position, format)));
    const url = `${this.options.url.replace(/\/+$/, '')}/services/collector/event`;
    await postBody(this.name, url, { authorization: `Splunk ${this.options.token}`, 'content-type': 'application/json' }, body, this.options.timeoutMs ?? 10_000);
  }
  async close(): Promise<void> {}
}
