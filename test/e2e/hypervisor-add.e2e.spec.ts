// `cairn hypervisor add`: a running QEMU joins a running Cairn, its VMs appear, and the
// coordinator connects it again after a restart.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startDemoVm, startStack } from '@cairn/cli';
import { cli } from './e2e-helpers.ts';

describe('cairn hypervisor add (real QEMU)', () => {
  const h = useHarness();

  it('connects a running QEMU, lists its VMs, refuses a bad socket, and remembers it across a restart', async () => {
    const dataDir = await h.tmpDir('cairn-hv-');
    const vm = await startDemoVm(join(dataDir, 'vm'), 'web-1', 16 * 1024 * 1024);
    h.onClose(() => vm.stop());
    let stack = await startStack({ dataDir });
    h.onClose(() => stack.stop());
    const args = ['--data', dataDir];

    const bad = await cli([...args, 'hypervisor', 'add', 'qemu', '--qmp', join(dataDir, 'nope.sock'), '--name', 'h0']);
    expect(bad.code).toBe(5);
    expect(bad.stderr).toMatch(/cannot connect to QMP/);
    const wrongKind = await cli([...args, 'hypervisor', 'add', 'vmware', '--qmp', vm.qmpPath]);
    expect(wrongKind.code).toBe(2);

    const added = await cli([...args, 'hypervisor', 'add', 'qemu', '--qmp', vm.qmpPath, '--name', 'h1']);
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/hypervisor h1 added; VMs: web-1/);
    const catalogue = () => new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue().query('vm.list', {})).items.some((v) => v.name === 'web-1' && v.hypervisor.host === 'h1'), { what: 'web-1 in the catalogue' });

    await stack.stop();
    stack = await startStack({ dataDir });
    const health = await stack.health();
    const coordinator = health.find((x) => x.service === 'snapshot-coordinator');
    expect(JSON.stringify(coordinator?.detail)).toMatch(/"name":"h1","connected":true/);
    const listed = await cli([...args, '--json', 'vm', 'list']);
    expect(JSON.parse(listed.stdout).map((v: { name: string }) => v.name)).toContain('web-1');
  }, 240_000);
});
