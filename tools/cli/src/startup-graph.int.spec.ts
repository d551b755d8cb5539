// What `cairn` loads before it runs a command (docs/benchmarks.md "CLI start-up"): the bundle's
// entry and the chunks it imports statically. The heavy libraries (NestJS, OpenTelemetry, the
// KurrentDB client, the S3 client, mail, the repository) must stay behind the dynamic imports
// of the commands that use them, or every `cairn --help` pays for them. Built into a temporary
// directory with the same build as bin/cairn.js.
import { readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness } from '@cairn/testing';

interface Metafile {
  outputs: Record<string, { imports: Array<{ path: string; kind: string; external?: boolean }>; inputs: Record<string, unknown>; entryPoint?: string }>;
}

const HEAVY = [/node_modules\/@nestjs\//, /node_modules\/@opentelemetry\//, /node_modules\/@eventstore\//, /node_modules\/@grpc\//, /node_modules\/minio\//,
  /node_modules\/nodemailer\//, /node_modules\/rxjs\//, /node_modules\/pino\//, /node_modules\/yaml\//, /libs\/repository\//, /services\//,
  // The contracts (TypeBox and its compiler; the schemas themselves are built on first use,
  // lazy-schema.ts) load with the commands that send or check.
  /node_modules\/@sinclair\/typebox\//, /libs\/contracts\//];

describe('the CLI start-up graph', () => {
  const h = useHarness();

  /** The inputs of `from` and of every chunk it imports statically. */
  const staticInputs = (meta: Metafile, from: string): string[] => {
    const seen = new Set<string>();
    const queue = [from];
    while (queue.length) {
      const out = queue.pop()!;
      if (seen.has(out) || !meta.outputs[out]) continue;
      seen.add(out);
      for (const i of meta.outputs[out].imports) if (i.kind === 'import-statement' && !i.external) queue.push(i.path);
    }
    return [...seen].flatMap((o) => Object.keys(meta.outputs[o]!.inputs)).map((p) => relative(process.cwd(), p));
  };
  let built: Promise<Metafile> | undefined;
  const metafile = (): Promise<Metafile> => (built ??= (async () => {
    const dist = await h.tmpDir('cairn-cli-graph-');
    const metaFile = join(dist, 'meta.json');
    process.env['CAIRN_CLI_METAFILE'] = metaFile;
    try {
      const build = new URL('../build.mjs', import.meta.url).href; // plain JavaScript, untyped
      const { buildCli } = await import(build) as { buildCli: (o: { quiet: boolean; dist: string }) => Promise<string> };
      await buildCli({ quiet: true, dist });
    } finally {
      delete process.env['CAIRN_CLI_METAFILE'];
    }
    return JSON.parse(await readFile(metaFile, 'utf8')) as Metafile;
  })());

  it('loads none of the heavy libraries before a command runs', async () => {
    const meta = await metafile();
    const entry = Object.keys(meta.outputs).find((k) => k.endsWith('/cairn.mjs'))!;
    expect(staticInputs(meta, entry).filter((p) => HEAVY.some((re) => re.test(p)))).toEqual([]);
  }, 180_000);

  // What a command that sends a request or reads a job's stream loads (session.ts): the command
  // bus and the JetStream event log, without the server side of messaging (NestJS core, rxjs),
  // the tracing SDK (nor `@opentelemetry/core`: the W3C propagator loads where a span exists),
  // prom-client or the KurrentDB/gRPC client.
  it('loads only the client side of messaging and the event log for a request', async () => {
    const meta = await metafile();
    const chunkOf = (source: string): string => {
      const out = Object.entries(meta.outputs).find(([, o]) => o.entryPoint === source)?.[0];
      expect(out, `a chunk for ${source}`).toBeDefined();
      return out!;
    };
    const loaded = [chunkOf('libs/messaging/src/command-bus.entry.ts'), chunkOf('libs/eventlog/src/index.ts')].flatMap((o) => staticInputs(meta, o));
    expect(loaded.some((p) => p.endsWith('libs/messaging/src/command-bus.ts'))).toBe(true);
    expect(loaded.some((p) => p.endsWith('libs/eventlog/src/jetstream-event-log.adapter.ts'))).toBe(true);
    const serverSide = [/node_modules\/@nestjs\/core\//, /node_modules\/rxjs\//, /node_modules\/@opentelemetry\/sdk-trace/, /node_modules\/@opentelemetry\/resources\//,
      /node_modules\/@opentelemetry\/core\//, /node_modules\/@opentelemetry\/semantic-conventions\//, /node_modules\/prom-client\//, /node_modules\/@eventstore\//, /node_modules\/@grpc\//, /^libs\/eventlog\/src\/kurrentdb/, /^libs\/repository\//, /^services\//];
    expect(loaded.filter((p) => serverSide.some((re) => re.test(p)))).toEqual([]);
  }, 180_000);

  // Sending a command (the bus with its signer) loads no JetStream client: `cairn restore` sends
  // its request first and loads the event log (to follow the job) while the request is answered.
  it('sends a command without loading the JetStream client or NestJS', async () => {
    const meta = await metafile();
    const bus = Object.entries(meta.outputs).find(([, o]) => o.entryPoint === 'libs/messaging/src/command-bus.entry.ts')![0];
    const loaded = staticInputs(meta, bus);
    expect(loaded.some((p) => p.endsWith('libs/command-auth/src/command-auth.ts'))).toBe(true);
    expect(loaded.filter((p) => /node_modules\/@nats-io\/(jetstream|kv)\/|^libs\/eventlog\/src\/jetstream/.test(p))).toEqual([]);
    // Nor NestJS with its metadata polyfill: the sender's errors are plain (send-errors.ts), the
    // handlers' RpcExceptions stay in errors.ts (~25 ms of CPU per `cairn restore` at load 11).
    expect(loaded.filter((p) => /node_modules\/(@nestjs\/|reflect-metadata\/)/.test(p))).toEqual([]);
    // Nor OpenTelemetry's API: the bus loads it only where a span can exist (send-trace.ts).
    expect(loaded.filter((p) => /node_modules\/@opentelemetry\//.test(p))).toEqual([]);
  }, 180_000);
});
