// Event types, their schemas per version, validation and upcasting.
export * from './job.events.ts';
export * from './snapshot.events.ts';
export * from './inventory.events.ts';
export * from './policy.events.ts';
export * from './messaging.events.ts';
export * from './replication.events.ts';
export * from './security.events.ts';
export * from './restore.events.ts';
export * from './files.events.ts';
export * from './repository-key.events.ts';
export * from './provenance.events.ts';
export * from './approval.ts';
export * from './notification.events.ts';
export * from './registry.ts';
export * from './event-types.ts';
export * from './validate.ts';
export * from './new-event.ts';
