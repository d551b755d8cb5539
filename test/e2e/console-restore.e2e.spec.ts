/// <reference lib="dom" />
// The console's restore wizard for whole VMs and instant recovery, in a real browser (Debian's
// chromium through playwright-core) against a real stack (`cairn up` in process) that backed up
// a real Linux test guest: a whole-VM restore started from the wizard, followed live to its end,
// boots to the guest's marker; an instant recovery started from the wizard boots to the marker
// straight from the repository, the Instant recoveries page shows it with its overlay size,
// Finish mirrors it to local disks and pivots (the mirror's progress shown, the VM still
// running), and a second session is discarded; the restore point's test restore (`cairn test-restore`,
// run meanwhile) shows as passed on the VM's timeline, and its lock (`cairn restore-point lock`) too. axe-core and screenshots of the new pages in
// both themes, and the page's actions reachable from the keyboard. One stack, one backup and
// one browser for the file.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { bootGuest, buildGuestImage, useHarness, waitFor, type GuestImage } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startStack, type Stack } from '@cairn/cli';
import { cli, gatewayCall, pidsOf, waitForJobEnd } from './e2e-helpers.ts';
import { axeSerious, ensureConsoleBuilt, launchChromium, screenshot } from './console-helpers.ts';

const h = useHarness();
let dataDir: string;
let restores: string;
let image: GuestImage;
let stack: Stack;
let browser: Browser;
let admin: Page;
let vmId: string;
let restorePointId: string;
/** A test restore of the restore point (`cairn test-restore`), run beside the wizard's restores. */
let testRestore: ReturnType<typeof cli>;

const nav = (page: Page, name: string) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true });
const serialShows = (file: string, text: string, what: string) =>
  waitFor(async () => (await readFile(file, 'utf8').catch(() => '')).includes(text) || undefined, { timeoutMs: 300_000, intervalMs: 250, what });
const api = (method: 'GET' | 'POST', path: string, body?: unknown) => gatewayCall(stack.gatewayUrl, stack.gatewayToken, method, path, body);

/** The wizard up to its last step: this VM, the restore point, the kind. */
async function wizard(kind: RegExp): Promise<void> {
  await nav(admin, 'Restore').click();
  await admin.getByLabel('1. VM').selectOption(vmId);
  await admin.getByLabel('2. Restore point').selectOption(restorePointId);
  await admin.getByRole('radio', { name: kind }).check();
}

beforeAll(async () => {
  await ensureConsoleBuilt();
  dataDir = await h.tmpDir('cairn-e2e-console-restore-');
  restores = join(dataDir, 'restores');
  image = await buildGuestImage({ dir: join(dataDir, 'guest'), hostname: 'con-guest', sizeMiB: 128 });
  // The original only has to be there for the backup: kept paused (-S), it costs no CPU.
  const original = await bootGuest({ image, dir: join(dataDir, 'guest-run'), args: ['-S', '-name', 'con-orig'] });
  h.onClose(() => original.kill());
  stack = await startStack({ dataDir, qemu: [{ qmpSocket: original.qmpPath }] });
  h.onClose(() => stack.stop());
  // Whatever the restores started (VMs, exporters: their command lines name this directory) goes at the end.
  h.onClose(async () => { for (const pid of await pidsOf(restores)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } } });
  const catalogue = new CatalogueClient(stack.nc, { site: stack.site });
  vmId = (await waitFor(async () => (await catalogue.query('vm.list', {})).items.find((v) => v.name === 'con-orig'), { timeoutMs: 60_000, what: 'con-orig in the catalogue' })).vmId;
  const r = await api('POST', '/v1/backups', { vmId });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  const job = await waitForJobEnd(catalogue, r.body['jobId'] as string, 300_000);
  expect(job.state, JSON.stringify(job.failure)).toBe('completed');
  restorePointId = job.restorePointId!;
  await original.kill();
  testRestore = cli(['--data', dataDir, '--json', 'test-restore', restorePointId, '--serial', image.marker, '--kernel', image.kernel, '--initrd', image.initrd, '--append', 'console=ttyS0 root=/dev/vda rw'], {}, 400_000);

  browser = await launchChromium();
  h.onClose(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 }, baseURL: stack.gatewayUrl });
  admin = await context.newPage();
  await admin.goto('/');
  await admin.getByLabel('API token').fill(stack.gatewayToken);
  await admin.getByRole('button', { name: 'Sign in' }).click();
  await admin.locator('[data-feed-status="live"]').waitFor({ timeout: 60_000 });
}, 600_000);

afterAll(async () => { await browser?.close(); });

describe('restore wizard: whole VM and instant recovery (real stack, real guest, chromium)', { timeout: 420_000 }, () => {
  it('restores the whole VM from the wizard, follows the job live, and the new VM boots', async () => {
    await wizard(/^Whole VM/);
    await admin.getByLabel('New VM name').fill('con-copy');
    expect(await admin.getByLabel('Start the VM once its disks are written').isChecked()).toBe(true);
    await admin.evaluate(() => { (window as unknown as { marker: number }).marker = 1; });
    await admin.locator('[data-action="restore-vm"]').click();
    const card = admin.locator('.current-restore');
    await card.waitFor({ timeout: 30_000 });
    const restoreId = (await card.getAttribute('data-restore'))!;
    await admin.locator('.current-restore[data-state="completed"] [data-restored-vm="con-copy"]').waitFor({ timeout: 300_000 });
    expect(await admin.evaluate(() => (window as unknown as { marker?: number }).marker), 'the page reloaded').toBe(1);
    const view = (await api('GET', `/v1/restore-jobs/${restoreId}`)).body as { state: string; vm: { name: string; dir: string; started: boolean; serialLog: string; pid: number } };
    expect(view).toMatchObject({ state: 'completed', vm: { name: 'con-copy', dir: join(restores, 'vms', 'con-copy'), started: true } });
    expect(await card.locator('[data-serial-log]').getAttribute('data-serial-log')).toBe(view.vm.serialLog);
    await serialShows(view.vm.serialLog, image.marker, `${image.marker} on the VM restored from the wizard`);
    process.kill(view.vm.pid, 'SIGKILL'); // its CPU goes to the instant recoveries
    // The job is a restore on the jobs page too.
    await nav(admin, 'Jobs').click();
    await admin.locator(`tr[data-job="${restoreId}"]`).waitFor({ timeout: 30_000 });
  });

  let instantId: string;

  it('starts an instant recovery from the wizard: it boots from the repository and the page shows it with its overlay', async () => {
    await wizard(/^Instant recovery/);
    await admin.getByLabel('New VM name').fill('con-inst');
    await admin.locator('[data-action="instant"]').click();
    await admin.waitForURL(/\/instant\?started=/, { timeout: 300_000 });
    instantId = new URL(admin.url()).searchParams.get('started')!;
    const card = admin.locator(`[data-instant="${instantId}"]`);
    await card.waitFor({ timeout: 30_000 });
    expect(await card.getAttribute('data-state')).toBe('serving');
    expect(await card.locator('[data-running]').getAttribute('data-running')).toBe('true');
    const view = (await api('GET', `/v1/instant-recoveries/${instantId}`)).body as { serialLog: string; running: boolean };
    await serialShows(view.serialLog, image.marker, `${image.marker} on the instantly recovered VM`);
    // What the guest wrote while booting (ext4 mounts read-write) is in its overlay, and the page says how much (re-read every 5 s).
    await expect.poll(async () => Number(await card.locator('[data-overlay-bytes]').getAttribute('data-overlay-bytes')), { timeout: 60_000 }).toBeGreaterThan(0);
    expect(await nav(admin, 'Instant recoveries').getAttribute('aria-current')).toBe('page');
  });

  it('Finish mirrors the running VM to local disks and pivots; the page follows it to finished', async () => {
    const card = admin.locator(`[data-instant="${instantId}"]`);
    // What the card showed on the way (its state and mirror percent at each change), noted by the page.
    await card.evaluate((el) => {
      const w = window as unknown as { seen: string[] };
      w.seen = [];
      const note = () => { const m = el.querySelector('.mirror'); const s = `${el.getAttribute('data-state')}:${m?.getAttribute('data-mirror-percent') ?? '-'}`; if (w.seen.at(-1) !== s) w.seen.push(s); };
      new MutationObserver(note).observe(el, { attributes: true, childList: true, subtree: true });
    });
    await card.getByLabel('Format').selectOption('raw');
    await card.locator('[data-action="finish"]').click();
    await admin.locator(`[data-instant="${instantId}"][data-state="finished"]`).waitFor({ timeout: 300_000 });
    await card.locator('.mirror[data-mirror-percent="100"]').waitFor({ timeout: 30_000 });
    const seen = await admin.evaluate(() => (window as unknown as { seen: string[] }).seen);
    console.info(`console-restore e2e: the instant recovery card showed ${seen.join(' → ')}`);
    expect(seen.at(-1)).toBe('finished:100');
    const view = (await api('GET', `/v1/instant-recoveries/${instantId}`)).body as { state: string; running: boolean; disks: { path?: string }[]; serialLog: string };
    expect(view).toMatchObject({ state: 'finished', running: true });
    expect(view.disks[0]!.path).toMatch(/\.raw$/);
    // Still the same guest after the pivot: it keeps its console and its marker.
    expect(await readFile(view.serialLog, 'utf8')).toContain(image.marker);
  });

  it('a second session is discarded from the page after a confirmation, and stays listed as discarded', async () => {
    await wizard(/^Instant recovery/);
    await admin.getByLabel('New VM name').fill('con-gone');
    await admin.getByLabel('Start the VM').uncheck();
    await admin.locator('[data-action="instant"]').click();
    await admin.waitForURL(/\/instant\?started=/, { timeout: 300_000 });
    const id = new URL(admin.url()).searchParams.get('started')!;
    const card = admin.locator(`[data-instant="${id}"]`);
    await card.waitFor({ timeout: 30_000 });
    // From the keyboard: Tab reaches Discard…; Enter asks; the confirmation is a button too.
    await card.locator('[data-action="finish"]').focus();
    await admin.keyboard.press('Tab');
    expect(await admin.evaluate(() => document.activeElement?.getAttribute('data-action'))).toBe('discard');
    await admin.keyboard.press('Enter');
    await card.getByRole('alert').filter({ hasText: /drop everything it wrote/ }).waitFor();
    await card.locator('[data-action="discard-confirm"]').focus();
    await admin.keyboard.press('Enter');
    // Ended within the hour: still listed, as discarded, with nothing left to do.
    await admin.locator(`[data-instant="${id}"][data-state="discarded"]`).waitFor({ timeout: 120_000 });
    expect(await card.locator('button').count()).toBe(0);
    expect((await api('GET', `/v1/instant-recoveries/${id}`)).body).toMatchObject({ state: 'discarded', running: false });
  });

  it('the VM page shows the restore point\'s test restore (booted in isolation and checked): passed', async () => {
    const r = await testRestore;
    expect(r.code, `${r.stdout} ${r.stderr}`).toBe(0);
    await admin.goto(`/vms/${vmId}`);
    const result = admin.locator(`[data-restore-point="${restorePointId}"] [data-test-restore="passed"]`);
    await result.waitFor({ timeout: 60_000 });
    expect(await result.textContent()).toMatch(/^passed .*\(serial/);
  });

  it('the timeline shows the restore point\'s immutability lock: until when, and whose act made it', async () => {
    const point = admin.locator(`[data-restore-point="${restorePointId}"]`);
    expect(await point.locator('[data-lock="none"]').textContent()).toBe('not locked');
    const r = await cli(['--data', dataDir, '--json', 'restore-point', 'lock', restorePointId, '--for', '30d'], {}, 300_000);
    expect(r.code, `${r.stdout} ${r.stderr}`).toBe(0);
    const until = (JSON.parse(r.stdout) as { retainUntil: string }).retainUntil;
    // The REST view carries the lock from the catalogue's projection of RestorePointLocked.
    const view = await waitFor(async () => {
      const v = await api('GET', `/v1/restore-points/${restorePointId}`);
      return (v.body['lock'] as Record<string, unknown> | null) ? v.body : undefined;
    }, { timeoutMs: 60_000, what: 'the lock in the restore point view' });
    expect(view['lock']).toMatchObject({ until, source: 'act', policyId: null, actor: { kind: 'user' } });
    // Shown on the timeline live (the event stream), without a reload.
    const lock = point.locator('[data-lock="held"][data-lock-source="act"]');
    await lock.waitFor({ timeout: 60_000 });
    expect(await lock.textContent()).toMatch(/^locked until .+ by .+'s lock$/);
  });

  it('the new pages pass axe-core without serious or critical violations in light and dark, and are screenshot', async () => {
    const found: Record<string, unknown> = {};
    for (const theme of ['light', 'dark'] as const) {
      await admin.evaluate((t) => localStorage.setItem('cairn-theme', t), theme);
      const pages: Array<[string, () => Promise<void>]> = [
        ['restore-vm', async () => { await admin.goto('/'); await wizard(/^Whole VM/); await admin.getByLabel('New VM name').waitFor(); }],
        ['restore-instant', async () => { await admin.goto('/'); await wizard(/^Instant recovery/); await admin.locator('[data-action="instant"]').waitFor(); }],
        ['vm-tested', async () => { await admin.goto(`/vms/${vmId}`); await admin.locator('[data-test-restore="passed"]').waitFor(); await admin.locator('[data-lock="held"]').waitFor(); }],
        // The jobs page with both kinds: the backup and the whole-VM restore.
        ['jobs-kinds', async () => { await admin.goto('/jobs'); await admin.locator('tr[data-job]').nth(1).waitFor(); }],
        ['instant', async () => { await admin.goto('/instant'); await admin.getByLabel('All ended ones').check(); await admin.locator('[data-instant]').nth(1).waitFor(); }],
      ];
      for (const [name, open] of pages) {
        await open();
        expect(await admin.evaluate(() => document.documentElement.dataset['theme'])).toBe(theme);
        const v = await axeSerious(admin);
        if (v.length) found[`${name}/${theme}`] = v;
        await screenshot(admin, `${name}-${theme}`);
      }
    }
    expect(found).toEqual({});
  });
});
