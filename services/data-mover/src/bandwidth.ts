// Bandwidth limits of backup and restore transfers (issue 21): per job (the policy's or the
// command's limit), per host (every transfer of this data mover process) and per site (the
// site's limit from cairn.yaml, which each mover holds to). Token buckets without burst: a
// limited transfer never goes faster than its limit measured from its start, so one of n bytes
// at r bytes/s takes at least n / r seconds, and transfers that share a bucket share its rate.
// A transfer pays before it reads (backup: the bytes it reads from the hypervisor; restore:
// each chunk it writes), in every bucket that applies, and waits for the slowest.
import { TokenBucket, systemClock, type Clock } from '@cairn/repository';

export interface BandwidthLimits {
  /** Bytes per second for all transfers of this data mover process together. */
  readonly hostBytesPerSec?: number;
  /** Bytes per second of the site (cairn.yaml `bandwidth.siteBytesPerSec`), held to by this mover. */
  readonly siteBytesPerSec?: number;
}

/** What one transfer calls before moving `bytes`. */
export interface Throttle {
  take(bytes: number): Promise<void>;
}

export class TransferBandwidth {
  private readonly shared: TokenBucket[];

  constructor(readonly limits: BandwidthLimits = {}, private readonly clock: Clock = systemClock) {
    this.shared = [limits.hostBytesPerSec, limits.siteBytesPerSec]
      .filter((r): r is number => r !== undefined)
      .map((rate) => new TokenBucket(rate, 0, clock.now()));
  }

  /** The throttle of one job: its own limit (if any) and the shared ones; undefined when nothing limits it. */
  forJob(jobBytesPerSec?: number): Throttle | undefined {
    const buckets = jobBytesPerSec === undefined ? this.shared : [new TokenBucket(jobBytesPerSec, 0, this.clock.now()), ...this.shared];
    if (buckets.length === 0) return undefined;
    return {
      take: async (bytes) => {
        if (bytes <= 0) return;
        const now = this.clock.now();
        const wait = Math.max(...buckets.map((b) => b.reserve(bytes, now)));
        if (wait > 0) await this.clock.sleep(wait);
      },
    };
  }
}
