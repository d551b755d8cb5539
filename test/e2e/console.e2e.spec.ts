/// <reference lib="dom" />
// The web console in a real browser (Debian's chromium through playwright-core) against a real
// stack (`cairn up` in process) backing up a QEMU VM: sign-in, the dashboard, a backup started
// from the VM page followed live to 100%, its restore point on the timeline, a disk restore from
// the wizard, a failed job turning the dashboard red, role checks, four-eyes deletion,
// accessibility (axe-core) and screenshots of every page in both themes, phone layout, and the
// live feed resuming after a gateway restart without missing an event; the dashboard's RPO from
// the policies; the audit trail a page at a time; single sign-on through a real OpenID Connect
// provider (the `oidc-provider` package, in process) with the whole redirect flow in the browser.
import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { useHarness, waitFor } from '@cairn/testing';
import { CatalogueClient } from '@cairn/catalogue-client';
import { startDemoVm, startStack, type DemoVm, type Stack } from '@cairn/cli';
import { startGateway, type RunningGateway } from '@cairn/gateway';
import { pino } from 'pino';
import { faultyBackend, gatewayCall } from './e2e-helpers.ts';
import { axeSerious, ensureConsoleBuilt, launchChromium, overflowX, screenshot } from './console-helpers.ts';

const CHUNKS = 'chunks/';
const h = useHarness();
let dataDir: string;
let vm: DemoVm;
let stack: Stack;
let catalogue: CatalogueClient;
let browser: Browser;
let refuseChunks = false;
const tokens: Record<string, string> = {};
let vmId: string;

/** A link of the main navigation. */
const nav = (page: Page, name: string) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true });

async function signedIn(user: string, baseUrl = stack.gatewayUrl, viewport = { width: 1280, height: 720 }): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport, baseURL: baseUrl });
  const page = await context.newPage();
  await page.goto('/');
  await page.getByLabel('API token').fill(tokens[user]!);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator(`[data-user="${user}"]`).waitFor({ state: 'attached' });
  return { context, page };
}

beforeAll(async () => {
  await ensureConsoleBuilt();
  dataDir = await h.tmpDir('cairn-e2e-console-');
  vm = await startDemoVm(join(dataDir, 'demo'), 'demo', 32 * 1024 * 1024);
  h.onClose(() => vm.stop());
  stack = await startStack({ dataDir, qemu: [{ qmpSocket: vm.qmpPath }], wrapBackend: (b) => faultyBackend(b, (key) => refuseChunks && key.startsWith(CHUNKS)) });
  h.onClose(() => stack.stop());
  catalogue = new CatalogueClient(stack.nc, { site: stack.site });
  const v = await waitFor(async () => (await catalogue.query('vm.list', {})).items.find((x) => x.name === 'demo'), { what: 'demo VM in the catalogue' });
  vmId = v.vmId;
  tokens['admin'] = stack.gatewayToken;
  for (const [user, roles] of [['admin2', ['administrator']], ['audrey', ['auditor']]] as const) {
    expect((await gatewayCall(stack.gatewayUrl, stack.gatewayToken, 'POST', '/v1/users', { userId: user, roles })).status).toBe(201);
    const t = await gatewayCall(stack.gatewayUrl, stack.gatewayToken, 'POST', '/v1/tokens', { userId: user, name: 'console' });
    tokens[user] = t.body['token'] as string;
  }
  browser = await launchChromium();
  h.onClose(() => browser.close());
}, 180_000);

afterAll(async () => { await browser?.close(); });

// Generous: a loaded machine runs a browser, QEMU and the whole stack here at once.
describe('web console (real stack, real QEMU, chromium)', { timeout: 240_000 }, () => {
  let admin: Page;
  let restorePointId: string;

  it('refuses a wrong token on the sign-in page, then signs in and shows the VM on the dashboard', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 720 }, baseURL: stack.gatewayUrl });
    admin = await context.newPage();
    await admin.goto('/');
    await admin.getByLabel('API token').fill('not-a-valid-token-at-all');
    await admin.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => admin.getByRole('alert').textContent(), { timeout: 30_000 }).toMatch(/not valid/);
    await admin.getByLabel('API token').fill(tokens['admin']!);
    await admin.getByRole('button', { name: 'Sign in' }).click();
    await admin.locator('[data-tile="vms"] [data-vm="demo"]').waitFor({ timeout: 30_000 });
    // Not the hub: the sites tile says where every site's health is seen; no copies, so no replication lag.
    const sites = admin.locator('[data-tile="sites"]');
    await sites.locator('[data-hub="no"]').waitFor({ timeout: 30_000 });
    expect(await sites.locator('[data-replication="none"]').count()).toBe(1);
    expect(await sites.getAttribute('href')).toBe('/sites');
    // The session is an HttpOnly cookie: the page's scripts cannot read it.
    expect(await admin.evaluate(() => document.cookie)).not.toMatch(/cairn_session/);
    const cookie = (await context.cookies()).find((c) => c.name === 'cairn_session')!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    await admin.locator('[data-feed-status="live"]').waitFor({ timeout: 30_000 });
  });

  it('starts a backup from the VM page, follows it to 100% without a reload, and shows the new restore point on the timeline', async () => {
    await nav(admin, 'VMs').click();
    await admin.getByRole('link', { name: 'demo' }).click();
    await admin.getByRole('heading', { name: 'demo', level: 1 }).waitFor();
    expect(await admin.locator('[data-restore-point]').count()).toBe(0);
    await admin.evaluate(() => { (window as unknown as { marker: number }).marker = 1; });
    await vm.write(20);
    await admin.locator('[data-action="backup"]').click();
    const current = admin.locator('.current-job');
    await current.waitFor();
    await admin.locator('.current-job progress[data-percent="100"]').waitFor({ timeout: 180_000 });
    await admin.locator('.current-job[data-state="completed"]').waitFor({ timeout: 60_000 });
    await admin.locator('[data-restore-point]').first().waitFor({ timeout: 30_000 });
    // Still the same document: nothing reloaded the page.
    expect(await admin.evaluate(() => (window as unknown as { marker?: number }).marker)).toBe(1);
    const jobId = await current.getAttribute('data-job');
    const job = await catalogue.query('job.get', { jobId: jobId! });
    expect(job.state).toBe('completed');
    restorePointId = job.restorePointId!;
    expect(await admin.locator(`[data-restore-point="${restorePointId}"]`).count()).toBe(1);
  });

  it('the dashboard counts a VM no active policy selects apart; a policy with a 1-minute RPO is made for it', async () => {
    await nav(admin, 'Dashboard').click();
    await admin.locator('[data-tile="vms"] [data-vm="demo"][data-rpo="none"]').waitFor({ timeout: 30_000 });
    expect(await admin.locator('[data-tile="vms"]').textContent()).toMatch(/0 of 0 within their RPO · 1 under no active policy/);
    // Judged later in this file (the newest backup has to grow older than 1 minute first).
    const created = await gatewayCall(stack.gatewayUrl, tokens['admin']!, 'POST', '/v1/policies', {
      name: 'tight', selector: { names: ['demo'] }, schedule: { cron: '0 3 * * *', timezone: 'UTC' }, retention: { daily: 1, weekly: 0, monthly: 0, yearly: 0, last: 1 },
      repository: 'default', keyRef: 'default', priority: 100, rpoMinutes: 1,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
  });

  it('restores the disk from the wizard', async () => {
    const target = join(dataDir, 'restores', 'console-restore.raw');
    await nav(admin, 'Restore').click();
    await admin.getByLabel('1. VM').selectOption(vmId);
    await admin.getByLabel('2. Restore point').selectOption(restorePointId);
    // The Files kind (a file browser) is offered too; the demo disk holds no file system, which
    // it says at once (no appliance is started for a disk without one).
    await admin.getByRole('radio', { name: /^Files/ }).check();
    await admin.getByRole('alert').filter({ hasText: /holds no partition table and no file system/ }).waitFor({ timeout: 60_000 });
    await admin.getByRole('radio', { name: /^One disk/ }).check();
    await admin.getByLabel('Target image file').fill(target);
    await admin.locator('[data-action="restore"]').click();
    await admin.locator('[data-restored]').waitFor({ timeout: 180_000 });
    expect((await stat(target)).size).toBe(32 * 1024 * 1024);
  });

  it('turns the dashboard\'s jobs tile red within 2 s of a JobFailed event', async () => {
    await nav(admin, 'Dashboard').click();
    const tile = admin.locator('[data-tile="jobs"]');
    await expect.poll(() => tile.getAttribute('data-status'), { timeout: 30_000 }).toBe('ok');
    // The page notes when the tile turns red (its own clock: the same machine's as the log's).
    await admin.evaluate(() => {
      const el = document.querySelector('[data-tile="jobs"]')!;
      const w = window as unknown as { redAt?: number };
      new MutationObserver(() => { if (el.getAttribute('data-status') === 'failed') w.redAt ??= Date.now(); }).observe(el, { attributes: true });
    });
    await vm.write(20);
    refuseChunks = true;
    try {
      const r = await gatewayCall(stack.gatewayUrl, tokens['admin']!, 'POST', '/v1/backups', { vmId });
      expect(r.status).toBe(202);
      const jobId = r.body['jobId'] as string;
      const failed = await waitFor(async () => {
        const j = await catalogue.query('job.get', { jobId }).catch(() => undefined);
        return j?.events.find((e) => e.type === 'JobFailed');
      }, { timeoutMs: 180_000, intervalMs: 200, what: 'JobFailed' });
      const redAt = await waitFor(() => admin.evaluate(() => (window as unknown as { redAt?: number }).redAt), { timeoutMs: 30_000, what: 'the tile to turn red' });
      const afterEvent = redAt - Date.parse(failed.time);
      console.info(`console e2e: the jobs tile turned red ${afterEvent} ms after the JobFailed event`);
      expect(afterEvent, `tile red ${afterEvent} ms after the JobFailed event`).toBeLessThan(2000);
    } finally {
      refuseChunks = false;
    }
  });

  it('an auditor sees the audit page and no backup button, restore or approve action', async () => {
    const { context, page } = await signedIn('audrey');
    try {
      await nav(page, 'Audit').click();
      await page.locator('tr[data-position]').first().waitFor({ timeout: 30_000 });
      // The chain the audit bridge keeps, verified through the gateway.
      await page.locator('[data-chain="ok"]').waitFor({ timeout: 60_000 });
      // A page at a time with the API's cursors: the next page goes on in log order, the previous one comes back.
      await page.getByLabel('Per page').selectOption('25');
      await expect.poll(() => page.locator('tr[data-position]').count(), { timeout: 30_000 }).toBe(25);
      const positions = () => page.locator('tr[data-position]').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-position'))));
      const first = await positions();
      await page.locator('[data-action="next-page"]').click();
      await page.locator('[data-page="2"]').waitFor();
      await expect.poll(async () => (await positions())[0], { timeout: 30_000 }).toBeGreaterThan(first.at(-1)!);
      const second = await positions();
      expect(second).toEqual([...second].sort((a, b) => a - b));
      await page.locator('[data-action="previous-page"]').click();
      await page.locator('[data-page="1"]').waitFor();
      await expect.poll(positions, { timeout: 30_000 }).toEqual(first);
      expect(await nav(page, 'Restore').count()).toBe(0);
      await page.goto(`/vms/${vmId}`);
      await page.getByRole('heading', { name: 'demo', level: 1 }).waitFor();
      await page.locator('[data-restore-point]').first().waitFor();
      expect(await page.locator('[data-action="backup"]').count()).toBe(0);
      expect(await page.locator('[data-action="request-deletion"]').count()).toBe(0);
    } finally {
      await context.close();
    }
  });

  it('signs in through a real OpenID Connect provider: the whole redirect flow in the browser', async () => {
    // The provider (`oidc-provider`, in process, its own login and consent pages) on a port known before the gateway starts.
    const idp: Server = createServer();
    await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
    h.onClose(() => new Promise<void>((resolve) => { idp.closeAllConnections(); idp.close(() => resolve()); }));
    const issuer = `http://127.0.0.1:${(idp.address() as { port: number }).port}`;
    const sso = await startGateway({
      nc: stack.nc, log: stack.log, site: stack.site, token: stack.gatewayToken, port: 0, logger: pino({ level: 'silent' }),
      oidc: { issuer, audience: 'cairn-console', jwksUrl: `${issuer}/jwks`, clientId: 'cairn-console' },
    });
    h.onClose(() => sso.close());
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    const provider = new Provider(issuer, {
      clients: [{ client_id: 'cairn-console', token_endpoint_auth_method: 'none', redirect_uris: [`${sso.url}/v1/session/oidc/callback`], grant_types: ['authorization_code'], response_types: ['code'] }],
      jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'console-e2e', alg: 'RS256', use: 'sig' }] },
      cookies: { keys: ['console-e2e-cookie-key-0123456789'] },
      ttl: { AccessToken: 600, AuthorizationCode: 60, Grant: 600, IdToken: 600, Interaction: 600, Session: 600 },
      // The roles claim in the ID token (the console's scope asks for `profile`).
      claims: { openid: ['sub'], profile: ['name', 'roles'] },
      conformIdTokenClaims: false,
      findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub, name: 'Olivia Operator', roles: ['operator'] }) }),
    });
    idp.on('request', provider.callback());

    const context = await browser.newContext({ viewport: { width: 1280, height: 720 }, baseURL: sso.url });
    const page = await context.newPage();
    try {
      await page.goto('/');
      // The sign-in page offers single sign-on (and is still accessible with the button).
      await page.locator('[data-action="sso"]').waitFor({ timeout: 30_000 });
      expect(await axeSerious(page)).toEqual([]);
      await screenshot(page, 'sign-in-sso-light');
      await page.locator('[data-action="sso"]').click();
      // At the provider: its login form, then its consent.
      await page.waitForURL((u) => u.origin === issuer, { timeout: 30_000 });
      await page.locator('input[name="login"]').fill('olivia');
      await page.locator('input[name="password"]').fill('any password');
      await page.getByRole('button', { name: 'Sign-in' }).click();
      await page.getByRole('button', { name: 'Continue' }).click();
      // Back at the console, signed in as the provider's user with the roles of its claim.
      await page.locator('[data-user="olivia"]').waitFor({ timeout: 60_000 });
      expect(new URL(page.url()).origin).toBe(sso.url);
      expect(await page.locator('[data-user="olivia"]').textContent()).toMatch(/\(operator\)/);
      await page.locator('[data-feed-status="live"]').waitFor({ timeout: 30_000 });
      const cookies = await context.cookies(sso.url);
      expect(cookies.find((c) => c.name === 'cairn_session')).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
      expect(cookies.find((c) => c.name === 'cairn_oidc')).toBeUndefined();
      // The operator may back up but not administer: no approve buttons, no deletion requests.
      await page.goto(`/vms/${vmId}`);
      await page.locator('[data-action="backup"]').waitFor({ timeout: 30_000 });
      expect(await page.locator('[data-action="request-deletion"]').count()).toBe(0);
      const signedIn = await waitFor(async () => {
        for await (const r of stack.log.readAll({ fromPosition: 0n })) if (r.event.type === 'SignedIn' && (r.event.data as { userId?: string }).userId === 'olivia') return r.event;
        return undefined;
      }, { timeoutMs: 30_000, what: 'SignedIn for olivia' });
      expect(signedIn.data).toMatchObject({ userId: 'olivia', method: 'oidc', issuer, roles: ['operator'] });
    } finally {
      await context.close();
      await sso.close();
    }
  });

  it('every page passes axe-core without serious or critical violations, in light and dark, and is screenshot', async () => {
    // A policy, so the policies page shows its preview.
    await admin.goto('/policies');
    await admin.getByRole('button', { name: 'New policy' }).click();
    await admin.getByLabel('Name', { exact: true }).fill('nightly');
    await admin.getByLabel('VM names (comma-separated)').fill('demo');
    await admin.getByLabel('Time zone').fill('Europe/Paris');
    await admin.locator('.preview .runs li').nth(4).waitFor();
    await admin.getByRole('button', { name: 'Save' }).click();
    await admin.locator('[data-policy="nightly"] .runs li').nth(4).waitFor({ timeout: 30_000 });

    const jobId = (await catalogue.query('job.list', { vmId, limit: 1 })).items[0]!.jobId;
    const pages: Array<[string, string, string]> = [
      ['dashboard', '/', '[data-tile="jobs"]'], ['vms', '/vms', 'tr[data-vm]'], ['vm', `/vms/${vmId}`, '.page h2'],
      ['jobs', '/jobs', 'tr[data-job]'], ['job', `/jobs/${jobId}`, '.phases li'], ['restore', `/restore?vm=${vmId}`, '.step'],
      ['policies', '/policies', '[data-policy]'], ['audit', '/audit', 'tr[data-position]'], ['approvals', '/approvals', '.page'], ['sites', '/sites', 'tr[data-site]'],
    ];
    const found: Record<string, unknown> = {};
    for (const theme of ['light', 'dark'] as const) {
      await admin.evaluate((t) => localStorage.setItem('cairn-theme', t), theme);
      for (const [name, path, ready] of pages) {
        await admin.goto(path);
        await admin.locator(ready).first().waitFor({ timeout: 30_000 });
        expect(await admin.evaluate(() => document.documentElement.dataset['theme'])).toBe(theme);
        const v = await axeSerious(admin);
        if (v.length) found[`${name}/${theme}`] = v;
        await screenshot(admin, `${name}-${theme}`);
      }
    }
    // The sign-in page too.
    for (const theme of ['light', 'dark'] as const) {
      const context = await browser.newContext({ viewport: { width: 1280, height: 720 }, baseURL: stack.gatewayUrl, colorScheme: theme });
      const page = await context.newPage();
      await page.goto('/');
      await page.getByLabel('API token').waitFor();
      const v = await axeSerious(page);
      if (v.length) found[`sign-in/${theme}`] = v;
      await screenshot(page, `sign-in-${theme}`);
      await context.close();
    }
    expect(found).toEqual({});
  });

  it('keeps its layout at phone width and is usable from the keyboard', async () => {
    const { context, page } = await signedIn('admin', stack.gatewayUrl, { width: 390, height: 844 });
    try {
      for (const path of ['/', '/vms', `/vms/${vmId}`, '/jobs', `/restore?vm=${vmId}`, '/instant', '/policies', '/audit']) {
        await page.goto(path);
        await page.locator('#page-title').waitFor();
        expect(await overflowX(page), `${path} scrolls sideways at phone width`).toBeLessThanOrEqual(0);
      }
      await screenshot(page, 'phone-audit-light');
      // Keyboard: the skip link first, the menu opens with Enter, links are reachable by Tab.
      await page.goto('/');
      await page.locator('#page-title').waitFor();
      await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('page-title');
      // A new page puts focus on its heading; the skip link is the first thing a Tab reaches on a fresh document.
      expect(await page.evaluate(() => document.activeElement?.id)).toBe('page-title');
      expect(await page.evaluate(() => document.querySelector('a[href], button, input, select')?.textContent)).toBe('Skip to content');
      await page.getByRole('link', { name: 'Skip to content' }).focus();
      expect(await page.getByRole('link', { name: 'Skip to content' }).evaluate((e) => e.getBoundingClientRect().left >= 0)).toBe(true);
      await page.getByRole('button', { name: 'Menu' }).focus();
      await page.keyboard.press('Enter');
      await nav(page, 'Jobs').focus();
      await page.keyboard.press('Enter');
      await page.locator('h1', { hasText: 'Jobs' }).waitFor();
      // Focus moves to the new heading once the page has rendered (an effect after the heading appears).
      await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('page-title');
    } finally {
      await context.close();
    }
  });

  it('the dashboard judges the VM against the shortest RPO of the policies that select it', async () => {
    const tile = admin.locator('[data-tile="vms"]');
    await nav(admin, 'Dashboard').click();
    // `tight` (1 minute) and `nightly` (no RPO of its own: a day between runs + 2 h) select demo; the shorter counts.
    await tile.locator('[data-vm="demo"][data-rpo="missed"]').waitFor({ timeout: 120_000 });
    expect(await tile.getAttribute('class')).toMatch(/\bbad\b/);
    expect(await tile.locator('[data-vm="demo"]').textContent()).toMatch(/RPO 1 min missed/);
    await admin.goto('/policies');
    await admin.locator('[data-policy="tight"] [data-rpo-minutes="1"]').waitFor({ timeout: 30_000 });
    await admin.locator('[data-policy="nightly"] [data-rpo-minutes="1560"]').waitFor();
    await admin.locator('[data-policy="tight"]').getByRole('button', { name: 'Pause' }).click();
    await admin.locator('[data-policy="tight"] .badge', { hasText: 'paused' }).waitFor({ timeout: 30_000 });
    // Paused, it no longer counts: nightly's 26 h does, and the VM is within it.
    await nav(admin, 'Dashboard').click();
    await tile.locator('[data-vm="demo"][data-rpo="within"]').waitFor({ timeout: 30_000 });
    expect(await tile.locator('[data-vm="demo"]').textContent()).toMatch(/RPO 26 h/);
    expect(await tile.getAttribute('class')).toMatch(/\bgood\b/);
  });

  it('the live feed resumes after a gateway restart and shows every event of the log once', async () => {
    // A gateway of our own on the stack's NATS and log, so it can be stopped and started again.
    let gateway: RunningGateway = await startGateway({ nc: stack.nc, log: stack.log, site: stack.site, token: stack.gatewayToken, port: 0, logger: pino({ level: 'silent' }) });
    const port = gateway.port;
    const { context, page } = await signedIn('admin', gateway.url);
    try {
      await page.locator('[data-feed-status="live"]').waitFor({ timeout: 30_000 });
      const make = async (userId: string) => expect((await gatewayCall(stack.gatewayUrl, tokens['admin']!, 'POST', '/v1/users', { userId, roles: ['auditor'] })).status).toBe(201);
      await make('feed-before');
      await page.locator('.activity li', { hasText: 'user-feed-before' }).waitFor({ timeout: 30_000 });

      const t0 = Date.now();
      await gateway.close();
      console.info(`console e2e: the gateway closed in ${Date.now() - t0} ms`);
      await page.locator('[data-feed-status="reconnecting"]').waitFor({ timeout: 30_000 });
      await make('feed-gap-1');
      await make('feed-gap-2');
      gateway = await startGateway({ nc: stack.nc, log: stack.log, site: stack.site, token: stack.gatewayToken, port, logger: pino({ level: 'silent' }) });
      h.onClose(() => gateway.close());
      await make('feed-after');
      await page.locator('.activity li', { hasText: 'user-feed-after' }).waitFor({ timeout: 90_000 }).catch(async (e: Error) => {
        const status = await page.locator('[data-feed-status]').getAttribute('data-feed-status');
        const shown = await page.locator('.activity li').allTextContents();
        throw new Error(`${e.message}\nfeed status ${status}; shown: ${shown.join(' | ')}`);
      });

      const shown = (await page.locator('.activity li[data-position]').evaluateAll((els) => els.map((e) => [e.getAttribute('data-position'), e.getAttribute('data-event-id')])))
        .reverse() as [string, string][];
      const first = BigInt(shown[0]![0]);
      const last = BigInt(shown.at(-1)![0]);
      const inLog: [string, string][] = [];
      for await (const r of stack.log.readAll({ fromPosition: first - 1n })) {
        if (r.position > last) break;
        inLog.push([r.position.toString(), r.event.id]);
      }
      expect(shown).toEqual(inLog);
      expect(shown.length).toBeGreaterThanOrEqual(4);
    } finally {
      await context.close();
      await gateway.close();
    }
  });

  it('a second administrator approves the deletion the first requested', async () => {
    await admin.goto(`/vms/${vmId}`);
    const point = admin.locator(`[data-restore-point="${restorePointId}"]`);
    await point.locator('[data-action="request-deletion"]').click();
    await point.getByRole('status').waitFor();
    // The requester cannot approve their own request.
    await nav(admin, 'Approvals').click();
    const own = admin.locator('[data-approval][data-status="pending"]').first();
    await own.waitFor({ timeout: 30_000 });
    expect(await own.locator('[data-action="approve"]').count()).toBe(0);

    const { context, page } = await signedIn('admin2');
    try {
      await nav(page, 'Approvals').click();
      const card = page.locator('[data-approval][data-status="pending"]').first();
      await card.locator('[data-action="approve"]').click();
      await waitFor(async () => {
        const p = await catalogue.query('restorePoint.get', { restorePointId }).catch(() => null);
        return p === null || p.expiredAt ? true : undefined;
      }, { timeoutMs: 60_000, what: 'the restore point deleted' });
      await admin.goto(`/vms/${vmId}`);
      await admin.getByRole('heading', { name: 'demo', level: 1 }).waitFor();
      await expect.poll(() => admin.locator(`[data-restore-point="${restorePointId}"]`).count(), { timeout: 30_000 }).toBe(0);
    } finally {
      await context.close();
    }
  });
});
