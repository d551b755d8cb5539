// The demo VM of `cairn up --demo`: a real QEMU (no guest OS, TCG) with one qcow2 disk, and a
// workload that keeps writing numbered 64 KiB records at scattered offsets through QEMU's
// own block layer, as a guest would. Every write is logged, so any restore point can be
// checked against the disk as it was at its snapshot instant.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connectStartedQmp } from '@cairn/hypervisor';

const run = promisify(execFile);
export const DEMO_BLOCK = 64 * 1024;
const BASE_BYTE = 0x5a;
const BASE_BYTES = 16 * 1024 * 1024;

/** A block of the demo disk as created, before the workload wrote anything. */
export function demoBaseBlock(offset: number): Buffer {
  return Buffer.alloc(DEMO_BLOCK, offset < BASE_BYTES ? BASE_BYTE : 0);
}

export interface DemoWrite { readonly seq: number; readonly offset: number; readonly byte: number }

export interface DemoVm {
  readonly name: string;
  readonly qmpPath: string;
  readonly disk: string;
  readonly sizeBytes: number;
  /** Completed writes, in order. */
  readonly writes: readonly DemoWrite[];
  /** Starts the workload: one write every `intervalMs`. */
  startWriting(intervalMs: number): void;
  stopWriting(): Promise<void>;
  /** Writes `count` records now (awaited). */
  write(count: number): Promise<void>;
  stop(): Promise<void>;
}

/** A deterministic stream of offsets spread over the disk. */
function offsetFor(seq: number, sizeBytes: number): number {
  const blocks = sizeBytes / DEMO_BLOCK;
  return ((seq * 2654435761) % blocks) * DEMO_BLOCK;
}

export async function startDemoVm(dir: string, name = 'demo', sizeBytes = 64 * 1024 * 1024): Promise<DemoVm> {
  await mkdir(dir, { recursive: true });
  const disk = join(dir, 'disk0.qcow2');
  const qmpPath = join(dir, 'qmp.sock');
  const controlPath = join(dir, 'workload.sock');
  try { await access(disk); } catch {
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, String(sizeBytes)]);
    // A first image with data: a base that later writes change.
    await run('qemu-io', ['-f', 'qcow2', '-c', `write -P ${BASE_BYTE} 0 ${Math.min(sizeBytes, BASE_BYTES)}`, disk]);
  }
  const args = ['-M', 'q35', '-accel', 'tcg', '-m', '64', '-nodefaults', '-display', 'none', '-S', '-name', name,
    '-qmp', `unix:${qmpPath},server=on,wait=off`, '-qmp', `unix:${controlPath},server=on,wait=off`,
    '-blockdev', `driver=file,filename=${disk},node-name=disk0-file`,
    '-blockdev', 'driver=qcow2,file=disk0-file,node-name=disk0-fmt',
    '-device', 'virtio-blk-pci,drive=disk0-fmt,id=disk0'];
  // Its own process group: a Ctrl-C reaches `cairn up`, which stops the VM after the services.
  const proc: ChildProcess = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const control = await connectStartedQmp(controlPath, { gone: () => proc.exitCode !== null, intervalMs: 100, client: { connectTimeoutMs: 5_000 } }).catch(() => {
    proc.kill('SIGKILL');
    throw new Error(`the demo VM's QEMU did not answer on ${controlPath}`);
  });
  if (!control) throw new Error(`the demo VM's QEMU exited (${proc.exitCode}): ${stderr.trim()}`);
  const writes: DemoWrite[] = [];
  let seq = 0;
  let timer: NodeJS.Timeout | undefined;
  let busy: Promise<void> = Promise.resolve();
  const writeOne = async () => {
    const s = ++seq;
    const offset = offsetFor(s, sizeBytes);
    // Never the base byte (0x5a) nor zero: a block must tell which write it holds.
    const byte = 0x80 + (s % 120);
    // HMP reports a failed qemu-io write as text (a success prints nothing), not as a QMP
    // error: only writes that did not fail go into the log the restores are checked against.
    for (let attempt = 0; attempt < 5; attempt++) {
      const out = await control.execute<string>('human-monitor-command', {
        'command-line': `qemu-io -d /machine/peripheral/disk0/virtio-backend "write -P ${byte} ${offset} ${DEMO_BLOCK}"`,
      });
      if (!/error|fail|denied|busy|unable|cannot|not /i.test(out)) {
        writes.push({ seq: s, offset, byte });
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`the demo workload could not write at ${offset}`);
  };
  return {
    name, qmpPath, disk, sizeBytes, writes,
    startWriting(intervalMs) {
      if (timer) return;
      timer = setInterval(() => { busy = busy.then(writeOne).catch(() => undefined); }, intervalMs);
    },
    async stopWriting() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await busy;
    },
    async write(count) {
      for (let i = 0; i < count; i++) { busy = busy.then(writeOne); await busy; }
    },
    async stop() {
      if (timer) clearInterval(timer);
      await busy.catch(() => undefined);
      try { await control.execute('quit'); } catch { proc.kill('SIGTERM'); }
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * Checks a restored image against the demo's write log: a point-in-time copy equals the
 * base image with exactly the first n writes applied, for one n. Returns that n.
 */
export function matchWritePrefix(
  read: (offset: number) => Buffer,
  base: (offset: number) => Buffer,
  writes: readonly DemoWrite[],
): { ok: true; prefix: number } | { ok: false; reason: string } {
  // The newest write visible in the image bounds n from below.
  let n = 0;
  const touched = new Map<number, DemoWrite[]>();
  for (const w of writes) touched.set(w.offset, [...(touched.get(w.offset) ?? []), w]);
  for (const [offset, ws] of touched) {
    const got = read(offset);
    const hit = [...ws].reverse().find((w) => got.every((b) => b === w.byte));
    if (hit) n = Math.max(n, hit.seq);
  }
  for (const [offset, ws] of touched) {
    const expectWrite = [...ws].reverse().find((w) => w.seq <= n);
    const want = expectWrite ? Buffer.alloc(DEMO_BLOCK, expectWrite.byte) : base(offset);
    if (!read(offset).equals(want)) {
      const got = read(offset);
      return { ok: false, reason: `block at ${offset} does not match the disk after write ${n} (found byte ${got[0]} x${got.filter((b) => b === got[0]).length}, expected ${want[0]}; writes there: ${ws.map((w) => `#${w.seq}=${w.byte}`).join(' ')})` };
    }
  }
  return { ok: true, prefix: n };
}
