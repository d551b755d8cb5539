// Injection tokens of the gateway (explicit: services run without decorator metadata).
export const GATEWAY_CONFIG = Symbol.for('cairn.gateway.config');
export const GATEWAY_LOGGER = Symbol.for('cairn.gateway.logger');
export const GATEWAY_CATALOGUE = Symbol.for('cairn.gateway.catalogue');
export const GATEWAY_COMMANDS = Symbol.for('cairn.gateway.commands');
export const GATEWAY_HEALTH = Symbol.for('cairn.gateway.health');
export const GATEWAY_WORK_QUEUE = Symbol.for('cairn.gateway.work-queue');
export const GATEWAY_AUTH = Symbol.for('cairn.gateway.auth');
export const GATEWAY_EVENTS = Symbol.for('cairn.gateway.events');
export const GATEWAY_AUDIT_CHAIN = Symbol.for('cairn.gateway.audit-chain');
export const GATEWAY_RESTORE_JOBS = Symbol.for('cairn.gateway.restore-jobs');
export const GATEWAY_FILE_STREAMS = Symbol.for('cairn.gateway.file-streams');
export const GATEWAY_SITE_HEALTH = Symbol.for('cairn.gateway.site-health');
export const GATEWAY_COMMAND_RELAY = Symbol.for('cairn.gateway.command-relay');
