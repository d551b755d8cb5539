// Test fixture: a real QEMU (q35, TCG, no guest OS, started paused with -S) with virtio-blk
// disks and QMP sockets in a directory, plus guest-like writes through the HMP `qemu-io`
// command. Used by this library's and the snapshot coordinator's integration tests.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { access, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { QmpClient } from '../qmp/qmp-client.ts';
import { connectStartedQmp } from '../qmp/qmp-started.ts';

const run = promisify(execFile);

export interface TestDiskSpec {
  /** Device id (also the disk id Cairn reports). */
  id: string;
  format: 'qcow2' | 'raw';
  sizeBytes: number;
}

export interface QemuVmOptions {
  dir: string;
  /** `-name` of the VM. */
  name: string;
  disks: TestDiskSpec[];
  /** Extra QMP monitors (e.g. one for the guest-like writer); paths in `monitors`. */
  extraMonitors?: number;
}

export interface QemuVm {
  readonly name: string;
  /** The QMP socket Cairn is given. */
  readonly qmpPath: string;
  /** Extra QMP sockets. */
  readonly monitors: readonly string[];
  readonly disks: ReadonlyArray<TestDiskSpec & { file: string; nodeName: string }>;
  readonly pid: number | undefined;
  /** Starts (again) with the same disks and sockets. */
  start(): Promise<void>;
  /** Clean shutdown through QMP `quit` (persistent bitmaps are written). */
  quit(): Promise<void>;
  /** Kills the process with a signal and waits for it to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export async function createTestDisk(file: string, format: 'qcow2' | 'raw', sizeBytes: number): Promise<void> {
  await run('qemu-img', ['create', '-q', '-f', format, file, String(sizeBytes)]);
}

export async function startQemuVm(opts: QemuVmOptions): Promise<QemuVm> {
  await mkdir(opts.dir, { recursive: true });
  const qmpPath = join(opts.dir, 'qmp.sock');
  // A QMP socket serves one client at a time: the fixture keeps its own for readiness and quit.
  const controlPath = join(opts.dir, 'control.sock');
  const monitors = Array.from({ length: opts.extraMonitors ?? 1 }, (_, i) => join(opts.dir, `qmp-${i + 1}.sock`));
  const disks = opts.disks.map((d) => ({ ...d, file: join(opts.dir, `${d.id}.${d.format}`), nodeName: `${d.id}-fmt` }));
  for (const d of disks) {
    try { await access(d.file); } catch { await createTestDisk(d.file, d.format, d.sizeBytes); }
  }
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let stderr = '';

  const start = async () => {
    const args = ['-M', 'q35', '-accel', 'tcg', '-m', '128', '-nodefaults', '-display', 'none', '-S', '-name', opts.name,
      '-qmp', `unix:${qmpPath},server=on,wait=off`, '-qmp', `unix:${controlPath},server=on,wait=off`];
    for (const m of monitors) args.push('-qmp', `unix:${m},server=on,wait=off`);
    for (const d of disks) {
      args.push('-blockdev', `driver=file,filename=${d.file},node-name=${d.id}-file`,
        '-blockdev', `driver=${d.format},file=${d.id}-file,node-name=${d.nodeName}`,
        '-device', `virtio-blk-pci,drive=${d.nodeName},id=${d.id}`);
    }
    stderr = '';
    const proc = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    proc.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    // Ready when the main monitor answers.
    const c = await connectStartedQmp(controlPath, { gone: () => proc.exitCode !== null }).catch((e: unknown) => {
      proc.kill('SIGKILL');
      throw new Error(`qemu did not come up: ${String(e)} ${stderr}`, { cause: e });
    });
    if (!c) throw new Error(`qemu exited with ${proc.exitCode}: ${stderr}`);
    await c.close();
  };

  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  };

  await start();
  return {
    name: opts.name,
    qmpPath,
    monitors,
    disks,
    get pid() { return child?.pid; },
    start,
    kill,
    async quit() {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      const c = await QmpClient.connect(controlPath);
      await c.execute('quit').catch(() => undefined);
      await c.close();
      const t = setTimeout(() => child?.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * A guest-like write: `len` bytes of `pattern` at `offset` of device `deviceId`, through the
 * device's own block backend (so dirty bitmaps and copy-before-write see it). Resolves when done.
 */
export async function guestWrite(qmp: QmpClient, deviceId: string, offset: number, len: number, pattern: number): Promise<void> {
  const cmd = `qemu-io -d /machine/peripheral/${deviceId}/virtio-backend "write -P ${pattern} ${offset} ${len}"`;
  const out = await qmp.execute<string>('human-monitor-command', { 'command-line': cmd });
  if (/fail|error|not found/i.test(out)) throw new Error(`guest write failed: ${out.trim()}`);
}
