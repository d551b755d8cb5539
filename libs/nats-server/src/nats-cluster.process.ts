// A NATS cluster on this machine (`cairn up --cluster 3`, tests): N nats-servers with routes on
// loopback, one cluster name and one JetStream (streams created on it get R3, see
// streamReplicas in libs/contracts). Each member is a NatsServerProcess of its own, so one can
// be killed and started again on its ports and store while the others serve.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, startNatsServer, type NatsServerOptions, type NatsServerProcess } from './nats-server.process.ts';

export interface NatsClusterOptions extends Omit<NatsServerOptions, 'dir' | 'port' | 'serverName' | 'onUnexpectedExit'> {
  /** Each member's directory is `<dir>/node-<i>`. */
  readonly dir: string;
  /** Members (3 for R3 streams; at least 2). */
  readonly size: number;
  /** Cluster name and member names `<name>-<i>` (default `cairn`). */
  readonly name?: string;
  /** Told when member i (0-based) exits other than through stop() or kill(). */
  readonly onUnexpectedExit?: (member: number, exit: Parameters<NonNullable<NatsServerOptions['onUnexpectedExit']>>[0]) => void;
}

export interface NatsCluster {
  readonly members: readonly NatsServerProcess[];
  /** Server names of the members, in order (what JetStream names a stream's leader by). */
  readonly names: readonly string[];
  /** Every member's client URL joined by commas: the address services connect to. */
  readonly url: string;
  stop(): Promise<void>;
}

export async function startNatsCluster(options: NatsClusterOptions): Promise<NatsCluster> {
  if (!Number.isInteger(options.size) || options.size < 2) throw new Error(`a NATS cluster needs at least 2 members, not ${options.size}`);
  const host = options.host ?? '127.0.0.1';
  const name = options.name ?? 'cairn';
  const clientPorts: number[] = [];
  const routePorts: number[] = [];
  for (let i = 0; i < options.size; i++) {
    clientPorts.push(await freePort(host));
    routePorts.push(await freePort(host));
  }
  const routes = routePorts.map((p) => `    nats-route://${host}:${p}`).join('\n');
  const { size: _size, name: _name, onUnexpectedExit, ...serverOptions } = options;
  const names = clientPorts.map((_, i) => `${name}-${i + 1}`);
  const started: Array<NatsServerProcess | undefined> = [];
  // Started together: a member's JetStream waits for the others to elect a meta leader.
  const results = await Promise.allSettled(clientPorts.map(async (port, i) => {
    started[i] = await startNatsServer({
      ...serverOptions,
      dir: join(options.dir, `node-${i + 1}`),
      host,
      port,
      serverName: names[i]!,
      ...(onUnexpectedExit ? { onUnexpectedExit: (exit) => onUnexpectedExit(i, exit) } : {}),
      extraConfig: [
        options.extraConfig ?? '',
        `cluster {\n  name: ${JSON.stringify(name)}\n  host: ${JSON.stringify(host)}\n  port: ${routePorts[i]}\n  routes: [\n${routes}\n  ]\n}`,
      ].filter(Boolean).join('\n'),
    });
  }));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((m) => m?.stop()));
    throw failed.reason;
  }
  const members = started as NatsServerProcess[];
  return {
    members,
    names,
    url: members.map((m) => m.url).join(','),
    async stop() {
      await Promise.all(members.map((m) => m.stop()));
    },
  };
}

/**
 * The member (0-based) that holds the JetStream metadata leader as the members' logs last said
 * (nats-server 2.9 logs each election: "Self is new JetStream cluster metadata leader" on the
 * winner, "JetStream cluster new metadata leader: <name>/<cluster>" on the others), or undefined
 * before the first election. For tests and benchmarks that kill that member on purpose.
 */
export async function jetStreamMetaLeader(cluster: NatsCluster): Promise<number | undefined> {
  let best: { at: string; member: number } | undefined;
  for (const [i, m] of cluster.members.entries()) {
    const text = await readFile(m.logFile, 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      // `[pid] 2026/12/07 06:35:30.334752 [INF] …`: the timestamp orders lines across members.
      const t = /^\[\d+\] (\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d\.\d+) /.exec(line);
      if (!t) continue;
      let member: number | undefined;
      if (line.includes('Self is new JetStream cluster metadata leader')) member = i;
      else {
        const named = /JetStream cluster new metadata leader: ([^/\s]+)\//.exec(line);
        if (named) member = cluster.names.indexOf(named[1]!);
      }
      if (member === undefined || member < 0) continue;
      if (!best || t[1]! >= best.at) best = { at: t[1]!, member };
    }
  }
  return best?.member;
}
