// The audit bridge service: forwards the site's event log to SIEMs (syslog/CEF, OCSF, Splunk
// HEC) at least once, with the event id as the dedup key. Start it with `startAuditBridge`.
export {
  startAuditBridge, buildTarget, CAIRN_VERSION,
  type StartAuditBridgeOptions, type RunningAuditBridge, type AuditBridgeHealth, type AuditTargetSpec,
} from './audit-bridge.service.ts';
export type { AuditTarget } from './audit-target.ts';
export { TargetRejectedError } from './audit-target.ts';
export { checkpointName, type BatchOptions, type TargetHealth, type ForwarderLogger } from './target-forwarder.ts';
export { SyslogTarget, type SyslogTargetOptions } from './syslog.target.ts';
export { OcsfHttpTarget, HecTarget, type OcsfHttpTargetOptions, type HecTargetOptions } from './http.targets.ts';
export { OcsfFileTarget, type OcsfFileTargetOptions } from './file.target.ts';
export { toCef, parseCef, escapeCefHeader, escapeCefValue, cefSeverity, eventTypeName, eventWeight, type EventWeight } from './cef.format.ts';
export { toSyslog, frameOctetCounted, escapeSdValue, syslogSeverity, EXAMPLE_PEN, AUDIT_FACILITY } from './syslog.format.ts';
export { toOcsf, OcsfEntityManagement, OCSF_VERSION, OCSF_CLASS_UID, ACTIVITY_OF } from './ocsf.mapping.ts';
export { toHec, hecBatchBody, type HecEnvelope } from './hec.format.ts';
export {
  AuditChainTarget, auditStream, readAuditChain, CHAIN_HASH_HEADER, CHAIN_PREV_HEADER, CHAIN_POSITION_HEADER,
  type AuditChainTargetOptions, type AuditStreamLocation,
} from './audit-chain.adapter.ts';
