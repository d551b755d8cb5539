// NBD server: serves named exports from BlockSources on unix and TCP sockets, several
// clients at once. Read-only unless the source is writable (see copyOnWrite). Used for
// instant recovery (a restore point served to QEMU) and as the test peer of our client.
import net from 'node:net';
import tls from 'node:tls';
import { rm } from 'node:fs/promises';
import type { SocketAddress } from './byte-pump.ts';
import { ServerSession, type ServedExport } from './server-session.ts';

export type { ServedExport as NbdExport } from './server-session.ts';

export interface NbdServerTlsOptions extends tls.SecureContextOptions {
  /** Refuse every option but STARTTLS until TLS is up (FORCEDTLS; default true). */
  readonly required?: boolean;
  /** Ask for and verify a client certificate against `ca` (default false). */
  readonly requestCert?: boolean;
}

export interface NbdServerOptions {
  readonly exports?: Readonly<Record<string, ServedExport>>;
  readonly tls?: NbdServerTlsOptions;
  /** A client that has not finished option haggling within this is dropped (default 30 s). */
  readonly handshakeTimeoutMs?: number;
  /** Concurrent requests per connection (default 16). */
  readonly maxInFlightPerConnection?: number;
  /** Connections beyond this are refused (default 64). */
  readonly maxConnections?: number;
}

export class NbdServer {
  private readonly exports = new Map<string, ServedExport>();
  private readonly sessions = new Set<ServerSession>();
  private readonly runs = new Set<Promise<void>>();
  private server: net.Server | null = null;
  private unixPath: string | null = null;
  private shuttingDown = false;
  private readonly tlsConfig: { context: tls.SecureContext; required: boolean; requestCert: boolean } | null;

  constructor(private readonly options: NbdServerOptions = {}) {
    for (const [name, exp] of Object.entries(options.exports ?? {})) this.addExport(name, exp);
    const t = options.tls;
    this.tlsConfig = t ? { context: tls.createSecureContext(t), required: t.required ?? true, requestCert: t.requestCert ?? false } : null;
  }

  addExport(name: string, exp: ServedExport): void {
    if (Buffer.byteLength(name, 'utf8') > 4096) throw new RangeError('export name longer than 4096 bytes');
    this.exports.set(name, exp);
  }

  /** Stops offering an export; connections already using it keep it until they close. */
  removeExport(name: string): boolean {
    return this.exports.delete(name);
  }

  get connectionCount(): number {
    return this.sessions.size;
  }

  /** Starts listening; resolves with the bound address (the real port when 0 was asked). */
  async listen(address: SocketAddress): Promise<SocketAddress> {
    if (this.server) throw new Error('already listening');
    const server = net.createServer((socket) => this.accept(socket));
    server.maxConnections = this.options.maxConnections ?? 64;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if ('path' in address) server.listen(address.path, resolve);
      else server.listen(address.port, address.host, resolve);
    });
    if ('path' in address) {
      this.unixPath = address.path;
      return address;
    }
    const bound = server.address() as net.AddressInfo;
    return { host: address.host, port: bound.port };
  }

  /** Stops accepting and closes every connection (in-flight requests are cut off). */
  async close(): Promise<void> {
    this.shuttingDown = true;
    const server = this.server;
    this.server = null;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const s of this.sessions) s.close();
    await Promise.allSettled([...this.runs]);
    await closed;
    if (this.unixPath) await rm(this.unixPath, { force: true });
  }

  private accept(socket: net.Socket): void {
    if (this.shuttingDown) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const session = new ServerSession(socket, {
      lookup: (name) => this.exports.get(name),
      names: () => [...this.exports.keys()],
      tls: this.tlsConfig,
      handshakeTimeoutMs: this.options.handshakeTimeoutMs ?? 30_000,
      maxInFlight: this.options.maxInFlightPerConnection ?? 16,
      isShuttingDown: () => this.shuttingDown,
    });
    this.sessions.add(session);
    const run = session.run().finally(() => {
      this.sessions.delete(session);
      this.runs.delete(run);
    });
    this.runs.add(run);
  }
}
