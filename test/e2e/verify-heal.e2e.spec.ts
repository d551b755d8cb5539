// Verify jobs through a running stack (real QEMU VM, NBD, the directory repository): two
// backups, then one chunk both restore points use is flipped in the repository. The data
// mover's scheduled verify finds it and records RestorePointDamaged for every restore point
// that uses it; the scheduler's next backup of the VM reads it whole and sends that chunk again
// (the heal list in the work); verify is clean afterwards, scheduled and direct.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { chunkKey } from '@cairn/repository';
import type { KnownEvent } from '@cairn/contracts';
import { startDemoVm, startStack } from '@cairn/cli';
import { cli, waitForJobEnd } from './e2e-helpers.ts';

describe('scheduled verify finds a flipped chunk, the next backup heals it', () => {
  const h = useHarness();

  it('names every restore point using the chunk; the next backup re-sends it; verify clean after', async () => {
    const dataDir = await h.tmpDir('cairn-e2e-verify-');
    const vm = await startDemoVm(join(dataDir, 'demo'), 'demo', 32 * 1024 * 1024);
    h.onClose(() => vm.stop());
    // A verify slot every 3 s, every restore point each time (olderThanDays 0).
    const stack = await startStack({ dataDir, qemu: [{ qmpSocket: vm.qmpPath }], verify: { everyMs: 3000, olderThanDays: 0 } });
    h.onClose(() => stack.stop());
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    await waitFor(async () => (await catalogue.query('vm.list', {})).items.some((v) => v.name === 'demo'), { what: 'demo VM in the catalogue' });
    const args = ['--data', dataDir];
    const backup = async () => {
      const r = await cli([...args, '--json', 'backup', 'demo']);
      expect(r.code, r.stderr).toBe(0);
      const job = await waitForJobEnd(catalogue, (JSON.parse(r.stdout) as { jobId: string }).jobId, 180_000);
      expect(job.state, JSON.stringify(job.failure)).toBe('completed');
      return job;
    };
    const events = async (category: string): Promise<KnownEvent[]> => {
      const out: KnownEvent[] = [];
      for await (const r of stack.log.readAll({ category })) out.push(r.event);
      return out;
    };

    await vm.write(8);
    const rp1 = (await backup()).restorePointId!;
    await vm.write(4);
    const rp2 = (await backup()).restorePointId!;

    // A chunk both restore points hold at the same offset (unchanged between them).
    const disk = (await stack.repository.getManifest(rp1)).disks[0]!.name;
    const [d1, d2] = [await stack.repository.openDisk(rp1, disk), await stack.repository.openDisk(rp2, disk)];
    let victim: string | undefined;
    for (let c = 0; victim === undefined; c++) {
      const id = await d1.chunkIdAt(c);
      if (id && id === (await d2.chunkIdAt(c))) victim = id;
    }
    const file = join(dataDir, 'repository', chunkKey(victim));
    const sealed = await readFile(file);
    sealed[Math.floor(sealed.length / 2)]! ^= 0x10;
    await writeFile(file, sealed);
    const flippedAt = Date.now();

    // The scheduled verify finds it and names both restore points.
    const found = await waitFor(async () => (await events('verify')).find((e) => e.type === 'VerifyCompleted' && e.data.damagedCount > 0 && Date.parse(e.time) > flippedAt),
      { timeoutMs: 60_000, intervalMs: 500, what: 'a scheduled verify that finds the damage' });
    if (found.type !== 'VerifyCompleted') throw new Error('unreachable');
    expect(found.data.damaged).toEqual([{ kind: 'chunk', id: victim, damage: 'authentication' }]);
    expect(found.data.affectedRestorePoints.sort()).toEqual([rp1, rp2].sort());
    const damaged = (await events('restorepoint')).filter((e) => e.type === 'RestorePointDamaged' && e.data.verifyId === found.data.verifyId);
    expect(damaged.map((e) => (e.data as { restorePointId: string }).restorePointId).sort()).toEqual([rp1, rp2].sort());
    expect(damaged[0]!.data).toMatchObject({ vmId: expect.any(String), damaged: [{ id: victim }], damagedCount: 1 });
    expect((await stack.repository.verify({ restorePoints: [rp1] })).ok).toBe(false);

    // The next backup reads the VM whole and sends the chunk again: healed for every point using it.
    const job3 = await backup();
    const detail = await catalogue.query('job.get', { jobId: job3.jobId });
    const taken = detail.events.find((e) => e.type === 'SnapshotTaken')!.data as { nbd: { exports: Array<{ mode: string; reason: string }> } };
    expect(taken.nbd.exports[0]!.mode).toBe('full');
    expect(taken.nbd.exports[0]!.reason).toMatch(/damaged chunk/);
    const direct = await stack.repository.verify();
    expect(direct.damaged).toEqual([]);
    expect(direct.ok).toBe(true);
    const healedAt = Date.now();
    const clean = await waitFor(async () => (await events('verify')).find((e) => e.type === 'VerifyCompleted' && Date.parse(e.time) > healedAt),
      { timeoutMs: 60_000, intervalMs: 500, what: 'a scheduled verify after the healing backup' });
    expect(clean.data).toMatchObject({ damagedCount: 0, affectedRestorePoints: [] });
    expect((clean.data as { restorePoints: string[] }).restorePoints).toEqual(expect.arrayContaining([rp1, rp2, job3.restorePointId!]));
  }, 420_000);
});
