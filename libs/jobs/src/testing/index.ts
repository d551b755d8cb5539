// Test helpers for deciders (imported by specs only: `@cairn/jobs/testing`).
export * from './decider-spec.ts';
