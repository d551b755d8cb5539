// The QEMU adapter's view alone, A/B between builds: one paused QEMU (TCG, q35, the generated
// 2 GiB disk as a qcow2 on virtio-blk, as product.ts starts it) and, per build and round, a child
// process that loads that worktree's `QemuAdapter`, writes a few 64 KiB blocks through QEMU
// (HMP `qemu-io`, so each view is an incremental with changes), then opens and releases views
// as the coordinator does (`openView`, then `releaseView` on success). Per view: wall ms of the
// open and of the release, the QMP commands each sent and the serial round trips (commands sent
// while none was in flight), the child's CPU and QEMU's CPU. Builds alternate by round.
//
//   npx tsx tools/bench/src/view-ab.ts --images /tmp/img-full --builds base=/work/wt/base,head=. [--rounds 6] [--per 20] [--warm 5]
//   npx tsx tools/bench/src/view-ab.ts --images /tmp/img-full --trace   # one view, each command and event with its time
import { spawn } from 'node:child_process';
import { open, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { AB_OPTIONS, abSetup } from './ab-builds.ts';
import { CHANGE_BLOCK_SIZE, changedBlocks } from './image.ts';
import { processCpu, startVm } from './product.ts';
import { median } from './report.ts';

const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' / ');

interface ViewSample { openMs: number; releaseMs: number; openCmds: number; releaseCmds: number; openTrips: number; releaseTrips: number; cpuMs: number; qemuCpuMs: number }

interface Qmp {
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T>;
  on(event: 'event', fn: (e: { event: string; data: Record<string, unknown> }) => void): unknown;
}

/** Child: one build's adapter, `per` measured views after `warm`. Prints one JSON line per view. */
async function child(root: string, qmpSocket: string, overlayDir: string, nbdSocket: string, qemuPid: number, opts: { warm: number; per: number; trace: boolean; blocks: Array<{ offset: number; path: string }> }): Promise<void> {
  const mod = await import(pathToFileURL(join(root, 'libs/hypervisor/src/qemu/qemu.adapter.ts')).href) as { QemuAdapter: { connect(c: object): Promise<{ qmp: Qmp; openView(r: object): Promise<{ viewId: string; disks: Array<{ changedBytes?: number }> }>; releaseView(id: string, o: { success: boolean }): Promise<void>; inventory(): Promise<Array<{ id: string }>>; close(): Promise<void> }> } };
  const adapter = await mod.QemuAdapter.connect({ qmpSocket, overlayDir, nbd: { socketPath: nbdSocket } });
  const qmp = adapter.qmp;
  const real = qmp.execute.bind(qmp);
  let t0 = performance.now();
  let cmds = 0;
  let trips = 0;
  let inFlight = 0;
  const at = () => (performance.now() - t0).toFixed(1).padStart(6);
  qmp.execute = async <T>(command: string, args?: Record<string, unknown>): Promise<T> => {
    cmds++;
    if (inFlight++ === 0) trips++;
    const start = performance.now();
    try {
      return await real<T>(command, args);
    } finally {
      inFlight--;
      // The time of the reply and how long the command was in flight.
      if (opts.trace) process.stderr.write(`${at()} ms  ${command.padEnd(26)} ${(performance.now() - start).toFixed(1).padStart(5)} ms${command === 'transaction' ? ` (${(args?.['actions'] as unknown[]).length} actions)` : ''}\n`);
    }
  };
  if (opts.trace) qmp.on('event', (e) => { process.stderr.write(`${at()} ms    event ${e.event} ${JSON.stringify(e.data).slice(0, 100)}\n`); });
  const [vm] = await adapter.inventory();
  for (let i = 0; i < opts.warm + opts.per; i++) {
    for (const b of opts.blocks) {
      await real('human-monitor-command', { 'command-line': `qemu-io -d /machine/peripheral/disk0/virtio-backend "write -q -s ${b.path} ${b.offset} ${CHANGE_BLOCK_SIZE}"` });
    }
    const cpu0 = process.cpuUsage();
    const q0 = await processCpu(qemuPid);
    t0 = performance.now();
    cmds = 0; trips = 0;
    if (opts.trace) process.stderr.write(`--- openView\n`);
    const view = await adapter.openView({ vm: vm!.id, mode: 'auto', jobId: `job-${i}`, chain: 'manual' });
    const openMs = performance.now() - t0;
    const openCmds = cmds; const openTrips = trips;
    cmds = 0; trips = 0;
    if (opts.trace) process.stderr.write(`--- releaseView\n`);
    const t1 = performance.now();
    await adapter.releaseView(view.viewId, { success: true });
    const releaseMs = performance.now() - t1;
    const cpu = process.cpuUsage(cpu0);
    const q1 = await processCpu(qemuPid);
    if (i >= opts.warm) {
      const s: ViewSample = { openMs, releaseMs, openCmds, releaseCmds: cmds, openTrips, releaseTrips: trips, cpuMs: (cpu.user + cpu.system) / 1000, qemuCpuMs: (q1 - q0) * 1000 };
      process.stdout.write(JSON.stringify(s) + '\n');
    }
  }
  await adapter.close();
}

function runChild(root: string, args: string[]): Promise<ViewSample[]> {
  return new Promise((resolveP, reject) => {
    const c = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', root, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
    c.on('error', reject);
    c.on('close', (code) => {
      if (code !== 0) { reject(new Error(`probe of ${root} exited ${code}`)); return; }
      resolveP(out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as ViewSample));
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    ...AB_OPTIONS, per: { type: 'string', default: '20' }, warm: { type: 'string', default: '5' }, rounds: { type: 'string', default: '6' },
    trace: { type: 'boolean', default: false }, child: { type: 'string' }, qmp: { type: 'string' }, overlays: { type: 'string' }, nbd: { type: 'string' },
    'qemu-pid': { type: 'string' }, blocks: { type: 'string' },
  } });
  if (values.child) {
    await child(values.child, values.qmp!, values.overlays!, values.nbd!, Number(values['qemu-pid']), {
      warm: Number(values.warm), per: Number(values.per), trace: values.trace!, blocks: JSON.parse(values.blocks!) as Array<{ offset: number; path: string }>,
    });
    return;
  }
  const { builds, spec, images, work } = await abSetup(values, 'view-ab', repoRoot);
  const vm = await startVm(join(work, 'vm'), 'bench-vm', images.base.path);
  try {
    // 8 of the changed image's blocks, each in a file for qemu-io's -s.
    const blocks: Array<{ offset: number; path: string }> = [];
    const fh = await open(images.changed.path, 'r');
    for (const b of changedBlocks(spec).slice(0, 8)) {
      const buf = Buffer.alloc(CHANGE_BLOCK_SIZE);
      await fh.read(buf, 0, CHANGE_BLOCK_SIZE, b.index * CHANGE_BLOCK_SIZE);
      const path = join(work, `block-${b.index}.bin`);
      await writeFile(path, buf);
      blocks.push({ offset: b.index * CHANGE_BLOCK_SIZE, path });
    }
    await fh.close();
    // startVm keeps its control socket (the writes go through the adapter's own monitor); the adapter takes the QMP one.
    const common = (i: number) => ['--qmp', vm.qmpPath, '--overlays', join(work, `overlays-${i}`), '--nbd', join(work, 'nbd.sock'), '--qemu-pid', String(vm.pid), '--blocks', JSON.stringify(blocks)];
    if (values.trace) {
      await runChild(resolve(builds[0]!.cli, '../../../..'), [...common(0), '--warm', '2', '--per', '1', '--trace']);
      return;
    }
    const samples = new Map<string, ViewSample[]>(builds.map((b) => [b.name, []]));
    for (let r = 0; r < Number(values.rounds); r++) {
      const order = r % 2 === 0 ? builds : [...builds].reverse();
      for (const [i, b] of order.entries()) {
        const before = load();
        const got = await runChild(resolve(b.cli, '../../../..'), [...common(i), '--warm', values.warm!, '--per', values.per!]);
        samples.get(b.name)!.push(...got);
        process.stderr.write(`[view-ab] round ${r + 1} ${b.name}: open ${median(got.map((s) => s.openMs)).toFixed(1)} ms, release ${median(got.map((s) => s.releaseMs)).toFixed(1)} ms, cmds ${got[0]?.openCmds}+${got[0]?.releaseCmds}, trips ${got[0]?.openTrips}+${got[0]?.releaseTrips}, cpu ${median(got.map((s) => s.cpuMs)).toFixed(1)} ms, qemu ${median(got.map((s) => s.qemuCpuMs)).toFixed(0)} ms; load ${before}\n`);
      }
    }
    for (const [name, s] of samples) {
      process.stdout.write(`${name}: ${s.length} views; open median ${median(s.map((x) => x.openMs)).toFixed(1)} ms, release ${median(s.map((x) => x.releaseMs)).toFixed(1)} ms, open+release ${median(s.map((x) => x.openMs + x.releaseMs)).toFixed(1)} ms; QMP commands ${median(s.map((x) => x.openCmds))} + ${median(s.map((x) => x.releaseCmds))}, round trips ${median(s.map((x) => x.openTrips))} + ${median(s.map((x) => x.releaseTrips))}; probe CPU ${median(s.map((x) => x.cpuMs)).toFixed(1)} ms, QEMU CPU ${median(s.map((x) => x.qemuCpuMs)).toFixed(0)} ms per view\n`);
    }
  } finally {
    await vm.stop();
    if (!values.work) await rm(work, { recursive: true, force: true });
  }
}

await main();
