// The audit bridge: follows the site's event log and forwards every event to each configured
// target (syslog/CEF over TCP or TLS, OCSF over HTTP or to a file, Splunk HEC), each with its
// own durable checkpoint, so one target being down never holds back or loses another's events.
import { hostname } from 'node:os';
import type { NatsConnection } from '@nats-io/transport-node';
import { NatsKvCheckpointStore, createJetStreamEventLog, type CheckpointStore, type EventSubscriber } from '@cairn/eventlog';
import type { AuditTarget } from './audit-target.ts';
import { SyslogTarget, type SyslogTargetOptions } from './syslog.target.ts';
import { HecTarget, OcsfHttpTarget, type HecTargetOptions, type OcsfHttpTargetOptions } from './http.targets.ts';
import { OcsfFileTarget, type OcsfFileTargetOptions } from './file.target.ts';
import { AuditChainTarget, type AuditChainTargetOptions } from './audit-chain.adapter.ts';
import { TargetForwarder, type BatchOptions, type ForwarderLogger, type TargetHealth } from './target-forwarder.ts';

export const CAIRN_VERSION = '0.1.0';

export type AuditTargetSpec = (
  | ({ readonly kind: 'syslog' } & SyslogTargetOptions)
  | ({ readonly kind: 'ocsf-http' } & OcsfHttpTargetOptions)
  | ({ readonly kind: 'ocsf-file' } & OcsfFileTargetOptions)
  | ({ readonly kind: 'hec' } & HecTargetOptions)
  | ({ readonly kind: 'chain' } & AuditChainTargetOptions)
  | { readonly kind: 'custom'; readonly target: AuditTarget }
) & { readonly batch?: BatchOptions };

export interface StartAuditBridgeOptions {
  readonly nc: NatsConnection;
  readonly site: string;
  /** The log to follow (default: the site's JetStream log on `nc`). */
  readonly log?: EventSubscriber;
  /** Where checkpoints live (default: KV bucket `cairn_audit_<site>`, key `audit-bridge-<target>`). */
  readonly checkpointStore?: CheckpointStore;
  readonly targets: readonly AuditTargetSpec[];
  /** Written in CEF headers and OCSF metadata (default CAIRN_VERSION). */
  readonly version?: string;
  readonly logger?: ForwarderLogger;
}

export interface AuditBridgeHealth {
  readonly ok: boolean;
  readonly targets: readonly TargetHealth[];
}

export interface RunningAuditBridge {
  health(): AuditBridgeHealth;
  close(): Promise<void>;
}

const NAME = /^[-_a-zA-Z0-9]{1,64}$/;
const silent: ForwarderLogger = { info: () => undefined, warn: () => undefined, error: () => undefined };

export function buildTarget(spec: AuditTargetSpec, version: string, nc: NatsConnection, site: string): AuditTarget {
  switch (spec.kind) {
    case 'syslog': return new SyslogTarget(spec, version);
    case 'ocsf-http': return new OcsfHttpTarget(spec, version);
    case 'ocsf-file': return new OcsfFileTarget(spec, version);
    case 'hec': return new HecTarget(spec, hostname());
    case 'chain': return new AuditChainTarget(spec, nc, site);
    case 'custom': return spec.target;
  }
}

export async function startAuditBridge(options: StartAuditBridgeOptions): Promise<RunningAuditBridge> {
  const version = options.version ?? CAIRN_VERSION;
  const targets = options.targets.map((spec) => ({ target: buildTarget(spec, version, options.nc, options.site), batch: spec.batch ?? {} }));
  const names = targets.map((t) => t.target.name);
  for (const name of names) {
    if (!NAME.test(name)) throw new Error(`audit target name ${JSON.stringify(name)} must match ${NAME.source}`);
  }
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new Error(`audit target name ${JSON.stringify(twice)} is used twice (each target has its own checkpoint)`);
  if (targets.length === 0) throw new Error('the audit bridge needs at least one target');

  const ownLog = options.log ? undefined : await createJetStreamEventLog({ nc: options.nc, site: options.site });
  const log: EventSubscriber = options.log ?? ownLog!;
  const store = options.checkpointStore
    ?? await NatsKvCheckpointStore.open(options.nc, `cairn_audit_${options.site.replace(/-/g, '_')}`);
  const logger = options.logger ?? silent;
  const forwarders = targets.map((t) => new TargetForwarder(t.target, log, store, t.batch, logger));
  for (const f of forwarders) await f.start();
  logger.info({ site: options.site, targets: names }, 'audit bridge started');

  return {
    health() {
      const list = forwarders.map((f) => f.health());
      return { ok: list.every((t) => t.failures === 0), targets: list };
    },
    async close() {
      await Promise.all(forwarders.map((f) => f.stop()));
      await Promise.all(targets.map((t) => t.target.close()));
      await ownLog?.close();
    },
  };
}
