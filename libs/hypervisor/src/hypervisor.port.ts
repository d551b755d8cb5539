// The hypervisor port: what the snapshot coordinator needs from any hypervisor (QEMU now,
// VMware or Hyper-V later). Contract, for every implementation:
// - openView returns only when every chosen disk has a point-in-time view exported over NBD;
//   the guest keeps running and writing meanwhile. On error nothing it created is left behind.
// - releaseView(success=true) advances the changed-block generation: the next incremental holds
//   only changes made after the view was opened. releaseView(success=false) keeps those changes
//   for the next backup, so a failed transfer never loses data. Both are idempotent.
// - reapOrphans removes everything this adapter created that belongs to no open view (after a
//   crash of the caller or of the hypervisor), treating such views as failed.

export type DiskFormat = 'qcow2' | 'raw' | (string & {});

export interface DiskRef {
  /** Stable id of the disk within its VM (QEMU: the device id, e.g. `vblk0`). */
  readonly id: string;
  /** Block node that backs the device (QEMU node name). */
  readonly nodeName: string;
  readonly file: string;
  readonly format: DiskFormat;
  readonly sizeBytes: number;
}

export type VmState = 'running' | 'paused' | 'stopped' | (string & {});

export interface VmInfo {
  /** The VM's name (QEMU: `-name`), unique per adapter. */
  readonly id: string;
  readonly name: string;
  readonly state: VmState;
  readonly disks: readonly DiskRef[];
  /** Tags the hypervisor keeps for the VM (vSphere), when it has any. */
  readonly tags?: readonly string[];
}

export type ViewMode = 'full' | 'incremental';

export interface OpenViewRequest {
  readonly vm: string;
  /** Disk ids to include; all disks when omitted. */
  readonly disks?: readonly string[];
  /** `auto`: incremental where a usable bitmap exists, else full. `full`: always full. */
  readonly mode: 'auto' | 'full';
  readonly jobId: string;
  /** Backup chain (policy/target) whose changes are tracked; one bitmap per chain and disk. */
  readonly chain?: string;
  /** Freeze guest file systems around the point in time (needs a guest agent). */
  readonly quiesce?: boolean;
  /** How long the view lives unless renewed (the caller's lease; default 1 h). */
  readonly leaseMs?: number;
}

/** Client certificate files for an export served with TLS (NBD_OPT_STARTTLS), on the reader's machine. */
export interface NbdTlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/**
 * An export served with TLS that requires a client certificate of the site's PKI: the reader
 * (a data mover, on any node) presents its own site identity certificate and verifies the
 * server against the site CA. Nothing about keys travels with the address.
 */
export interface NbdSiteTls {
  readonly pki: 'site';
}

export type NbdTls = NbdTlsFiles | NbdSiteTls;

export type NbdAddress = { readonly socketPath: string } | { readonly host: string; readonly port: number; readonly tls?: NbdTls };

export interface ViewDisk {
  readonly disk: string;
  readonly exportName: string;
  readonly sizeBytes: number;
  readonly mode: ViewMode;
  /** Why full or incremental, e.g. "changes since last backup (bitmap cairn-p1)". */
  readonly reason: string;
  /** NBD meta context listing changed extents (incremental only). */
  readonly bitmapContext?: string;
  /** Bytes marked changed in that context (incremental only). */
  readonly changedBytes?: number;
}

export interface View {
  readonly viewId: string;
  readonly vm: string;
  readonly jobId: string;
  readonly nbd: NbdAddress;
  readonly disks: readonly ViewDisk[];
  readonly createdAt: string;
  readonly expiresAt: string;
  /** Whether the guest file systems were frozen at the point in time, and if not, why. */
  readonly quiesced?: { readonly frozen: boolean; readonly reason: string };
  /**
   * The VM's configuration at the point in time, for its restore point (libvirt: the domain
   * XML with host paths and secret references apart; QEMU: machine, vCPUs, memory, disks, NICs).
   */
  readonly vmConfig?: Readonly<Record<string, unknown>>;
}

export interface ReapReport {
  readonly exports: string[];
  readonly jobs: string[];
  readonly nodes: string[];
  readonly files: string[];
  /** Frozen bitmaps merged back into their live bitmap and removed. */
  readonly bitmaps: string[];
}

export interface QuiesceResult { readonly frozen: boolean; readonly reason: string }

export interface HypervisorAdapter {
  /** What the inventory reports the VMs as running under (default `qemu`). */
  readonly kind?: 'qemu' | 'libvirt' | 'vmware' | 'simulated';
  inventory(): Promise<VmInfo[]>;
  openView(request: OpenViewRequest): Promise<View>;
  releaseView(viewId: string, outcome: { success: boolean }): Promise<void>;
  /** Views this adapter instance has open. */
  openViews(): View[];
  /** Takes over a view opened by an earlier run of the caller (from its persisted records). */
  adoptView(view: View): void;
  /**
   * Removes leftovers of views not in `keep` (default: the open views); leftovers of a crashed
   * run count as failed views (their changes are kept for the next backup).
   */
  reapOrphans(keep?: ReadonlySet<string>): Promise<ReapReport>;
  quiesce(vm: string, opts?: { timeoutMs?: number; maxFrozenMs?: number }): Promise<QuiesceResult>;
  thaw(vm: string): Promise<void>;
  /**
   * The VM's QEMU guest agent, when this adapter can reach it (file write-back); undefined when
   * the VM has none configured.
   */
  guestAgent?(vm: string): GuestAgentPort | undefined;
  close(): Promise<void>;
}

/** A guest agent client: one QGA command with its arguments (libs/hypervisor GuestAgentClient). */
export interface GuestAgentPort {
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
}
