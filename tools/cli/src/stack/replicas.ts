// Copies of other sites' repositories kept at this site (`<data>/replicas/<site>`), opened
// for a restore with that site's key: the passphrase given, CAIRN_REPLICA_PASSPHRASE_<SITE>,
// or `<data>/secrets/replica-<site>.passphrase` (escrowed by the operator for disaster recovery).
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DirectoryBackend, openRepository, type Repository } from '@cairn/repository';

export interface ReplicaLocator {
  locate(restorePointId: string): Promise<Repository | undefined>;
  close(): Promise<void>;
}

export function replicaLocator(o: { replicasDir: string; secretsDir: string; passphrases?: Readonly<Record<string, string>> }): ReplicaLocator {
  const open = new Map<string, Promise<Repository>>();
  const keyOf = async (site: string): Promise<string | undefined> => o.passphrases?.[site]
    ?? process.env[`CAIRN_REPLICA_PASSPHRASE_${site.toUpperCase().replaceAll('-', '_')}`]
    ?? (await readFile(join(o.secretsDir, `replica-${site}.passphrase`), 'utf8').then((t) => t.trim(), () => undefined));
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
          if (!passphrase) throw new Error(`restore point ${restorePointId} is in the replica of site ${site}, but no key for it is here (CAIRN_REPLICA_PASSPHRASE_${site.toUpperCase().replaceAll('-', '_')} or secrets/replica-${site}.passphrase)`);
          repo = openRepository(new DirectoryBackend(dir), { passphrase });
          open.set(site, repo);
          repo.catch(() => open.delete(site));
        }
        return repo;
      }
      return undefined;
    },
    async close() {
      for (const r of open.values()) await r.then((x) => x.close(), () => undefined);
      open.clear();
    },
  };
}
