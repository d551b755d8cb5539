// A vSphere API session: TLS with a CA file or a pinned certificate thumbprint, login with
// credentials read from a file (never the command line), SOAP calls, PropertyCollector reads,
// task waits, and HTTP range reads and uploads of datastore files (`/folder/…`). Every request
// carries the session cookie; a session that expired is logged in again once.
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import https from 'node:https';
import tls from 'node:tls';
import type { Readable } from 'node:stream';
import { asMoRef, field, list, moRef, soapRequest, soapResponse, SoapFault, text, type MoRef, type Node, type SoapObject } from './vsphere-xml.ts';

export interface VsphereTls {
  /** PEM of the CA (or of the self-signed certificate) the server's certificate chains to. */
  readonly caPem?: string;
  /** SHA-1 or SHA-256 fingerprint of the server's certificate (hex, colons optional). */
  readonly thumbprint?: string;
}

export interface VsphereCredentials { readonly username: string; readonly password: string }

/** Reads `{"username": …, "password": …}` (JSON) or `username=…`/`password=…` lines. */
export async function readCredentialsFile(path: string): Promise<VsphereCredentials> {
  const raw = await readFile(path, 'utf8').catch((e: Error) => { throw new Error(`cannot read the credentials file ${path}: ${e.message}`); });
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    for (const line of raw.split('\n')) {
      const m = /^\s*(username|user|password)\s*[=:]\s*(.*?)\s*$/.exec(line);
      if (m) parsed[m[1] === 'user' ? 'username' : m[1]!] = m[2];
    }
  }
  const { username, password } = parsed;
  if (typeof username !== 'string' || !username || typeof password !== 'string') {
    throw new Error(`the credentials file ${path} needs a username and a password (JSON {"username","password"} or username=/password= lines)`);
  }
  return { username, password };
}

function normalFingerprint(f: string): string { return f.replace(/[^0-9a-f]/gi, '').toUpperCase(); }

/** The server's leaf certificate, fetched without trusting it (to compare with a pinned thumbprint). */
async function peerCertificate(host: string, port: number): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, servername: net(host) ? undefined : host, rejectUnauthorized: false }, () => {
      const raw = socket.getPeerX509Certificate();
      socket.destroy();
      if (!raw) reject(new Error(`${host}:${port} presented no certificate`)); else resolve(raw);
    });
    socket.setTimeout(15_000, () => socket.destroy(new Error(`TLS handshake with ${host}:${port} timed out`)));
    socket.once('error', reject);
  });
}
function net(host: string): boolean { return /^[\d.]+$/.test(host) || host.includes(':'); }

export interface TaskInfo { readonly state: string; readonly result?: Node; readonly error?: string }

export class VsphereError extends Error {
  constructor(message: string, readonly faultType?: string) { super(message); this.name = 'VsphereError'; }
}

export class VsphereClient {
  private cookie: string | undefined;
  private content: Node | undefined;

  private constructor(
    readonly sdkUrl: URL,
    private readonly agent: https.Agent,
    private readonly credentials: VsphereCredentials,
  ) {}

  /** Connects and logs in. `url` is the SDK endpoint (https://vcenter/sdk; /sdk is added when missing). */
  static async connect(url: string, credentials: VsphereCredentials, trust: VsphereTls = {}): Promise<VsphereClient> {
    const sdk = new URL(url);
    if (sdk.protocol !== 'https:') throw new VsphereError(`${url}: the vSphere API is spoken over https only`);
    if (sdk.username || sdk.password) throw new VsphereError('put credentials in the credentials file, not in the URL');
    if (sdk.pathname === '/' || sdk.pathname === '') sdk.pathname = '/sdk';
    const port = Number(sdk.port || 443);
    let agentOptions: https.AgentOptions = { keepAlive: true, maxSockets: 8 };
    if (trust.thumbprint) {
      const cert = await peerCertificate(sdk.hostname, port);
      const want = normalFingerprint(trust.thumbprint);
      const have = want.length === 40 ? cert.fingerprint : cert.fingerprint256;
      if (normalFingerprint(have) !== want) {
        throw new VsphereError(`the certificate of ${sdk.host} has thumbprint ${have}, not the pinned ${trust.thumbprint}: refusing to send credentials`);
      }
      // Trust exactly this certificate; the pinned fingerprint, not its names, is the identity.
      agentOptions = { ...agentOptions, ca: cert.toString(), allowPartialTrustChain: true, checkServerIdentity: () => undefined } as https.AgentOptions;
    } else if (trust.caPem) {
      agentOptions = { ...agentOptions, ca: trust.caPem };
    }
    const client = new VsphereClient(sdk, new https.Agent(agentOptions), credentials);
    await client.login();
    return client;
  }

  get serviceContent(): Node {
    if (!this.content) throw new VsphereError('not connected');
    return this.content;
  }

  /** A managed object named in the service content (`propertyCollector`, `viewManager`, …). */
  service(name: string): MoRef {
    const ref = asMoRef(field(this.serviceContent, name));
    if (!ref) throw new VsphereError(`the service content names no ${name}`);
    return ref;
  }

  private async login(): Promise<void> {
    this.cookie = undefined;
    [this.content] = await this.raw('RetrieveServiceContent', moRef('ServiceInstance', 'ServiceInstance'));
    await this.raw('Login', this.service('sessionManager'), { userName: this.credentials.username, password: this.credentials.password })
      .catch((e: Error) => { throw new VsphereError(`login to ${this.sdkUrl.host} as ${this.credentials.username} failed: ${e.message}`, (e as SoapFault).faultType); });
  }

  private raw(method: string, self: MoRef, args?: SoapObject): Promise<Node[]> {
    const body = soapRequest(method, self, args);
    return new Promise((resolve, reject) => {
      const req = https.request(this.sdkUrl, {
        method: 'POST', agent: this.agent,
        headers: {
          'content-type': 'text/xml; charset=utf-8', soapaction: 'urn:vim25/6.5', 'content-length': Buffer.byteLength(body),
          ...(this.cookie ? { cookie: this.cookie } : {}),
        },
      }, (res) => {
        const setCookie = res.headers['set-cookie']?.find((c) => c.startsWith('vmware_soap_session='));
        if (setCookie) this.cookie = setCookie.split(';')[0];
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          try { resolve(soapResponse(Buffer.concat(chunks).toString('utf8'), method)); } catch (e) { reject(e as Error); }
        });
        res.on('error', reject);
      });
      req.setTimeout(120_000, () => req.destroy(new VsphereError(`${method}: no answer within 120 s`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** One API call; an expired session is logged in again and the call repeated once. */
  async call(method: string, self: MoRef, args?: SoapObject): Promise<Node[]> {
    try {
      return await this.raw(method, self, args);
    } catch (e) {
      if (e instanceof SoapFault && e.faultType === 'NotAuthenticated') {
        await this.login();
        return this.raw(method, self, args);
      }
      throw e;
    }
  }

  /** Properties of one object (RetrievePropertiesEx): path → value node. */
  async properties(obj: MoRef, paths: readonly string[]): Promise<Record<string, Node | Node[]>> {
    const [result] = await this.retrieve([{ obj, paths, type: obj.type }]);
    return result?.props ?? {};
  }

  /**
   * RetrievePropertiesEx (following ContinueRetrievePropertiesEx): `obj` with `type`'s `paths`,
   * or with a container view, every object the view holds.
   */
  async retrieve(specs: ReadonlyArray<{ obj: MoRef; type: string; paths: readonly string[]; viaView?: boolean }>): Promise<Array<{ obj: MoRef; props: Record<string, Node | Node[]> }>> {
    const pc = this.service('propertyCollector');
    const specSet = {
      propSet: specs.map((s) => ({ type: s.type, pathSet: [...s.paths] })),
      objectSet: specs.map((s) => s.viaView
        ? { obj: s.obj, skip: true, selectSet: [{ $type: 'TraversalSpec', name: 'view', type: 'ContainerView', path: 'view', skip: false }] }
        : { obj: s.obj, skip: false }),
    };
    const out: Array<{ obj: MoRef; props: Record<string, Node | Node[]> }> = [];
    let [page] = await this.call('RetrievePropertiesEx', pc, { specSet, options: {} });
    for (;;) {
      for (const o of list(field(page, 'objects'))) {
        const obj = asMoRef(field(o, 'obj'));
        if (!obj) continue;
        const props: Record<string, Node | Node[]> = {};
        for (const p of list(field(o, 'propSet'))) {
          const name = text(field(p, 'name'));
          const val = field(p, 'val');
          if (name && val !== undefined) props[name] = val;
        }
        out.push({ obj, props });
      }
      const token = text(field(page, 'token'));
      if (!token) return out;
      [page] = await this.call('ContinueRetrievePropertiesEx', pc, { token });
    }
  }

  /** A container view of every `types` object below `container` (DestroyView when done). */
  async containerView(container: MoRef, types: readonly string[]): Promise<MoRef> {
    const [view] = await this.call('CreateContainerView', this.service('viewManager'), { container, type: [...types], recursive: true });
    const ref = asMoRef(view);
    if (!ref) throw new VsphereError('CreateContainerView returned no view');
    return ref;
  }

  async destroyView(view: MoRef): Promise<void> {
    await this.call('DestroyView', view).catch(() => undefined);
  }

  /** Runs a *_Task method and waits for the task (polling its info through the PropertyCollector). */
  async runTask(method: string, self: MoRef, args?: SoapObject, timeoutMs = 30 * 60_000): Promise<Node | undefined> {
    const [taskNode] = await this.call(method, self, args);
    const task = asMoRef(taskNode);
    if (!task) throw new VsphereError(`${method} returned no task`);
    const deadline = Date.now() + timeoutMs;
    let delay = 50;
    for (;;) {
      const info = (await this.properties(task, ['info']))['info'];
      const state = text(field(info, 'state'));
      if (state === 'success') return field(info, 'result') as Node | undefined;
      if (state === 'error') {
        const fault = field(info, 'error');
        const message = text(field(fault, 'localizedMessage')) ?? 'failed';
        const faultType = (() => { const f = field(fault, 'fault'); return f && typeof f === 'object' && !Array.isArray(f) ? text((f as Record<string, Node>)['type']) : undefined; })();
        throw new VsphereError(`${method} on ${self.value}: ${message}${faultType ? ` (${faultType})` : ''}`, faultType);
      }
      if (Date.now() > deadline) throw new VsphereError(`${method} on ${self.value}: task ${task.value} still ${state} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 1000);
    }
  }

  /** `https://host/folder/<path>?dcPath=…&dsName=…` for a datastore file. */
  datastoreUrl(datacenterPath: string, datastore: string, path: string): URL {
    const u = new URL(this.sdkUrl);
    u.pathname = `/folder/${path.split('/').map(encodeURIComponent).join('/')}`;
    u.search = new URLSearchParams({ dcPath: datacenterPath, dsName: datastore }).toString();
    return u;
  }

  /** Size of a datastore file (HEAD). */
  async fileSize(url: URL): Promise<number> {
    const res = await this.http('HEAD', url);
    res.resume();
    if (res.statusCode !== 200) throw new VsphereError(`HEAD ${url.pathname}: HTTP ${res.statusCode}`);
    return Number(res.headers['content-length'] ?? NaN);
  }

  /** Exactly `length` bytes at `offset` of a datastore file (an HTTP range request). */
  async readRange(url: URL, offset: number, length: number): Promise<Buffer> {
    const res = await this.http('GET', url, { range: `bytes=${offset}-${offset + length - 1}` });
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    const data = Buffer.concat(chunks);
    if (res.statusCode !== 206 && !(res.statusCode === 200 && offset === 0 && data.length === length)) {
      throw new VsphereError(`GET ${url.pathname} bytes ${offset}+${length}: HTTP ${res.statusCode}`);
    }
    if (data.length !== length) throw new VsphereError(`GET ${url.pathname} bytes ${offset}+${length}: ${data.length} bytes came`);
    return data;
  }

  /** Writes a whole datastore file (PUT), streaming `body`. */
  async upload(url: URL, body: Readable | Buffer, length: number): Promise<void> {
    const res = await this.http('PUT', url, { 'content-type': 'application/octet-stream', 'content-length': String(length) }, body);
    res.resume();
    if (res.statusCode !== 200 && res.statusCode !== 201 && res.statusCode !== 204) throw new VsphereError(`PUT ${url.pathname}: HTTP ${res.statusCode}`);
  }

  private http(method: string, url: URL, headers: Record<string, string> = {}, body?: Readable | Buffer): Promise<import('node:http').IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = https.request(url, { method, agent: this.agent, headers: { ...headers, ...(this.cookie ? { cookie: this.cookie } : {}) } }, resolve);
      req.setTimeout(300_000, () => req.destroy(new VsphereError(`${method} ${url.pathname}: no answer within 300 s`)));
      req.on('error', reject);
      if (body === undefined) req.end();
      else if (Buffer.isBuffer(body)) req.end(body);
      else body.pipe(req);
    });
  }

  async close(): Promise<void> {
    await this.raw('Logout', this.service('sessionManager')).catch(() => undefined);
    this.agent.destroy();
  }
}
