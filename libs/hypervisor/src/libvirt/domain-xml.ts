// libvirt domain XML, both ways, without I/O: what the inventory and a restore point need from a
// domain (disks, NICs, vCPUs, memory, firmware), the portable configuration kept apart from
// what only holds on this host (image paths, kernel paths, sockets) and from secrets (only
// their references are kept), the backup and checkpoint documents Cairn hands to libvirt, and
// a domain XML that defines a VM again from a restore point's configuration on new disks.
import { XMLBuilder, XMLParser } from 'fast-xml-parser';

export interface DomainDisk {
  /** Target device (`vda`): the disk's id within the domain. */
  readonly target: string;
  readonly bus: string;
  /** `file`, `block`, `network`, `volume`. */
  readonly type: string;
  /** Image path or block device; undefined for network disks. */
  readonly source: string | undefined;
  readonly format: string;
  readonly readonly: boolean;
}

export interface DomainNic {
  readonly mac: string | undefined;
  readonly model: string | undefined;
  /** `network`, `bridge`, `direct`, `user`... */
  readonly type: string;
  /** Network or bridge name (host-specific). */
  readonly source: string | undefined;
}

export interface DomainSummary {
  readonly name: string;
  readonly uuid: string;
  /** `qemu` (TCG) or `kvm`. */
  readonly type: string;
  readonly arch: string | undefined;
  readonly machine: string | undefined;
  readonly vcpus: number;
  readonly memoryBytes: number;
  /** `bios` or `efi`. */
  readonly firmware: string;
  /** Only real disks (no CD-ROMs or floppies). */
  readonly disks: readonly DomainDisk[];
  readonly nics: readonly DomainNic[];
}

/** Something in the XML that only holds on the host it came from. */
export interface HostPath { readonly where: string; readonly path: string }
/** A libvirt secret the domain refers to (the value is never read). */
export interface SecretRef { readonly where: string; readonly uuid?: string; readonly usage?: string }

/** The VM configuration a libvirt restore point carries. */
export interface LibvirtVmConfig {
  readonly kind: 'libvirt';
  readonly summary: DomainSummary;
  /** The inactive domain XML as libvirt gives it (without security info: no passwords). */
  readonly domainXml: string;
  readonly hostPaths: readonly HostPath[];
  readonly secrets: readonly SecretRef[];
}

const ARRAYS = new Set(['disk', 'interface', 'secret', 'serial', 'console', 'channel', 'graphics', 'filesystem', 'hostdev', 'seclabel']);
const parser = new XMLParser({
  ignoreAttributes: false, attributeNamePrefix: '@', parseTagValue: false, parseAttributeValue: false, trimValues: true,
  isArray: (name) => ARRAYS.has(name),
});

type Node = Record<string, unknown>;
const obj = (v: unknown): Node => (v && typeof v === 'object' ? v as Node : {});
const list = (v: unknown): Node[] => (Array.isArray(v) ? v.map(obj) : v === undefined ? [] : [obj(v)]);
const text = (v: unknown): string | undefined => {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && '#text' in v) return String((v as Node)['#text']);
  return undefined;
};
const attr = (n: Node, a: string): string | undefined => (n[`@${a}`] === undefined ? undefined : String(n[`@${a}`]));

const UNIT: Record<string, number> = { b: 1, bytes: 1, k: 1024, kib: 1024, kb: 1000, m: 1024 ** 2, mib: 1024 ** 2, mb: 1e6, g: 1024 ** 3, gib: 1024 ** 3, gb: 1e9, t: 1024 ** 4, tib: 1024 ** 4, tb: 1e12 };
function bytesOf(v: unknown): number {
  const n = obj(typeof v === 'string' ? { '#text': v } : v);
  const unit = (attr(n, 'unit') ?? 'KiB').toLowerCase();
  return Number(text(n) ?? 0) * (UNIT[unit] ?? 1024);
}

export class DomainXmlError extends Error { override readonly name = 'DomainXmlError'; }

function root(xml: string): Node {
  let doc: Node;
  try { doc = obj(parser.parse(xml)); } catch (e) { throw new DomainXmlError(`not XML: ${(e as Error).message}`); }
  const d = obj(doc['domain']);
  if (!attr(d, 'type') || !text(d['name'])) throw new DomainXmlError('not a libvirt domain XML (no <domain type> with a <name>)');
  return d;
}

function diskSource(d: Node): string | undefined {
  const s = obj(list(d['source'])[0]);
  return attr(s, 'file') ?? attr(s, 'dev') ?? attr(s, 'volume') ?? attr(s, 'name');
}

export function parseDomainXml(xml: string): DomainSummary {
  const d = root(xml);
  const os = obj(d['os']);
  const type = obj(list(os['type'])[0]);
  const devices = obj(d['devices']);
  const disks = list(devices['disk']).filter((x) => (attr(x, 'device') ?? 'disk') === 'disk').map((x): DomainDisk => {
    const target = obj(x['target']);
    return {
      target: attr(target, 'dev') ?? '', bus: attr(target, 'bus') ?? '', type: attr(x, 'type') ?? 'file',
      source: attr(x, 'type') === 'network' ? undefined : diskSource(x),
      format: attr(obj(x['driver']), 'type') ?? 'raw', readonly: 'readonly' in x,
    };
  });
  const nics = list(devices['interface']).map((n): DomainNic => {
    const src = obj(n['source']);
    return {
      mac: attr(obj(n['mac']), 'address'), model: attr(obj(n['model']), 'type'), type: attr(n, 'type') ?? 'network',
      source: attr(src, 'network') ?? attr(src, 'bridge') ?? attr(src, 'dev'),
    };
  });
  const loader = obj(os['loader']);
  const firmware = attr(os, 'firmware') ?? (attr(loader, 'type') === 'pflash' || /OVMF|edk2/i.test(text(loader) ?? '') ? 'efi' : 'bios');
  const vcpu = obj(typeof d['vcpu'] === 'string' ? { '#text': d['vcpu'] } : d['vcpu']);
  return {
    name: text(d['name'])!, uuid: text(d['uuid']) ?? '', type: attr(d, 'type')!,
    arch: attr(type, 'arch'), machine: attr(type, 'machine'),
    vcpus: Number(attr(vcpu, 'current') ?? text(vcpu) ?? 1), memoryBytes: bytesOf(d['memory']),
    firmware, disks, nics,
  };
}

/** A running domain's disk as its live XML shows it: the image, a block copy in progress, a network backing (instant recovery). */
export interface LiveDisk {
  readonly target: string;
  readonly source: string | undefined;
  readonly mirror: { readonly file: string; readonly ready: boolean } | undefined;
  readonly networkBacking: boolean;
}

export function liveDisks(xml: string): LiveDisk[] {
  const devices = obj(root(xml)['devices']);
  return list(devices['disk']).filter((x) => (attr(x, 'device') ?? 'disk') === 'disk').map((x) => {
    const mirror = list(x['mirror'])[0];
    const backing = list(x['backingStore'])[0];
    return {
      target: attr(obj(x['target']), 'dev') ?? '', source: diskSource(x),
      mirror: mirror ? { file: attr(mirror, 'file') ?? diskSource(mirror) ?? '', ready: attr(mirror, 'ready') === 'yes' } : undefined,
      networkBacking: backing !== undefined && attr(backing, 'type') === 'network',
    };
  });
}

/** Host-specific paths and secret references found in a domain XML. */
export function hostSpecificParts(xml: string): { hostPaths: HostPath[]; secrets: SecretRef[] } {
  const d = root(xml);
  const hostPaths: HostPath[] = [];
  const secrets: SecretRef[] = [];
  const os = obj(d['os']);
  for (const k of ['kernel', 'initrd', 'loader', 'nvram', 'dtb']) {
    const p = text(os[k]);
    if (p) hostPaths.push({ where: `os/${k}`, path: p });
  }
  const emulator = text(obj(d['devices'])['emulator']);
  if (emulator) hostPaths.push({ where: 'devices/emulator', path: emulator });
  const devices = obj(d['devices']);
  for (const x of list(devices['disk'])) {
    const where = `disk ${attr(obj(x['target']), 'dev') ?? '?'}`;
    const src = diskSource(x);
    if (src && attr(x, 'type') !== 'network') hostPaths.push({ where, path: src });
    for (const s of [...list(obj(x['auth'])['secret']), ...list(obj(list(obj(x['source'])['encryption'])[0] ?? x['encryption'])['secret'])]) {
      secrets.push({ where, ...(attr(s, 'uuid') ? { uuid: attr(s, 'uuid')! } : {}), ...(attr(s, 'usage') ? { usage: attr(s, 'usage')! } : {}) });
    }
  }
  for (const kind of ['serial', 'console', 'channel', 'filesystem']) {
    for (const x of list(devices[kind])) {
      const src = obj(list(x['source'])[0]);
      const p = attr(src, 'path') ?? attr(src, 'dir');
      if (p) hostPaths.push({ where: kind, path: p });
    }
  }
  for (const g of list(devices['graphics'])) {
    if (attr(g, 'passwd') !== undefined) secrets.push({ where: `graphics ${attr(g, 'type') ?? ''}`.trim(), usage: 'password (not stored)' });
  }
  return { hostPaths: dedupe(hostPaths), secrets };
}

function dedupe(paths: HostPath[]): HostPath[] {
  const seen = new Set<string>();
  return paths.filter((p) => { const k = `${p.where}\0${p.path}`; if (seen.has(k)) return false; seen.add(k); return true; });
}

/** Removes password attributes, whatever libvirt was asked for. */
export function withoutPasswords(xml: string): string {
  return xml.replace(/\s(passwd|password)=(['"])[^'"]*\2/g, '');
}

export function libvirtVmConfig(inactiveXml: string): LibvirtVmConfig {
  // The references are read from the XML as given (a password's existence is worth recording).
  const domainXml = withoutPasswords(inactiveXml);
  return { kind: 'libvirt', summary: parseDomainXml(domainXml), domainXml, ...hostSpecificParts(inactiveXml) };
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/'/g, '&apos;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export interface BackupDiskPlan {
  readonly target: string;
  readonly exportName: string;
  /**
   * A path on the libvirt host (libvirt creates the file and removes it when the job ends).
   * Always given: libvirt 9.0 without one hands QEMU a null file name.
   */
  readonly scratchFile: string;
  /** Checkpoint to read changes since (incremental); full when absent. */
  readonly incremental?: string;
  /** Name of the dirty-bitmap meta context on the export (incremental only). */
  readonly exportBitmap?: string;
}

/** `<domainbackup mode='pull'>` over a unix socket, one line per disk; the other disks are left out. */
/**
 * Where the pull-mode backup's NBD server listens: a unix socket, or TCP on the host (`tls`:
 * the export is served with TLS, QEMU's x509 credentials from libvirt's backup_tls_x509_cert_dir,
 * and refuses clients that do not start TLS).
 */
export type BackupServer = { readonly socketPath: string } | { readonly host: string; readonly port: number; readonly tls: boolean };

export function backupXml(o: { server: BackupServer; disks: readonly BackupDiskPlan[]; excluded?: readonly string[] }): string {
  const server = 'socketPath' in o.server
    ? `  <server transport='unix' socket='${esc(o.server.socketPath)}'/>`
    : `  <server transport='tcp' name='${esc(o.server.host)}' port='${String(o.server.port)}'${o.server.tls ? ` tls='yes'` : ''}/>`;
  const lines = [`<domainbackup mode='pull'>`, server, '  <disks>'];
  for (const d of o.disks) {
    const mode = d.incremental ? ` backupmode='incremental' incremental='${esc(d.incremental)}'` : ` backupmode='full'`;
    const bitmap = d.incremental && d.exportBitmap ? ` exportbitmap='${esc(d.exportBitmap)}'` : '';
    lines.push(`    <disk name='${esc(d.target)}' backup='yes' type='file'${mode} exportname='${esc(d.exportName)}'${bitmap}><scratch file='${esc(d.scratchFile)}'/></disk>`);
  }
  for (const t of o.excluded ?? []) lines.push(`    <disk name='${esc(t)}' backup='no'/>`);
  lines.push('  </disks>', '</domainbackup>');
  return lines.join('\n') + '\n';
}

/** A checkpoint with a bitmap on each listed disk (only disks that can hold one: qcow2). */
export function checkpointXml(o: { name: string; description: string; bitmapDisks: readonly string[]; noBitmapDisks?: readonly string[] }): string {
  const disks = [
    ...o.bitmapDisks.map((t) => `    <disk name='${esc(t)}' checkpoint='bitmap'/>`),
    ...(o.noBitmapDisks ?? []).map((t) => `    <disk name='${esc(t)}' checkpoint='no'/>`),
  ];
  return [`<domaincheckpoint>`, `  <name>${esc(o.name)}</name>`, `  <description>${esc(o.description)}</description>`, '  <disks>', ...disks, '  </disks>', '</domaincheckpoint>', ''].join('\n');
}

export interface CheckpointInfo {
  readonly name: string;
  readonly description: string;
  readonly creationTime: number;
  /** Disk targets with a bitmap in this checkpoint. */
  readonly disks: readonly string[];
}

export function parseCheckpointXml(xml: string): CheckpointInfo {
  const c = obj(obj(parser.parse(xml))['domaincheckpoint']);
  const name = text(c['name']);
  if (!name) throw new DomainXmlError('not a libvirt checkpoint XML');
  return {
    name, description: text(c['description']) ?? '', creationTime: Number(text(c['creationTime']) ?? 0),
    disks: list(obj(c['disks'])['disk']).filter((d) => attr(d, 'checkpoint') === 'bitmap').map((d) => attr(d, 'name') ?? ''),
  };
}

/** The disks and export names of a running backup job (`virsh backup-dumpxml`). */
export function parseBackupXml(xml: string): {
  socket: string | undefined; tcp?: { host: string; port: number; tls: boolean };
  disks: Array<{ target: string; exportName: string | undefined; scratch: string | undefined }>;
} {
  const b = obj(obj(parser.parse(xml))['domainbackup']);
  const server = obj(b['server']);
  const port = Number(attr(server, 'port') ?? NaN);
  return {
    socket: attr(server, 'socket'),
    ...(attr(server, 'transport') !== 'unix' && Number.isInteger(port) ? { tcp: { host: attr(server, 'name') ?? '', port, tls: attr(server, 'tls') === 'yes' } } : {}),
    disks: list(obj(b['disks'])['disk']).filter((d) => attr(d, 'backup') !== 'no').map((d) => ({
      target: attr(d, 'name') ?? '', exportName: attr(d, 'exportname'), scratch: attr(obj(d['scratch']), 'file'),
    })),
  };
}

// ---- defining a domain again from a restore point ----------------------------------------

type ONode = Record<string, unknown>;
const orderedParser = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: '', preserveOrder: true, parseTagValue: false, parseAttributeValue: false, trimValues: true });
const orderedBuilder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '', preserveOrder: true, format: true, suppressEmptyNode: true });
const tagOf = (n: ONode) => Object.keys(n).find((k) => k !== ':@')!;
const kids = (n: ONode) => n[tagOf(n)] as ONode[];
const attrs = (n: ONode) => ((n[':@'] ??= {}) as Record<string, string>);

export interface DefineOptions {
  /** Name of the new domain (must not exist on the target host). */
  readonly name: string;
  /** New image per disk target: `{ vda: { file: '/var/lib/…/vm1-vda.qcow2', format: 'qcow2' } }`. */
  readonly disks: Readonly<Record<string, { file: string; format: string; backingNbd?: { socket: string; exportName: string } }>>;
  /** Keep the MAC addresses (default false: libvirt makes new ones, so the copy can run beside the original). */
  readonly keepMacs?: boolean;
  /** The new domain's UUID (default: none, libvirt makes one). */
  readonly uuid?: string;
  /** The NICs' MAC addresses in document order (default: as keepMacs says). */
  readonly macs?: readonly string[];
  /** Network or bridge of an original NIC → the one to connect the restored NIC to. */
  readonly networkMap?: Readonly<Record<string, string>>;
  /** Keep every NIC, disconnected (`<link state='down'/>`). */
  readonly noNetwork?: boolean;
  /** Serial consoles and consoles that logged to a file log here instead (the original's file is the original's). */
  readonly serialLog?: string;
}

/**
 * A domain XML for `virsh define` from a restore point's configuration: new name, no UUID (libvirt
 * makes one), each disk on its new image, new MACs unless asked otherwise. Disks of the original
 * that have no new image are left out (a restore of some disks only).
 */
export function domainXmlForRestore(config: LibvirtVmConfig, o: DefineOptions): string {
  if (!/^[A-Za-z0-9_.+-]{1,200}$/.test(o.name)) throw new DomainXmlError(`domain name ${JSON.stringify(o.name)} is not allowed`);
  const doc = orderedParser.parse(config.domainXml) as ONode[];
  const domain = doc.find((n) => tagOf(n) === 'domain');
  if (!domain) throw new DomainXmlError('no <domain> in the restore point configuration');
  const body = kids(domain);
  for (let i = body.length - 1; i >= 0; i--) if (tagOf(body[i]!) === 'uuid') body.splice(i, 1);
  const nameAt = body.findIndex((n) => tagOf(n) === 'name');
  if (nameAt >= 0) body[nameAt]!['name'] = [{ '#text': o.name }];
  if (o.uuid) {
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(o.uuid)) throw new DomainXmlError(`not a UUID: ${JSON.stringify(o.uuid)}`);
    body.splice(nameAt + 1, 0, { uuid: [{ '#text': o.uuid }] });
  }
  const devices = body.find((n) => tagOf(n) === 'devices');
  const devs = devices ? kids(devices) : [];
  const used = new Set<string>();
  const nics = devs.filter((d) => tagOf(d) === 'interface');
  if (o.macs && o.macs.length !== nics.length) throw new DomainXmlError(`${o.macs.length} MAC addresses for ${nics.length} NICs`);
  nics.forEach((dev, n) => {
    const inner = kids(dev).filter((x) => tagOf(x) !== 'link' && (tagOf(x) !== 'mac' || (!o.macs && o.keepMacs)));
    if (o.macs) {
      if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(o.macs[n]!)) throw new DomainXmlError(`not a MAC address: ${JSON.stringify(o.macs[n])}`);
      inner.unshift({ mac: [], ':@': { address: o.macs[n]! } });
    }
    const source = inner.find((x) => tagOf(x) === 'source');
    if (source && o.networkMap) {
      const a = attrs(source);
      for (const key of ['network', 'bridge']) {
        const to = a[key] !== undefined ? o.networkMap[a[key]] : undefined;
        if (to !== undefined) a[key] = to;
      }
    }
    if (o.noNetwork) inner.push({ link: [], ':@': { state: 'down' } });
    dev['interface'] = inner;
  });
  for (let i = devs.length - 1; i >= 0; i--) {
    const dev = devs[i]!;
    const tag = tagOf(dev);
    if (tag === 'disk' && (attrs(dev)['device'] ?? 'disk') === 'disk') {
      const target = kids(dev).find((n) => tagOf(n) === 'target');
      const t = target ? attrs(target)['dev'] ?? '' : '';
      const next = o.disks[t];
      if (!next) { devs.splice(i, 1); continue; }
      used.add(t);
      attrs(dev)['type'] = 'file';
      const inner = kids(dev).filter((n) => !['source', 'backingStore', 'auth', 'encryption'].includes(tagOf(n)));
      const driver = inner.find((n) => tagOf(n) === 'driver');
      if (driver) attrs(driver)['type'] = next.format;
      const at = driver ? inner.indexOf(driver) + 1 : 0;
      inner.splice(at, 0, { source: [], ':@': { file: next.file } });
      if (next.backingNbd) {
        // Instant recovery: a qcow2 overlay whose backing is a read-only NBD export (the chain given, not probed).
        inner.splice(at + 1, 0, {
          backingStore: [
            { format: [], ':@': { type: 'raw' } },
            { source: [{ host: [], ':@': { transport: 'unix', socket: next.backingNbd.socket } }], ':@': { protocol: 'nbd', name: next.backingNbd.exportName } },
          ],
          ':@': { type: 'network' },
        });
      }
      dev['disk'] = inner;
    } else if ((tag === 'serial' || tag === 'console') && attrs(dev)['type'] === 'file' && o.serialLog) {
      const source = kids(dev).find((n) => tagOf(n) === 'source');
      if (source) attrs(source)['path'] = o.serialLog;
    }
  }
  const missing = Object.keys(o.disks).filter((t) => !used.has(t));
  if (missing.length) throw new DomainXmlError(`the restore point's domain has no disk ${missing.join(', ')}`);
  return orderedBuilder.build(doc) as string;
}
