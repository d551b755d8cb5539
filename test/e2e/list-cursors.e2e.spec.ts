// Cursors on every list (issue 21): 2,500 VMs (VmDiscovered appended to the site's log, projected
// by the real catalogue) page through the API (`limit`, `after`, `next`) and the CLI
// (`--limit/--after`, and all by default) with no VM lost or repeated, in the list's order;
// the audit trail of those events pages the same way oldest first; a cursor from nowhere is a
// usage error. One stack for the file.
import { beforeAll, describe, expect, it } from 'vitest';
import { newEvent } from '@cairn/contracts';
import { CatalogueClient } from '@cairn/catalogue-client';
import { useHarness } from '@cairn/testing';
import { startStack, type Stack } from '@cairn/cli';
import { cli, gatewayCall } from './e2e-helpers.ts';

const COUNT = 2500;
const pad = (i: number) => String(i).padStart(4, '0');

describe('list cursors (real catalogue, gateway and CLI)', () => {
  const h = useHarness();
  let stack: Stack;
  let dataDir: string;
  const ids = new Set<string>();

  beforeAll(async () => {
    dataDir = await h.tmpDir('cairn-cursors-');
    stack = await startStack({ dataDir });
    h.onClose(() => stack.stop());
    // Names in another order than ids, so the name order is what the pages must follow.
    const events = Array.from({ length: COUNT }, (_, i) => {
      const vmId = `pg-${pad(i)}`;
      ids.add(vmId);
      return newEvent('VmDiscovered', {
        vmId, name: `vm-${pad((i * 7919) % COUNT)}`, hypervisor: { kind: 'qemu', host: 'paging-host' }, tags: [], disks: [],
      }, { site: stack.site, streamId: `vm-${vmId}`, actor: { kind: 'service', id: `snapshot-coordinator@${stack.site}` } });
    });
    for (let i = 0; i < events.length; i += 250) {
      await Promise.all(events.slice(i, i + 250).map((e) => stack.log.append(e.streamId, [e], { expectedRevision: 'no_stream' })));
    }
    const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
    const deadline = Date.now() + 120_000;
    while ((await catalogue.query('catalogue.stats', {}).catch(() => ({ vms: 0 }))).vms < COUNT) {
      if (Date.now() > deadline) throw new Error('the catalogue did not project 2,500 VMs within 120 s');
      await new Promise((r) => setTimeout(r, 500));
    }
  }, 300_000);

  /** Checks one walk: every VM once, none missing, in name order. */
  const checkWalk = (walk: Array<{ vmId: string; name: string }>) => {
    const ours = walk.filter((v) => ids.has(v.vmId));
    expect(ours).toHaveLength(COUNT);
    expect(new Set(ours.map((v) => v.vmId)).size).toBe(COUNT);
    const names = walk.map((v) => `${v.name}\u0000${v.vmId}`);
    expect(names).toEqual([...names].sort());
  };

  it('the API pages through 2,500 VMs: none lost or repeated, in name order', async () => {
    const walk: Array<{ vmId: string; name: string }> = [];
    let after: string | null = null;
    let pages = 0;
    do {
      const { status, body } = await gatewayCall(stack.gatewayUrl, stack.gatewayToken, 'GET', `/v1/vms?limit=300${after ? `&after=${after}` : ''}`);
      expect(status).toBe(200);
      walk.push(...(body.items as Array<{ vmId: string; name: string }>));
      after = body.next as string | null;
      pages++;
    } while (after !== null);
    expect(pages).toBe(Math.ceil(walk.length / 300));
    checkWalk(walk);
    const bad = await gatewayCall(stack.gatewayUrl, stack.gatewayToken, 'GET', '/v1/vms?after=bm90LWEtY3Vyc29y');
    expect(bad.status, JSON.stringify(bad.body)).toBe(400);
  });

  it('the CLI lists all by default, and --limit/--after walks the same 2,500 once each', async () => {
    const all = await cli(['--data', dataDir, '--json', 'vm', 'list'], {}, 300_000);
    expect(all.code, all.stderr).toBe(0);
    checkWalk(JSON.parse(all.stdout) as Array<{ vmId: string; name: string }>);

    const walk: Array<{ vmId: string; name: string }> = [];
    let after: string | null = null;
    do {
      const r = await cli(['--data', dataDir, '--json', 'vm', 'list', '--limit', '900', ...(after ? ['--after', after] : [])], {}, 300_000);
      expect(r.code, r.stderr).toBe(0);
      const page = JSON.parse(r.stdout) as { items: Array<{ vmId: string; name: string }>; next: string | null };
      walk.push(...page.items);
      after = page.next;
    } while (after !== null);
    checkWalk(walk);

    const human = await cli(['--data', dataDir, 'vm', 'list', '--limit', '5'], {}, 300_000);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stderr).toMatch(/^more: --after [A-Za-z0-9_-]+$/m);

    const bad = await cli(['--data', dataDir, '--json', 'vm', 'list', '--after', 'bm90LWEtY3Vyc29y']);
    expect(bad.code).toBe(2);
    expect((JSON.parse(bad.stdout) as { error: { message: string } }).error.message).toMatch(/cursor/);
  });

  it('the audit trail of those events pages oldest first through the API and the CLI', async () => {
    const positions: number[] = [];
    let after: string | null = null;
    do {
      const { status, body } = await gatewayCall(stack.gatewayUrl, stack.gatewayToken, 'GET', `/v1/audit?type=VmDiscovered&limit=700${after ? `&after=${after}` : ''}`);
      expect(status).toBe(200);
      positions.push(...(body.items as Array<{ position: number }>).map((e) => Number(e.position)));
      after = body.next as string | null;
    } while (after !== null);
    expect(positions.length).toBeGreaterThanOrEqual(COUNT);
    expect(new Set(positions).size).toBe(positions.length);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));

    const r = await cli(['--data', dataDir, '--json', 'audit', '--type', 'VmDiscovered', '--all'], {}, 300_000);
    expect(r.code, r.stderr).toBe(0);
    const cliPositions = (JSON.parse(r.stdout) as Array<{ position: number }>).map((e) => Number(e.position));
    expect(cliPositions).toEqual(positions);
  });
});
