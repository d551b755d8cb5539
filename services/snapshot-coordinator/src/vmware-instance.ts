// One vSphere connection of the coordinator (vCenter or ESXi): credentials and CA read from the
// files named at `cairn hypervisor add vmware`, the adapter's NBD socket under the run directory,
// its change ids under the data directory, and vSphere's property updates turned into inventory
// rounds (several updates close together make one round).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readCredentialsFile, VmwareAdapter, type AdapterLogger } from '@cairn/hypervisor';

export interface VmwareInstance {
  readonly name: string;
  readonly url: string;
  readonly credentialsFile: string;
  readonly caFile?: string;
  readonly thumbprint?: string;
}

export interface VmwareInstanceSettings {
  readonly dataDir: string;
  readonly runDir: string;
  readonly leaseMs: number;
  readonly logger: AdapterLogger & { child(b: object): AdapterLogger };
  readonly onChange: () => void;
}

export async function connectVmware(i: VmwareInstance, s: VmwareInstanceSettings): Promise<VmwareAdapter> {
  const credentials = await readCredentialsFile(i.credentialsFile);
  const caPem = i.caFile ? await readFile(i.caFile, 'utf8').catch((e: Error) => { throw new Error(`cannot read the CA file ${i.caFile}: ${e.message}`); }) : undefined;
  const adapter = await VmwareAdapter.connect({
    url: i.url, credentials, tls: { ...(caPem ? { caPem } : {}), ...(i.thumbprint ? { thumbprint: i.thumbprint } : {}) },
    nbdSocket: join(s.runDir, `nbd-vmw-${i.name}.sock`),
    stateFile: join(s.dataDir, 'vmware', i.name, 'change-ids.json'),
    defaultLeaseMs: s.leaseMs, logger: s.logger.child({ instance: i.name }),
  });
  let timer: NodeJS.Timeout | undefined;
  void adapter.watch(() => {
    clearTimeout(timer);
    timer = setTimeout(s.onChange, 500).unref();
  });
  return adapter;
}
