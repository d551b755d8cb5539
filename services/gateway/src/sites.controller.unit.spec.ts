import { describe, expect, it } from 'vitest';
import { SitesController, type SiteHealthSource } from './sites.controller.ts';
import type { GatewayConfig } from './gateway.config.ts';
import { ProblemError } from './problem.ts';

const at = (site: string) => ({ site } as GatewayConfig);
const problemOf = async (p: Promise<unknown>) => p.then(() => { throw new Error('expected a problem'); }, (e: unknown) => {
  expect(e).toBeInstanceOf(ProblemError);
  const pe = e as ProblemError;
  return { status: pe.status, message: pe.message, body: pe.toProblem('/v1/sites/health') };
});

describe('GET /v1/sites/health (the hub relays its site health report)', () => {
  it('answers the hub\'s report as items with its time', async () => {
    const source: SiteHealthSource = { report: async () => ({ ok: true, generatedAt: '2026-12-06T05:00:00.000Z', sites: [{ site: 'a' }] }) };
    expect(await new SitesController(at('hub'), source).health()).toEqual({ generatedAt: '2026-12-06T05:00:00.000Z', items: [{ site: 'a' }] });
  });
  it('404 not_hub at a site\'s gateway, saying where the report is', async () => {
    const p = await problemOf(new SitesController(at('a'), undefined).health());
    expect(p.status).toBe(404);
    expect(p.body.code).toBe('not_hub');
    expect(p.message).toContain('site a, not the hub');
  });
  it('503 when the hub\'s watch does not answer, 502 when its report failed', async () => {
    const silent = await problemOf(new SitesController(at('hub'), { report: () => Promise.reject(Object.assign(new Error('no responders: \'cairn.hub.query.sites.health\''), { name: 'NoRespondersError' })) }).health());
    expect(silent).toMatchObject({ status: 503, message: expect.stringContaining('is not running (no responders)') });
    const slow = await problemOf(new SitesController(at('hub'), { report: () => Promise.reject(Object.assign(new Error('timeout'), { name: 'TimeoutError' })) }).health());
    expect(slow).toMatchObject({ status: 503, message: expect.stringContaining('did not answer in time') });
    const failed = await problemOf(new SitesController(at('hub'), { report: async () => ({ ok: false, error: 'catalogue unavailable' }) }).health());
    expect(failed).toMatchObject({ status: 502, message: expect.stringContaining('catalogue unavailable') });
  });
});

describe('GET /v1/global-policies (the hub relays its global policy report)', () => {
  const report = async () => ({ ok: true, generatedAt: '2026-12-06T05:00:00.000Z', sites: [] });
  it('answers the hub\'s global policies as items with its time', async () => {
    const source: SiteHealthSource = { report, globalPolicies: async () => ({ ok: true, generatedAt: '2026-12-06T05:00:01.000Z', policies: [{ name: 'g', drift: 1 }] }) };
    expect(await new SitesController(at('hub'), source).globalPolicies()).toEqual({ generatedAt: '2026-12-06T05:00:01.000Z', items: [{ name: 'g', drift: 1 }] });
  });
  it('404 not_hub at a site\'s gateway; 503 when the hub does not answer; 502 when its report failed', async () => {
    const site = await problemOf(new SitesController(at('b'), undefined).globalPolicies());
    expect(site).toMatchObject({ status: 404, body: { code: 'not_hub' }, message: expect.stringContaining('global policies are defined and watched at the hub') });
    const silent = await problemOf(new SitesController(at('hub'), { report, globalPolicies: () => Promise.reject(new Error('timeout')) }).globalPolicies());
    expect(silent).toMatchObject({ status: 503, message: expect.stringContaining('global policy push did not answer in time') });
    const failed = await problemOf(new SitesController(at('hub'), { report, globalPolicies: async () => ({ ok: false, error: 'no log' }) }).globalPolicies());
    expect(failed).toMatchObject({ status: 502, message: expect.stringContaining('no log') });
  });
});
