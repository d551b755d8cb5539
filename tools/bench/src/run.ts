// The benchmark command: Cairn side by side with restic and borg on the same generated
// disk image, in one process tree. See docs/benchmarks.md.
//
//   npx tsx tools/bench/src/run.ts [--size 2G] [--runs 3] [--tools cairn,restic,borg]
//                                  [--quick] [--flat 2G,8G] [--chunk-size 262144]
//                                  [--work /tmp/dir] [--images /tmp/keep] [--doc docs/benchmarks.md | --no-doc]
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, mkdir, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { CHANGE_BLOCK_SIZE, GiB, MiB, changedBlocks, imageLayout, layoutMix, writeImage, type ImageSpec, type WrittenImage } from './image.ts';
import { directoryBytes, peakRssMethod, runMeasured, type Measured } from './measure.ts';
import { TOOLS, cairn, useCairnBundle, type BenchTool, type ToolContext } from './tools.ts';
import { bundleCairnChild } from './bundle.ts';
import { checkTargets, cpuTable, plainTable, replaceSection, resultsTable, summarize, targetsTable, type RunResult } from './report.ts';

const PASSPHRASE = 'cairn-bench-passphrase';
const IMAGE_NAME = 'disk.raw';
const repoRoot = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?$/i.exec(text.trim());
  if (!m) throw new Error(`cannot read size "${text}" (use e.g. 256M, 2G)`);
  const unit = { '': 1, K: 1024, M: MiB, G: GiB, T: 1024 * GiB }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  const bytes = Math.round(Number(m[1]) * unit);
  return Math.ceil(bytes / MiB) * MiB;
}

const fmtSize = (bytes: number): string => (bytes >= GiB ? `${bytes / GiB} GiB` : `${bytes / MiB} MiB`);

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Points the stable image path at one variant (a hard link: same path, new inode). */
async function useImage(imageDir: string, source: string): Promise<void> {
  await unlink(join(imageDir, IMAGE_NAME)).catch(() => undefined);
  await link(source, join(imageDir, IMAGE_NAME));
}

function cairnOpMs(m: Measured): { opMs: number; readBytes?: number } {
  const line = m.stdout.trim().split('\n').at(-1) ?? '{}';
  return JSON.parse(line) as { opMs: number; readBytes?: number };
}

export interface Images {
  readonly dir: string;
  readonly base: WrittenImage;
  readonly changed: WrittenImage;
  readonly changesFile: string;
}

/**
 * Generates the base and changed images into `dir`, or reuses them when `dir` already holds
 * images of the same spec (their checksums are kept beside them in images.json).
 */
export async function prepareImages(spec: ImageSpec, dir: string): Promise<Images> {
  await mkdir(dir, { recursive: true });
  const changesFile = join(dir, 'changes.json');
  const metaFile = join(dir, 'images.json');
  const meta = await readFile(metaFile, 'utf8').then((t) => JSON.parse(t) as { spec: ImageSpec; base: WrittenImage; changed: WrittenImage }, () => undefined);
  if (meta && JSON.stringify(meta.spec) === JSON.stringify(spec)) {
    log(`reusing the ${fmtSize(spec.sizeBytes)} images in ${dir}`);
    return { dir, base: meta.base, changed: meta.changed, changesFile };
  }
  const started = performance.now();
  const base = await writeImage(spec, 'base', join(dir, 'base.raw'));
  const changed = await writeImage(spec, 'changed', join(dir, 'changed.raw'));
  await writeFile(changesFile, JSON.stringify({ blockSize: CHANGE_BLOCK_SIZE, blocks: changedBlocks(spec).map((b) => b.index) }));
  await writeFile(metaFile, JSON.stringify({ spec, base, changed }));
  log(`generated two ${fmtSize(spec.sizeBytes)} images in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return { dir, base, changed, changesFile };
}

export async function runTool(tool: BenchTool, run: number, images: Images, workRoot: string, chunkSize?: number): Promise<RunResult> {
  const ctx: ToolContext = {
    workDir: join(workRoot, `${tool.name}-${run}`),
    imageDir: images.dir,
    imageName: IMAGE_NAME,
    diskSizeBytes: images.base.sizeBytes,
    changesFile: images.changesFile,
    passphrase: PASSPHRASE,
  };
  await rm(ctx.workDir, { recursive: true, force: true });
  await mkdir(ctx.workDir, { recursive: true });
  try {
    const init = tool.init(ctx);
    await runMeasured(chunkSize && tool === cairn ? { ...init, args: [...init.args, '--chunk-size', String(chunkSize)] } : init);
    await useImage(images.dir, images.base.path);
    const full = await runMeasured(tool.full(ctx));
    const fullRepoBytes = await directoryBytes(tool.repoDir(ctx));
    log(`${tool.name} run ${run}: full ${(full.wallMs / 1000).toFixed(1)} s (CPU ${(full.cpuMs / 1000).toFixed(1)} s, RSS ${(full.peakRssBytes / MiB).toFixed(0)} MiB)`);
    await useImage(images.dir, images.changed.path);
    const incremental = await runMeasured(tool.incremental(ctx));
    const growthBytes = (await directoryBytes(tool.repoDir(ctx))) - fullRepoBytes;
    log(`${tool.name} run ${run}: incremental ${(incremental.wallMs / 1000).toFixed(2)} s (CPU ${(incremental.cpuMs / 1000).toFixed(1)} s), +${(growthBytes / MiB).toFixed(1)} MiB`);
    const target = join(ctx.workDir, 'restore');
    await mkdir(target, { recursive: true });
    const restore = await runMeasured(tool.restore(ctx, target));
    log(`${tool.name} run ${run}: restore ${(restore.wallMs / 1000).toFixed(1)} s (CPU ${(restore.cpuMs / 1000).toFixed(1)} s, RSS ${(restore.peakRssBytes / MiB).toFixed(0)} MiB)`);
    const restored = await sha256File(await tool.restoredFile(ctx, target));
    if (restored !== images.changed.sha256) throw new Error(`${tool.name} restored a different image (sha256 ${restored}, expected ${images.changed.sha256})`);
    const inProcess =
      tool === cairn
        ? {
            fullMs: cairnOpMs(full).opMs,
            incrementalMs: cairnOpMs(incremental).opMs,
            restoreMs: cairnOpMs(restore).opMs,
            incrementalReadBytes: cairnOpMs(incremental).readBytes ?? 0,
          }
        : undefined;
    return {
      tool: tool.name,
      run,
      diskBytes: images.base.sizeBytes,
      fullMs: full.wallMs,
      fullRssBytes: full.peakRssBytes,
      fullRepoBytes,
      incrementalMs: incremental.wallMs,
      incrementalRssBytes: incremental.peakRssBytes,
      growthBytes,
      restoreMs: restore.wallMs,
      restoreRssBytes: restore.peakRssBytes,
      cpuMs: { full: full.cpuMs, incremental: incremental.cpuMs, restore: restore.cpuMs },
      ...(inProcess ? { inProcess } : {}),
    };
  } finally {
    await rm(ctx.workDir, { recursive: true, force: true });
  }
}

export interface FlatPoint {
  readonly sizeBytes: number;
  readonly fullMBps: number;
  readonly fullRssBytes: number;
  readonly restoreMBps: number;
  readonly restoreRssBytes: number;
}

/** Cairn alone, one full backup and restore per size: is peak RSS flat as the disk grows? */
async function flatCheck(size: number, seed: string, workRoot: string, chunkSize?: number): Promise<FlatPoint> {
  const dir = join(workRoot, `flat-${size}`);
  await mkdir(dir, { recursive: true });
  try {
    const image = await writeImage({ sizeBytes: size, seed }, 'base', join(dir, 'image.raw'));
    const ctx: ToolContext = {
      workDir: dir,
      imageDir: dir,
      imageName: 'image.raw',
      diskSizeBytes: size,
      changesFile: join(dir, 'none.json'),
      passphrase: PASSPHRASE,
    };
    const init = cairn.init(ctx);
    await runMeasured(chunkSize ? { ...init, args: [...init.args, '--chunk-size', String(chunkSize)] } : init);
    const full = await runMeasured(cairn.full(ctx));
    log(`cairn ${fmtSize(size)} full: ${(full.wallMs / 1000).toFixed(1)} s, peak RSS ${(full.peakRssBytes / MiB).toFixed(0)} MiB`);
    const target = join(dir, 'restore');
    await mkdir(target);
    const restore = await runMeasured(cairn.restore(ctx, target));
    log(`cairn ${fmtSize(size)} restore: ${(restore.wallMs / 1000).toFixed(1)} s, peak RSS ${(restore.peakRssBytes / MiB).toFixed(0)} MiB`);
    if ((await sha256File(join(target, 'image.raw'))) !== image.sha256) throw new Error(`cairn restored a different ${fmtSize(size)} image`);
    return {
      sizeBytes: size,
      fullMBps: size / 1e6 / (full.wallMs / 1000),
      fullRssBytes: full.peakRssBytes,
      restoreMBps: size / 1e6 / (restore.wallMs / 1000),
      restoreRssBytes: restore.peakRssBytes,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function machine(): string {
  const cpu = cpus();
  return `${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, ${(totalmem() / GiB).toFixed(0)} GiB RAM, Linux ${release()}`;
}

const DOC_SKELETON = `# Benchmarks

<!-- results:begin -->
<!-- results:end -->

<!-- flat:begin -->
<!-- flat:end -->
`;

export async function updateDoc(path: string, sections: Record<string, string>): Promise<void> {
  let doc = await readFile(path, 'utf8').catch(() => DOC_SKELETON);
  for (const [name, body] of Object.entries(sections)) doc = replaceSection(doc, name, body);
  await mkdir(resolve(path, '..'), { recursive: true });
  await writeFile(path, doc);
}

async function main(): Promise<void> {
  // Cairn's child runs on this same Node; the repository needs Node 24 (zstd in zlib).
  if (Number(process.versions.node.split('.')[0]) < 22) {
    throw new Error(`Node ${process.version} is too old: run through npx (node_modules/.bin/node is Node 24)`);
  }
  const { values } = parseArgs({
    options: {
      size: { type: 'string' },
      runs: { type: 'string' },
      tools: { type: 'string' },
      quick: { type: 'boolean', default: false },
      flat: { type: 'string' },
      'flat-only': { type: 'boolean', default: false },
      'chunk-size': { type: 'string' },
      seed: { type: 'string', default: 'cairn-bench-1' },
      work: { type: 'string' },
      images: { type: 'string' },
      doc: { type: 'string' },
      'no-doc': { type: 'boolean', default: false },
      tsx: { type: 'boolean', default: false },
    },
  });
  const quick = values.quick;
  const size = parseSize(values.size ?? (quick ? '256M' : '2G'));
  const runs = Number(values.runs ?? (quick ? 1 : 3));
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${values.runs}`);
  const toolNames = (values.tools ?? 'cairn,restic,borg').split(',').map((t) => t.trim()).filter(Boolean);
  const tools = toolNames.map((n) => TOOLS[n] ?? (() => { throw new Error(`unknown tool ${n} (known: ${Object.keys(TOOLS).join(', ')})`); })());
  const flatSizes = values.flat ? values.flat.split(',').map(parseSize) : [];
  const chunkSize = values['chunk-size'] ? Number(values['chunk-size']) : undefined;
  // A quick smoke run does not overwrite the published figures unless asked to.
  const docPath = values['no-doc'] ? undefined : values.doc ? resolve(values.doc) : quick ? undefined : join(repoRoot, 'docs/benchmarks.md');
  const workRoot = values.work ? resolve(values.work) : await mkdtemp(join(tmpdir(), 'cairn-bench-'));
  await mkdir(workRoot, { recursive: true });
  const cleanup = async () => rm(workRoot, { recursive: true, force: true });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void cleanup().then(() => process.exit(signal === 'SIGINT' ? 130 : 143)));
  }

  // Cairn's child runs bundled, as a shipped CLI would (`--tsx`: through tsx, as before).
  if (!values.tsx) useCairnBundle(await bundleCairnChild(join(workRoot, 'cairn-bundle')));
  const spec: ImageSpec = { sizeBytes: size, seed: values.seed! };
  const versions = tools.map((t) => `${t.name}: ${t.version()}`);
  const loadBefore = loadavg();
  log(`machine: ${machine()}; load ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);
  for (const v of versions) log(v);
  const sections: Record<string, string> = {};
  const startedAt = new Date().toISOString();
  try {
    if (!values['flat-only']) {
      const images = await prepareImages(spec, values.images ? resolve(values.images) : join(workRoot, 'images'));
      const results: RunResult[] = [];
      for (let run = 1; run <= runs; run++) {
        // Tools take turns within each run, so a noisy minute hurts all of them alike.
        for (const tool of tools) results.push(await runTool(tool, run, images, workRoot, chunkSize));
      }
      const summaries = summarize(results);
      const table = resultsTable(summaries);
      const cairnS = summaries.find((s) => s.tool === 'cairn');
      const resticS = summaries.find((s) => s.tool === 'restic');
      const checks = cairnS && resticS ? checkTargets(cairnS, resticS) : [];
      const mix = layoutMix(imageLayout(spec));
      const cpu = cpuTable(summaries);
      console.log(`\n${fmtSize(size)} image, ${runs} run(s), medians:\n${plainTable(table)}\n\nCPU time (user + system):\n${plainTable(cpu)}`);
      if (checks.length) console.log(`\ntargets:\n${plainTable(targetsTable(checks))}`);
      if (cairnS?.inProcess) {
        const p = cairnS.inProcess;
        console.log(`\ncairn inside the operation (no start-up, no key derivation): full ${p.fullMBps.toFixed(0)} MB/s, incremental ${p.incrementalS.toFixed(2)} s reading ${(p.incrementalReadBytes / MiB).toFixed(0)} MiB, restore ${p.restoreMBps.toFixed(0)} MB/s`);
      }
      sections.results = [
        `Measured ${startedAt} with \`npx tsx tools/bench/src/run.ts --size ${values.size ?? fmtSize(size).replace(' GiB', 'G').replace(' MiB', 'M')} --runs ${runs} --tools ${toolNames.join(',')}${chunkSize ? ` --chunk-size ${chunkSize}` : ''}\`.`,
        '',
        `- Machine: ${machine()}; shared with other jobs running at the same time (load average ${loadBefore.map((l) => l.toFixed(2)).join(' / ')} at start, ${loadavg().map((l) => l.toFixed(2)).join(' / ')} at end), so expect noise of ±20%.`,
        `- Versions: ${versions.join('; ')}.`,
        `- Image: ${fmtSize(size)} raw, seed \`${spec.seed}\`: ${(mix.zero * 100).toFixed(1)}% zeros, ${(mix.random * 100).toFixed(1)}% random, ${(mix.text * 100).toFixed(1)}% text in 1–16 MiB runs; the changed copy rewrites ${changedBlocks(spec).length} scattered 64 KiB blocks (2%).`,
        `- Peak RSS: ${peakRssMethod()}; the largest of full, incremental and restore.`,
        `- MB = 10^6 bytes of logical disk size per second of wall time of the whole command (process start-up and key derivation included). Medians of ${runs} run(s).`,
        '',
        table,
        '',
        'CPU time (user + system) of each command, medians: it moves much less than wall time when other jobs compete for the cores, so it is the steadier comparison here.',
        '',
        cpu,
        ...(checks.length ? ['', 'Cairn against the targets of issue 3:', '', targetsTable(checks)] : []),
        ...(cairnS?.inProcess
          ? ['', `Cairn inside the operation (without process start-up and key derivation): full ${cairnS.inProcess.fullMBps.toFixed(0)} MB/s, incremental ${cairnS.inProcess.incrementalS.toFixed(2)} s (reading ${(cairnS.inProcess.incrementalReadBytes / MiB).toFixed(0)} MiB of chunk-aligned changed extents), restore ${cairnS.inProcess.restoreMBps.toFixed(0)} MB/s.`]
          : []),
      ].join('\n');
      await writeFile(join(repoRoot, 'tmp', `bench-${size}.json`), JSON.stringify({ startedAt, results, summaries }, null, 2)).catch(() => undefined);
    }
    if (flatSizes.length) {
      const points: FlatPoint[] = [];
      for (const s of flatSizes) points.push(await flatCheck(s, `${values.seed!}-flat`, workRoot, chunkSize));
      const rows = points.map((p) => `| ${fmtSize(p.sizeBytes)} | ${p.fullMBps.toFixed(0)} | ${(p.fullRssBytes / MiB).toFixed(0)} | ${p.restoreMBps.toFixed(0)} | ${(p.restoreRssBytes / MiB).toFixed(0)} |`);
      const table = ['| disk | full MB/s | full peak RSS MiB | restore MB/s | restore peak RSS MiB |', '| --- | ---: | ---: | ---: | ---: |', ...rows].join('\n');
      console.log(`\ncairn peak RSS by disk size (one run each):\n${plainTable(table)}`);
      sections.flat = [
        `Measured ${startedAt} with \`npx tsx tools/bench/src/run.ts --flat-only --flat ${values.flat}\` (Cairn alone, one full backup and one restore per size, image generated to a temporary file and removed).`,
        '',
        table,
      ].join('\n');
    }
    if (docPath && Object.keys(sections).length) {
      await updateDoc(docPath, sections);
      log(`wrote ${docPath}`);
    }
  } finally {
    // Images are a few GiB: never leave them behind, even in a --work directory.
    await (values.work ? rm(join(workRoot, 'images'), { recursive: true, force: true }) : cleanup());
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    console.error(`bench: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = 1;
  });
}
