// Configuration, validated once at start-up into one typed object.
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { libvirtNbdSettingsProblem } from './libvirt-instance.ts';

const Nbd = Type.Union([
  Type.Object({ socketPath: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
  Type.Object({
    /** The address QEMU's NBD server listens on and data movers connect to (a name or address of this node). */
    host: Type.String({ minLength: 1 }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    /**
     * Serve with TLS and require a client certificate of the site's PKI, so data movers on other
     * nodes can read views: QEMU's tls-creds-x509 directory (ca-cert.pem = the site CA,
     * server-cert.pem naming `host`, server-key.pem), made by `issueNbdServerTls` (libs/nats-security).
     */
    tlsDir: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
  }, { additionalProperties: false }),
]);

export const CoordinatorConfig = Type.Object({
  site: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$' }),
  natsUrl: Type.String({ minLength: 1 }),
  /** Open-view records and fleecing overlays live here. */
  dataDir: Type.String({ minLength: 1 }),
  /** Lease of a view unless the request asks for another (default 1 h). */
  leaseMs: Type.Integer({ minimum: 1000, default: 3_600_000 }),
  reapIntervalMs: Type.Integer({ minimum: 100, default: 30_000 }),
  inventoryIntervalMs: Type.Integer({ minimum: 1000, default: 60_000 }),
  /** Running QEMU instances: `name` is the hypervisor host name reported in the inventory. */
  instances: Type.Array(Type.Object({
    name: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    qmpSocket: Type.String({ minLength: 1 }),
    nbd: Nbd,
    guestAgentSocket: Type.Optional(Type.String({ minLength: 1 })),
  }, { additionalProperties: false }), { default: [] }),
  /** libvirt connections: every domain of each is protected (docs/hypervisor.md, "libvirt adapter"). */
  libvirt: Type.Array(Type.Object({
    name: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    uri: Type.String({ minLength: 1, maxLength: 1024 }),
    /** libvirt auth.conf holding the credentials (never on a command line). */
    credentialsFile: Type.Optional(Type.String({ minLength: 1 })),
    /** NBD socket and copy-before-write scratch files; QEMU's user must reach it (default under /var/tmp). */
    scratchDir: Type.Optional(Type.String({ minLength: 1, maxLength: 80 })),
    /** qemu+tls:// only: the NBD client certificate directory (default the URI's pkipath, else libvirt's client PKI). */
    nbdTlsDir: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    /** qemu+tls:// only: first and last TCP port of the host for NBD exports (default [10809, 10899]). */
    nbdPorts: Type.Optional(Type.Tuple([Type.Integer({ minimum: 1, maximum: 65535 }), Type.Integer({ minimum: 1, maximum: 65535 })])),
  }, { additionalProperties: false }), { default: [] }),
  /** Powered-off VMs, served from their image files. */
  offline: Type.Optional(Type.Object({
    name: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    vms: Type.Array(Type.Object({
      name: Type.String({ minLength: 1 }),
      disks: Type.Array(Type.Object({ id: Type.String({ minLength: 1 }), file: Type.String({ minLength: 1 }) }, { additionalProperties: false })),
    }, { additionalProperties: false })),
  }, { additionalProperties: false })),
  /**
   * Simulated VMs for load tests (libs/hypervisor SimulatedAdapter): refused at start unless
   * CAIRN_SIMULATED_HYPERVISOR=1; cairn.yaml and `cairn hypervisor add` never offer it.
   */
  simulated: Type.Optional(Type.Object({
    name: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
    vms: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    /** Spread the VMs over this many simulated hosts (`<name>-01` …; default 1, named `<name>`). */
    hosts: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    diskBytes: Type.Optional(Type.Integer({ minimum: 65536 })),
    changesPerView: Type.Optional(Type.Integer({ minimum: 1 })),
  }, { additionalProperties: false })),
  /** Serve GET /health on this loopback port (optional). */
  healthPort: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
}, { additionalProperties: false });
export type CoordinatorConfig = Static<typeof CoordinatorConfig>;

export function parseCoordinatorConfig(input: unknown): CoordinatorConfig {
  const withDefaults = Value.Default(CoordinatorConfig, structuredClone(input));
  const errors = [...Value.Errors(CoordinatorConfig, withDefaults)];
  if (errors.length) {
    throw new Error(`invalid snapshot-coordinator config: ${errors.slice(0, 5).map((e) => `${e.path || '/'} ${e.message}`).join('; ')}`);
  }
  const config = withDefaults as CoordinatorConfig;
  for (const [n, l] of config.libvirt.entries()) {
    const problem = libvirtNbdSettingsProblem(l);
    if (problem) throw new Error(`invalid snapshot-coordinator config: /libvirt/${n} (${l.name}) ${problem}`);
  }
  return config;
}
