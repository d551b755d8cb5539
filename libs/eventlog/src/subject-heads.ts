// What this client last learnt of each subject's last message on JetStream: its stream sequence
// and its revision, from its own publishes, head reads and subscriptions. Pure bookkeeping.
//
// Any such pair stays true for ever (the stream denies deletes and purges): the message at that
// sequence has that revision. Whether it is still the subject's *last* message is what the
// server checks when an append publishes expecting that sequence, so a stale entry costs one
// refused publish (and then the head read it saved), never a wrong append.

export interface SubjectHead {
  readonly seq: number;
  readonly revision: bigint;
}

/** Default number of subjects remembered (the least recently learnt are forgotten first). */
export const SUBJECT_HEADS_LIMIT = 32_768;

export class SubjectHeads {
  readonly #heads = new Map<string, SubjectHead>();

  constructor(private readonly limit = SUBJECT_HEADS_LIMIT) {}

  /** Learns that `head` is (or was) the subject's last message; an older one than known is ignored. */
  note(subject: string, head: SubjectHead): void {
    const known = this.#heads.get(subject);
    if (known && known.seq >= head.seq) return;
    // Map order is insertion order: deleting first makes this the most recent entry.
    this.#heads.delete(subject);
    this.#heads.set(subject, head);
    if (this.#heads.size > this.limit) this.#heads.delete(this.#heads.keys().next().value!);
  }

  /** The subject's last message as known, when it has this revision. */
  at(subject: string, revision: bigint): SubjectHead | undefined {
    const known = this.#heads.get(subject);
    return known?.revision === revision ? known : undefined;
  }

  get size(): number { return this.#heads.size; }
}
