// Benchmarks of the repository against restic and borg (see docs/benchmarks.md).
export * from './image.ts';
export * from './extents.ts';
