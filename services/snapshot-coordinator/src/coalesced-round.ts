// One round at a time, with the triggers that come in during a round coalesced: whoever asks
// while a round runs gets the one round that starts after it (which sees everything that
// happened up to its start), and whoever asks while that one waits shares it too.
export class CoalescedRound {
  #running: Promise<void> | undefined;
  #queued: Promise<void> | undefined;

  constructor(private readonly round: () => Promise<void>) {}

  /** Resolves when a round that started after this call has ended (rejects with its error). */
  run(): Promise<void> {
    if (this.#queued) return this.#queued;
    if (!this.#running) return this.#start();
    const queued = this.#running.catch(() => undefined).then(() => {
      this.#queued = undefined;
      return this.#start();
    });
    this.#queued = queued;
    return queued;
  }

  #start(): Promise<void> {
    const p: Promise<void> = this.round().finally(() => { if (this.#running === p) this.#running = undefined; });
    this.#running = p;
    return p;
  }
}
