// Schemas of everything that crosses a process boundary: event envelope, events, commands,
// subject names. One schema library (TypeBox) gives runtime validation and JSON Schema.
export * from './envelope.ts';
export * from './command.ts';
