// Schemas of everything that crosses a process boundary: event envelope, events, commands,
// subject names. One schema library (TypeBox) gives runtime validation and JSON Schema.
import './formats.ts';
export * from './envelope.ts';
export * from './command.ts';
export * from './decider.ts';
export * from './refusal.ts';
export * from './restore-commands.ts';
export * from './access.ts';
export * from './restore-confinement.ts';
export * from './provenance.ts';
export * from './person-signing.ts';
export * from './global-policy.ts';
export * from './files.ts';
export * from './subjects.ts';
export * from './nats-cluster.ts';
export * from './formats.ts';
export * from './events/index.ts';
