// Copies of other sites' repositories kept at this site (`<data>/replicas/<site>`), opened
// for a restore with that site's key: the passphrase given, CAIRN_REPLICA_PASSPHRASE_<SITE>,
// `<data>/secrets/replica-<site>.passphrase`, or — once that site was declared lost here with a
// four-eyes approval (SiteDeclaredLost in this site's log) — the key it escrowed here, opened
// with this site's escrow key (docs/sites.md, disaster recovery).
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { EventLog } from '@cairn/eventlog';
import { openEscrow, type EscrowEnvelope } from '@cairn/nats-security';
import { DirectoryBackend, openRepository, type Repository } from '@cairn/repository';

export interface ReplicaLocator {
  locate(restorePointId: string): Promise<Repository | undefined>;
  /**
   * Opens the key `site` escrowed here and checks it opens that site's replica (for
   * DeclareSiteLost, before it is recorded); the secret stays in this process.
   */
  checkEscrow(site: string): Promise<{ repositoryId: string; keyIds: string[]; wrappedAt: string }>;
  close(): Promise<void>;
}

export interface EscrowPlace {
  /** Where the replication receiver keeps the sealed keys (`<site>.json`). */
  readonly dir: string;
  /** This site's escrow private key (from its hub bundle). */
  readonly keyFile: string;
  /** This site's log: a site's escrow is opened only after its SiteDeclaredLost. */
  readonly log: Pick<EventLog, 'readStream'>;
}

export function replicaLocator(o: { replicasDir: string; secretsDir: string; passphrases?: Readonly<Record<string, string>>; escrow?: EscrowPlace }): ReplicaLocator {
  const open = new Map<string, Promise<Repository>>();
  const unsealed = async (site: string): Promise<{ envelope: EscrowEnvelope; passphrase: string }> => {
    if (!o.escrow) throw new Error(`this site holds no escrow key (it joined the hub without one)`);
    const envelope = JSON.parse(await readFile(join(o.escrow.dir, `${site}.json`), 'utf8').catch(() => {
      throw new Error(`site ${site} escrowed no key here (it sends one with its first copy after joining a hub with key escrow)`);
    })) as EscrowEnvelope;
    return { envelope, passphrase: openEscrow(envelope, await readFile(o.escrow.keyFile, 'utf8')).passphrase };
  };
  const declaredLost = async (site: string): Promise<boolean> => {
    if (!o.escrow) return false;
    for await (const r of o.escrow.log.readStream(`repository-sitelost-${site}`)) if (r.event.type === 'SiteDeclaredLost') return true;
    return false;
  };
  const keyOf = async (site: string): Promise<string | undefined> => o.passphrases?.[site]
    ?? process.env[`CAIRN_REPLICA_PASSPHRASE_${site.toUpperCase().replaceAll('-', '_')}`]
    ?? (await readFile(join(o.secretsDir, `replica-${site}.passphrase`), 'utf8').then((t) => t.trim(), () => undefined))
    ?? (await declaredLost(site) ? (await unsealed(site)).passphrase : undefined);
  return {
    async locate(restorePointId) {
      if (!/^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}$/.test(restorePointId)) return undefined;
      const sites = await readdir(o.replicasDir).catch(() => [] as string[]);
      for (const site of sites) {
        const dir = join(o.replicasDir, site);
        if (!(await stat(join(dir, 'restore-points', restorePointId)).then(() => true, () => false))) continue;
        let repo = open.get(site);
        if (!repo) {
          const passphrase = await keyOf(site);
          if (!passphrase) throw new Error(`restore point ${restorePointId} is in the replica of site ${site}, but no key for it is here: declare the site lost (\`cairn site declare-lost ${site}\`, four-eyes) to open the key it escrowed, or give CAIRN_REPLICA_PASSPHRASE_${site.toUpperCase().replaceAll('-', '_')} or secrets/replica-${site}.passphrase`);
          repo = openRepository(new DirectoryBackend(dir), { passphrase });
          open.set(site, repo);
          repo.catch(() => open.delete(site));
        }
        return repo;
      }
      return undefined;
    },
    async checkEscrow(site) {
      const { envelope, passphrase } = await unsealed(site);
      const repo = await openRepository(new DirectoryBackend(join(o.replicasDir, site)), { passphrase });
      try {
        if (repo.repositoryId !== envelope.repositoryId) throw new Error(`the escrow of site ${site} is for repository ${envelope.repositoryId}, its replica here is ${repo.repositoryId}`);
      } finally {
        await repo.close();
      }
      return { repositoryId: envelope.repositoryId, keyIds: [...envelope.keyIds], wrappedAt: envelope.wrappedAt };
    },
    async close() {
      for (const r of open.values()) await r.then((x) => x.close(), () => undefined);
      open.clear();
    },
  };
}
