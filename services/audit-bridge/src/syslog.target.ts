// RFC 5424 syslog over TCP or TLS (RFC 5425), octet-counted, one CEF event per message.
// Plain syslog has no acknowledgement: a batch counts as delivered once the socket has
// flushed it to the kernel. A connection that fails makes the batch fail, and the bridge
// sends it again on a new connection (so a receiver may see the last events twice; the
// event id in `externalId` and in the structured data is the dedup key).
import { Socket, connect as tcpConnect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { hostname as osHostname } from 'node:os';
import type { Recorded } from '@cairn/eventlog';
import type { AuditTarget } from './audit-target.ts';
import { frameOctetCounted, toSyslog } from './syslog.format.ts';

export interface SyslogTargetOptions {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** TLS options (CA, client certificate, servername); plain TCP when absent. */
  readonly tls?: ConnectionOptions;
  /** HOSTNAME field (default: this machine's name). */
  readonly hostname?: string;
  readonly appName?: string;
  readonly facility?: number;
  /** Private Enterprise Number of the structured data id (default the example 32473). */
  readonly enterpriseNumber?: number;
  readonly connectTimeoutMs?: number;
}

export class SyslogTarget implements AuditTarget {
  readonly name: string;
  private socket: Socket | undefined;
  private broken: Error | undefined;

  constructor(private readonly options: SyslogTargetOptions, private readonly version: string) {
    this.name = options.name;
  }

  async send(records: readonly Recorded[]): Promise<void> {
    const socket = await this.connected();
    const format = {
      hostname: this.options.hostname ?? osHostname(),
      version: this.version,
      ...(this.options.appName ? { appName: this.options.appName } : {}),
      ...(this.options.facility !== undefined ? { facility: this.options.facility } : {}),
      ...(this.options.enterpriseNumber !== undefined ? { enterpriseNumber: this.options.enterpriseNumber } : {}),
    };
    const frames = Buffer.concat(records.map((r) => frameOctetCounted(toSyslog(r.event, r.position, format))));
    try {
      await new Promise<void>((resolve, reject) => {
        socket.write(frames, (err) => (err ? reject(err) : this.broken ? reject(this.broken) : resolve()));
      });
    } catch (e) {
      this.drop();
      throw e;
    }
  }

  async close(): Promise<void> {
    const socket = this.socket;
    this.socket = undefined;
    if (!socket) return;
    await new Promise<void>((resolve) => {
      socket.end(() => resolve());
      setTimeout(() => { socket.destroy(); resolve(); }, 1000).unref();
    });
  }

  private drop(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private connected(): Promise<Socket> {
    if (this.socket && !this.broken) return Promise.resolve(this.socket);
    this.drop();
    this.broken = undefined;
    const { host, port, tls } = this.options;
    return new Promise<Socket>((resolve, reject) => {
      const ready = tls ? 'secureConnect' : 'connect';
      const socket: Socket = tls ? tlsConnect({ host, port, ...tls }) : tcpConnect({ host, port });
      const timer = setTimeout(() => { socket.destroy(new Error(`${this.name}: connect to ${host}:${port} timed out`)); }, this.options.connectTimeoutMs ?? 5000);
      socket.once(ready, () => {
        clearTimeout(timer);
        socket.setKeepAlive(true, 10_000);
        this.socket = socket;
        resolve(socket);
      });
      socket.on('error', (err) => {
        clearTimeout(timer);
        this.broken = err;
        reject(err);
      });
      // The receiver closing its end means later writes may vanish: reconnect before the next batch.
      socket.on('end', () => { this.broken = new Error(`${this.name}: receiver closed the connection`); });
      socket.on('close', () => { if (this.socket === socket) this.broken ??= new Error(`${this.name}: connection closed`); });
    });
  }
}
