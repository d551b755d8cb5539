// A real rsyslogd (Debian) for tests: imtcp on free loopback ports (plain TCP and, with a
// certificate, TLS through the gtls driver), writing each message's `%rawmsg%` as one line.
import { spawn, execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { Socket, createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { waitFor } from '@cairn/testing';

const run = promisify(execFile);

export interface RsyslogServer {
  readonly tcpPort: number;
  readonly tlsPort: number;
  /** PEM certificate the TLS input presents (self-signed, CN localhost, IP 127.0.0.1). */
  readonly certPem: string;
  lines(): Promise<string[]>;
  stop(): Promise<void>;
  /** Starts the daemon again (after `stop`) on the same ports, appending to the same file. */
  start(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

export async function startRsyslog(dir: string): Promise<RsyslogServer> {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']);
  const tcpPort = await freePort();
  const tlsPort = await freePort();
  const out = join(dir, 'received.log');
  const conf = join(dir, 'rsyslog.conf');
  await writeFile(out, '');
  await writeFile(conf, [
    `global(workDirectory="${dir}" maxMessageSize="64k"`,
    `  DefaultNetstreamDriverCAFile="${cert}" DefaultNetstreamDriverCertFile="${cert}" DefaultNetstreamDriverKeyFile="${key}")`,
    'module(load="imtcp" MaxSessions="50")',
    'template(name="raw" type="string" string="%rawmsg%\\n")',
    `ruleset(name="r") { action(type="omfile" file="${out}" template="raw" flushOnTXEnd="on" asyncWriting="off") }`,
    `input(type="imtcp" address="127.0.0.1" port="${tcpPort}" ruleset="r")`,
    `input(type="imtcp" address="127.0.0.1" port="${tlsPort}" ruleset="r" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")`,
    '',
  ].join('\n'));
  let daemon = await spawnDaemon(conf, dir, tcpPort, tlsPort);
  return {
    tcpPort, tlsPort, certPem: await readFile(cert, 'utf8'),
    async lines() { return (await readFile(out, 'utf8')).split('\n').filter((l) => l.length > 0); },
    stop: () => daemon.stop(),
    async start() {
      await daemon.stop();
      daemon = await spawnDaemon(conf, dir, tcpPort, tlsPort);
    },
  };
}

async function spawnDaemon(conf: string, dir: string, tcpPort: number, tlsPort: number): Promise<{ stop(): Promise<void> }> {
  const child = spawn('rsyslogd', ['-n', '-f', conf, '-i', join(dir, 'rsyslogd.pid')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  child.stdout.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let alive = true;
  void exited.then(() => { alive = false; });
  const stop = async () => {
    if (alive) child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    if (alive) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  try {
    await waitFor(async () => {
      if (!alive) throw new Error(`rsyslogd exited: ${stderr}`);
      return (await canConnect(tcpPort)) && (await canConnect(tlsPort));
    }, { timeoutMs: 10_000, what: 'rsyslogd to listen' });
  } catch (e) {
    await stop();
    throw e;
  }
  return { stop };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket();
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
    socket.connect(port, '127.0.0.1');
  });
}
