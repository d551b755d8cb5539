// The log's VMs as this coordinator last read them: every `vm-<vmId>` stream folded, with its
// revision, kept up to date by reading only the `vm` events appended since the last refresh
// (one read of the category, not one read of each VM's stream per inventory round).
//
// It is what the log said at the last refresh, including other coordinators' writes up to then.
// An append decided on it expects that revision, so a write since (another coordinator) is
// refused by the log and that one VM's stream is read again: see SnapshotCoordinator#syncVm.
import type { InvalidRecord } from '@cairn/eventlog';
import type { EventLogReader, Recorded } from '@cairn/eventlog';
import type { CairnEvent, KnownEvent } from '@cairn/contracts';
import { CoalescedRound } from './coalesced-round.ts';
import { evolveVm, unknownVm, type KnownVm } from './inventory.decider.ts';

export interface LoggedVm {
  readonly known: KnownVm;
  /** Revision of the VM stream's last event (-1n: no stream). */
  readonly revision: bigint;
}

const PREFIX = 'vm-';

export class LoggedVms {
  readonly #vms = new Map<string, LoggedVm>();
  /** Streams with a record this reader could not read: read whole by the caller (which reports it). */
  readonly #unreadable = new Set<string>();
  #position = 0n;
  readonly #refresh = new CoalescedRound(() => this.#read());

  constructor(private readonly log: EventLogReader) {}

  /** Takes in every `vm` event appended since the last refresh (one refresh at a time; callers during one share the next). */
  refresh(): Promise<void> { return this.#refresh.run(); }

  async #read(): Promise<void> {
    const onInvalid = (record: InvalidRecord) => {
      this.#unreadable.add(record.location.slice(record.location.lastIndexOf('.') + 1));
      if (record.position > this.#position) this.#position = record.position;
    };
    for await (const r of this.log.readAll({ category: 'vm', fromPosition: this.#position, onInvalid })) {
      this.#take(r);
      this.#position = r.position;
    }
  }

  #take(r: Recorded): void {
    if (!r.event.streamId.startsWith(PREFIX)) return;
    const vmId = r.event.streamId.slice(PREFIX.length);
    const now = this.#vms.get(vmId) ?? { known: unknownVm, revision: -1n };
    // Already taken in (this coordinator's own append, or a read of the stream).
    if (r.revision <= now.revision) return;
    this.#vms.set(vmId, { known: evolveVm(now.known, r.event), revision: r.revision });
  }

  /** The VM's stream as last read; undefined when it must be read whole (an unreadable record in it). */
  get(vmId: string): LoggedVm | undefined {
    if (this.#unreadable.has(PREFIX + vmId)) return undefined;
    return this.#vms.get(vmId) ?? { known: unknownVm, revision: -1n };
  }

  /** The VM's stream as just read whole, or as just appended to at `revision`. */
  set(vmId: string, vm: LoggedVm): void {
    const now = this.#vms.get(vmId);
    if (!now || vm.revision >= now.revision) this.#vms.set(vmId, vm);
  }

  /** After this coordinator appended `events` on `before`, ending at `revision`. */
  appended(vmId: string, before: LoggedVm, events: readonly CairnEvent[], revision: bigint): void {
    let known = before.known;
    for (const e of events) known = evolveVm(known, e as KnownEvent);
    this.set(vmId, { known, revision });
  }

  /** VMs the log has discovered on hypervisor instance `host` and not removed. */
  onHost(host: string): string[] {
    const out: string[] = [];
    for (const [vmId, vm] of this.#vms) if (vm.known.discovered && vm.known.hypervisor?.host === host) out.push(vmId);
    return out;
  }
}
