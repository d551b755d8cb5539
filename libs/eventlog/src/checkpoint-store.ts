// Where a projection remembers how far it has read the log. Position 0n = nothing read yet.
export interface CheckpointStore {
  load(name: string): Promise<bigint>;
  save(name: string, position: bigint): Promise<void>;
  /** Forget a checkpoint (the projection will replay from the start). */
  reset(name: string): Promise<void>;
}

export class InMemoryCheckpointStore implements CheckpointStore {
  private readonly positions = new Map<string, bigint>();
  async load(name: string): Promise<bigint> {
    return this.positions.get(name) ?? 0n;
  }
  async save(name: string, position: bigint): Promise<void> {
    this.positions.set(name, position);
  }
  async reset(name: string): Promise<void> {
    this.positions.delete(name);
  }
}
