// The hub's console runs a site (issue 24): one topology — a secure hub and a secure site A with a
// QEMU VM, two nats-servers on loopback, started as the CLI starts them (the setup of
// sites-hub.e2e.spec.ts) — and one chromium. In the hub's console an operator loads their
// operator key file (the CLI's format; kept in the tab as a non-extractable CryptoKey), starts a
// backup of A's VM, which runs at A and completes, and restores its disk at A; a deletion at A asked by A's root operator
// from the hub's CLI is approved in the hub's console by a second administrator with their own
// key, and A carries it out; the same decision relayed with no signature, or signed by the hub
// gateway's own identity, is refused at A (AccessDenied there). axe-core on the new page. And A's
// own allowed gap: 600 s from `cairn hub add-site --allowed-gap`, 2 min after `cairn site set-gap`
// (a signed command to the hub's site watch), in `cairn site list` and on the Sites page.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { readFile, stat } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { CatalogueClient } from '@cairn/catalogue-client';
import { signCommand, signerFromSeed } from '@cairn/command-auth';
import { approvalStatement, signStatement, type CairnEvent, type Command } from '@cairn/contracts';
import { startDemoVm, startHub, startStack, type DemoVm, type Hub, type Stack } from '@cairn/cli';
import { useHarness, waitFor } from '@cairn/testing';
import { cli, waitForJobEnd } from './e2e-helpers.ts';
import { axeSerious, ensureConsoleBuilt, launchChromium, screenshot } from './console-helpers.ts';

const h = useHarness();

async function eventsOf(stack: Stack, streamId?: string): Promise<CairnEvent[]> {
  const out: CairnEvent[] = [];
  for await (const r of streamId ? stack.log.readStream(streamId) : stack.log.readAll()) out.push(r.event);
  return out;
}

describe('the hub\'s console runs site A: keys loaded in the browser, commands signed there and relayed by the hub', { timeout: 400_000 }, () => {
  let hub: Hub;
  let a: Stack;
  let vm: DemoVm;
  let hubDir: string;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let bobKey: string;
  let restorePointId: string;

  beforeAll(async () => {
    await ensureConsoleBuilt();
    hubDir = await h.tmpDir('cairn-console-hub-');
    const bundle = join(await h.tmpDir('cairn-console-hub-bundle-'), 'bundle');
    const added = await cli(['--data', hubDir, '--json', 'hub', 'add-site', 'a', '--peers', 'none', '--out', bundle, '--allowed-gap', '600']);
    expect(added.code, added.stderr).toBe(0);
    hub = await startHub({ dataDir: hubDir, sites: [], secure: true, probeEveryMs: 1000 });
    h.onClose(() => hub.stop());
    const dirA = await h.tmpDir('cairn-console-hub-a-');
    vm = await startDemoVm(join(dirA, 'demo'), 'alpha', 32 * 1024 * 1024);
    h.onClose(() => vm.stop());
    a = await startStack({ dataDir: dirA, site: 'a', hub: hub.leafUrl, hubCredentials: bundle, secure: true, qemu: [{ qmpSocket: vm.qmpPath }] });
    h.onClose(() => a.stop());
    // A second administrator at A, made at A (users are each site's own), with an endorsed key of their own.
    bobKey = join(await h.tmpDir('cairn-console-hub-bob-'), 'bob.key');
    for (const args of [['user', 'add', 'bob', '--role', 'administrator'], ['user', 'key', 'add', 'bob', '--out', bobKey]]) {
      const r = await cli(['--data', a.dataDir, '--json', ...args]);
      expect(r.code, r.stderr).toBe(0);
    }
    // The hub sees A's VM once the relay has copied A's log.
    await waitFor(async () => (await new CatalogueClient(hub.nc, { site: 'hub' }).query('vm.list', {})).items.find((v) => v.site === 'a' && v.name === 'alpha'),
      { timeoutMs: 120_000, intervalMs: 500, what: 'A\'s VM in the hub\'s catalogue' });
    browser = await launchChromium();
    h.onClose(() => browser.close());
    context = await browser.newContext({ viewport: { width: 1280, height: 720 }, baseURL: hub.gatewayUrl });
    page = await context.newPage();
    await page.goto('/');
    await page.getByLabel('API token').fill(hub.gatewayToken);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Run a site', exact: true }).click();
    await page.getByRole('heading', { name: 'Run a site' }).waitFor();
  }, 400_000);

  afterAll(async () => { await browser?.close(); });

  it('the operator loads their key file; a backup of A\'s VM started in the hub\'s console runs at A as that person and completes; a disk restore started there runs at A', async () => {
    await page.getByLabel('Site', { exact: true }).selectOption('a');
    const row = page.locator('[data-hub-vm="alpha"]');
    await row.waitFor();
    // Without a key the page only shows.
    expect(await row.getByRole('button', { name: 'Back up now: alpha' }).isDisabled()).toBe(true);
    await page.getByLabel('Operator key file').setInputFiles(a.operator!.keyFile);
    await page.locator(`[data-key-user="${a.operator!.actor.id}"]`).waitFor();
    // The key is a CryptoKey the page cannot read back; nothing of the file is kept in storage.
    expect(await page.evaluate(() => localStorage.length + sessionStorage.length)).toBeLessThanOrEqual(1);
    expect(await page.evaluate(() => JSON.stringify({ ...localStorage }))).not.toMatch(/SU[A-Z2-7]{20}/);
    await vm.write(8);
    await row.getByRole('button', { name: 'Back up now: alpha' }).click();
    const started = row.locator('[data-started-job]');
    await started.waitFor({ timeout: 60_000 });
    const jobId = (await started.getAttribute('data-started-job'))!;
    const job = await waitForJobEnd(new CatalogueClient(a.nc, { site: 'a' }), jobId, 240_000);
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    restorePointId = job.restorePointId!;
    const requested = (await eventsOf(a, `job-${jobId}`)).find((e) => e.type === 'JobRequested')!;
    expect(requested.actor).toMatchObject({ kind: 'user', id: a.operator!.actor.id });
    // The hub's console shows it completed (the hub's copy of A's log).
    await page.locator(`[data-hub-job="${jobId}"][data-state="completed"]`).waitFor({ timeout: 90_000 });
    const point = page.locator(`[data-hub-point="${restorePointId}"]`);
    await point.waitFor({ timeout: 30_000 });
    await screenshot(page, 'hub-run-a-site');
    // A restore started from the hub: RestoreDisk at A's data mover, into A's restore directory, as the person.
    await point.getByRole('button', { name: 'Restore a disk…' }).click();
    const target = join(a.dataDir, 'restores', 'from-the-hub.raw');
    await point.getByLabel('Image file on the site\'s data mover (inside its restore directories)').fill(target);
    await point.getByRole('button', { name: 'Restore', exact: true }).click();
    await point.locator(`[data-restored="${target}"]`).waitFor({ timeout: 120_000 });
    expect((await stat(target)).size).toBe(32 * 1024 * 1024);
    const restored = (await eventsOf(a)).find((e) => e.type === 'DiskRestored' && (e.data as { restorePointId?: string }).restorePointId === restorePointId);
    expect(restored?.actor).toMatchObject({ kind: 'user', id: a.operator!.actor.id });
  });

  it('four-eyes at A from the hub\'s console: asked by A\'s root operator (CLI), refused unsigned or signed by the hub\'s gateway, approved by bob with his own key', async () => {
    const asked = await cli(['--data', hubDir, '--site', 'a', '--operator-key', a.operator!.keyFile, '--json', 'restore-point', 'delete', restorePointId, '--reason', 'asked at the hub']);
    expect(asked.code, asked.stderr + asked.stdout).toBe(0);
    const { approvalId } = JSON.parse(asked.stdout) as { approvalId: string };
    const card = page.locator(`li[data-hub-approval="${approvalId}"]`);
    await card.waitFor({ timeout: 60_000 });
    // The requester's own key: the card offers no Approve (the site would refuse it anyway).
    expect(await card.getByRole('button', { name: 'Approve' }).count()).toBe(0);

    // The hub's gateway cannot act for bob: an unsigned decision, and one its own identity signed, are refused at A.
    const action = { kind: 'delete-restore-point', restorePointId };
    const gatewaySeed = await readFile(hub.security!.credentials('gateway').seedFile, 'utf8');
    const gateway = signerFromSeed(gatewaySeed);
    const statement = signStatement((t) => approvalStatement({ approvalId, decision: 'grant', userId: 'bob', action: action as never, issuedAt: t }), gateway);
    const unsigned: Command = {
      id: randomUUID(), name: 'DecideApproval', schemaVersion: 1, idempotencyKey: randomUUID(), actor: { kind: 'user', id: 'bob' }, site: 'a',
      time: new Date().toISOString(), payload: { approvalId, decision: 'approve', signature: statement },
    };
    const post = (command: Command) => page.evaluate(async (body) => {
      const res = await fetch('/v1/sites/a/commands', { method: 'POST', headers: { 'Content-Type': 'application/json', 'X-Cairn-CSRF': '1' }, body: JSON.stringify(body), credentials: 'same-origin' });
      return { status: res.status, body: await res.json() as { code?: string; detail?: string } };
    }, { command });
    const r1 = await post(unsigned);
    expect(r1.status, JSON.stringify(r1.body)).toBe(403);
    expect(r1.body.code).toBe('unauthenticated');
    const r2 = await post(signCommand({ ...unsigned, id: randomUUID(), idempotencyKey: randomUUID() }, gateway));
    expect(r2.status, JSON.stringify(r2.body)).toBe(403);
    expect(r2.body).toMatchObject({ code: 'unauthenticated', detail: expect.stringMatching(/not a current key of user bob/) as unknown });
    await waitFor(async () => (await eventsOf(a)).some((e) => e.type === 'AccessDenied' && (e.data as { operation?: string }).operation === 'DecideApproval') || undefined,
      { timeoutMs: 30_000, intervalMs: 250, what: 'AccessDenied for DecideApproval at A' });
    expect((await eventsOf(a, `approval-${approvalId}`)).map((e) => e.type)).toEqual(['ApprovalRequested']);

    // Bob loads his own key in the hub's console and approves.
    await page.getByRole('button', { name: 'Forget key' }).click();
    await card.locator('[data-hint="sign-with-cli"]').waitFor();
    await page.getByLabel('Operator key file').setInputFiles(bobKey);
    await page.locator('[data-key-user="bob"]').waitFor();
    expect(await axeSerious(page)).toEqual([]);
    await card.getByRole('button', { name: 'Approve' }).click();
    const deleted = await waitFor(async () => (await eventsOf(a, `restorepoint-${restorePointId}`)).find((e) => e.type === 'RestorePointDeleted'),
      { timeoutMs: 120_000, intervalMs: 250, what: 'the deletion at A' });
    await card.locator(`[data-decided="${approvalId}"]`).waitFor({ timeout: 60_000 });
    expect(deleted.data).toMatchObject({ requestedBy: a.operator!.actor.id, approvedBy: 'bob', approvalId });
    const granted = (await eventsOf(a, `approval-${approvalId}`)).find((e) => e.type === 'ApprovalGranted')!;
    expect(granted.actor).toMatchObject({ kind: 'user', id: 'bob' });
    expect(granted.site).toBe('a');
    // The hub's console shows it decided (from the hub's copy of A's log).
    await page.locator(`li[data-hub-approval="${approvalId}"]:not([data-status="pending"])`).waitFor({ timeout: 60_000 });
    expect(await card.getByRole('button', { name: 'Approve' }).count()).toBe(0);
    // Dark theme too.
    await page.getByRole('button', { name: 'Dark theme' }).click();
    expect(await axeSerious(page)).toEqual([]);
    await screenshot(page, 'hub-run-a-site-dark');
    await page.getByRole('button', { name: 'Light theme' }).click();
  });

  it('a policy created and edited at A from the hub\'s console, signed by the person', async () => {
    await page.getByRole('button', { name: 'New policy at a' }).click();
    const form = page.getByRole('form', { name: 'New policy' });
    await form.getByLabel('Name', { exact: true }).fill('hub-nightly');
    await form.getByLabel('VM names (comma-separated)').fill('alpha');
    await form.getByLabel('Time zone').fill('UTC');
    await form.getByRole('button', { name: 'Save' }).click();
    const policy = await waitFor(async () => (await new CatalogueClient(a.nc, { site: 'a' }).query('policy.list', {})).items.find((p) => p.name === 'hub-nightly'),
      { timeoutMs: 60_000, intervalMs: 250, what: 'the policy at A' });
    const created = (await eventsOf(a, `policy-${policy.policyId}`)).find((e) => e.type === 'PolicyCreated')!;
    expect(created.actor).toMatchObject({ kind: 'user', id: 'bob' });
    await page.locator('[data-hub-policy="hub-nightly"]').waitFor({ timeout: 60_000 });
    await page.getByRole('button', { name: 'Edit hub-nightly at a' }).click();
    const edit = page.getByRole('form', { name: 'Edit policy' });
    await edit.getByLabel('Cron (5 or 6 fields)').fill('0 3 * * *');
    await edit.getByRole('button', { name: 'Save' }).click();
    await waitFor(async () => {
      const p = (await new CatalogueClient(a.nc, { site: 'a' }).query('policy.list', {})).items.find((x) => x.name === 'hub-nightly');
      return p?.schedule.cron === '0 3 * * *' ? p : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: 'the edited policy at A' });
  });

  it('A\'s own allowed gap: set at add-site, changed by `cairn site set-gap` (signed by the hub\'s admin identity), shown by `site list` and the Sites page', async () => {
    const gapOfA = async () => {
      const r = await cli(['--data', hubDir, '--json', 'site', 'list']);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as Array<{ site: string; allowedGapMs: number }>).find((x) => x.site === 'a')!.allowedGapMs;
    };
    expect(await gapOfA()).toBe(600_000);
    const set = await cli(['--data', hubDir, '--json', 'site', 'set-gap', 'a', '2m']);
    expect(set.code, set.stderr + set.stdout).toBe(0);
    expect(JSON.parse(set.stdout)).toEqual({ site: 'a', allowedGapMs: 120_000, previousMs: 600_000 });
    expect(await gapOfA()).toBe(120_000);
    const recorded = (await (async () => {
      const { createJetStreamEventLog } = await import('@cairn/eventlog');
      const log = await createJetStreamEventLog({ nc: hub.nc, site: 'hub', createStream: false });
      try {
        const out: CairnEvent[] = [];
        for await (const r of log.readStream('sitehealth-a')) out.push(r.event);
        return out;
      } finally {
        await log.close();
      }
    })()).filter((e) => e.type === 'SiteAllowedGapSet');
    expect(recorded.map((e) => e.data)).toEqual([{ site: 'a', allowedGapMs: 120_000, previousMs: 600_000 }]);
    // Bad input: a clear error, nothing changed.
    const bad = await cli(['--data', hubDir, 'site', 'set-gap', 'a', '0s']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr + bad.stdout).toMatch(/between 1 s and 30 d/);
    const unknown = await cli(['--data', hubDir, 'site', 'set-gap', 'nowhere', '5m']);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr + unknown.stdout).toMatch(/does not watch a site nowhere/);
    expect(await gapOfA()).toBe(120_000);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Sites', exact: true }).click();
    await page.locator('[data-site-health="a"] [data-col="gap"]', { hasText: '2 min' }).waitFor({ timeout: 60_000 });
  });

  it('the hub\'s Sites page shows a global policy read-only: its version, selector and A\'s applied version (axe-clean)', async () => {
    const r = await cli(['--data', hubDir, '--json', 'policy', 'create', '--global', '--name', 'console-global', '--vm', 'alpha', '--cron', '0 2 * * *', '--timezone', 'UTC', '--to-sites', 'a', '--sign-with', a.operator!.keyFile]);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Sites', exact: true }).click();
    // Read every 30 s: reload until A's copy reached the hub.
    await waitFor(async () => {
      await page.reload();
      return page.locator('[data-global-policy="console-global"][data-global-site="a"][data-state="current"]').waitFor({ timeout: 5_000 }).then(() => true, () => undefined);
    }, { timeoutMs: 90_000, intervalMs: 1000, what: 'console-global current at A on the hub\'s Sites page' });
    const row = page.locator('[data-global-policy="console-global"][data-global-site="a"]');
    expect(await row.locator('[data-col="version"]').innerText()).toBe('1');
    expect(await row.locator('[data-col="applied"]').innerText()).toBe('1');
    expect(await page.locator('[data-hub="global-policies"]').innerText()).toMatch(/sites a/);
    expect(await axeSerious(page)).toEqual([]);
  }, 120_000);

  it('at A\'s own console (a secure site), Approve signs with the key bob loads instead of sending him to the CLI', async () => {
    const vmId = (await new CatalogueClient(a.nc, { site: 'a' }).query('vm.list', {})).items.find((v) => v.name === 'alpha')!.vmId;
    const call = async (path: string, body: unknown, token = a.gatewayToken) => {
      const res = await fetch(`${a.gatewayUrl}${path}`, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      return (await res.json()) as Record<string, string>;
    };
    await vm.write(4);
    const { jobId } = await call('/v1/backups', { vmId });
    const job = await waitForJobEnd(new CatalogueClient(a.nc, { site: 'a' }), jobId!, 240_000);
    expect(job.state, JSON.stringify(job.failure)).toBe('completed');
    const asked = await cli(['--data', a.dataDir, '--json', 'restore-point', 'delete', job.restorePointId!, '--reason', 'asked at A']);
    expect(asked.code, asked.stderr + asked.stdout).toBe(0);
    const { approvalId } = JSON.parse(asked.stdout) as { approvalId: string };
    const { token } = await call('/v1/tokens', { userId: 'bob', name: 'console' });
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 }, baseURL: a.gatewayUrl });
    try {
      const p = await ctx.newPage();
      await p.goto('/approvals');
      await p.getByLabel('API token').fill(token!);
      await p.getByRole('button', { name: 'Sign in' }).click();
      await p.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Approvals', exact: true }).click();
      const card = p.locator(`[data-approval="${approvalId}"]`);
      await card.waitFor({ timeout: 60_000 }).catch(async (e: unknown) => { throw new Error(`no card; the page says: ${await p.locator('main').innerText()}`, { cause: e }); });
      // No key yet: a site that requires people's signatures shows the CLI hint instead of Approve.
      const required = await p.evaluate(async () => ((await (await fetch('/v1/whoami')).json()) as { signaturesRequired?: boolean }).signaturesRequired === true);
      expect(await card.locator('[data-hint="sign-with-cli"]').count()).toBe(required ? 1 : 0);
      await p.getByLabel('Operator key file').setInputFiles(bobKey);
      await p.locator('[data-key-user="bob"]').waitFor();
      expect(await axeSerious(p)).toEqual([]);
      await card.getByRole('button', { name: 'Approve' }).click();
      const deleted = await waitFor(async () => (await eventsOf(a, `restorepoint-${job.restorePointId!}`)).find((e) => e.type === 'RestorePointDeleted'),
        { timeoutMs: 120_000, intervalMs: 250, what: 'the deletion at A' });
      expect(deleted.data).toMatchObject({ approvedBy: 'bob', approvalId });
      const granted = (await eventsOf(a, `approval-${approvalId}`)).find((e) => e.type === 'ApprovalGranted')!;
      expect((granted.data as { signature?: { publicKey: string } }).signature?.publicKey).toBe(JSON.parse(await readFile(bobKey, 'utf8')).publicKey);
      await screenshot(p, 'site-approvals-signed');
    } finally {
      await ctx.close();
    }
  });
});
