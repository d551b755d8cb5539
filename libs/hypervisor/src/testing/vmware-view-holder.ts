// Test-only child process: a VMware adapter that opens a view and keeps reading its export, the
// way a coordinator and a data mover do mid-transfer, until the test SIGKILLs it. Argument: JSON
// { url, username, password, thumbprint, vm, jobId, dir }. Prints one JSON line once reading.
import { join } from 'node:path';
import { NbdClient } from '@cairn/nbd';
import { VmwareAdapter } from '../vmware/vmware.adapter.ts';

const cfg = JSON.parse(process.argv[2]!) as { url: string; username: string; password: string; thumbprint: string; vm: string; jobId: string; dir: string };
const adapter = await VmwareAdapter.connect({
  url: cfg.url, credentials: { username: cfg.username, password: cfg.password }, tls: { thumbprint: cfg.thumbprint },
  nbdSocket: join(cfg.dir, 'holder.sock'), stateFile: join(cfg.dir, 'holder-state.json'),
});
const view = await adapter.openView({ vm: cfg.vm, mode: 'full', jobId: cfg.jobId });
const disk = view.disks[0]!;
const client = await NbdClient.connect({ path: join(cfg.dir, 'holder.sock') }, { exportName: disk.exportName });
await client.read(0, 1 << 20);
process.stdout.write(JSON.stringify({ viewId: view.viewId, exportName: disk.exportName, bytesRead: 1 << 20 }) + '\n');
for (let offset = 0; ; offset = (offset + (1 << 20)) % disk.sizeBytes) {
  await client.read(offset, 1 << 20);
  await new Promise((r) => setTimeout(r, 100));
}
