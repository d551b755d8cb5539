// `cairn run scheduler --hub-credentials <dir>` / CAIRN_HUB_CREDENTIALS: the hub's id and the
// site's tags from the site's bundle, as `cairn up --hub-credentials` reads them.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hubIdOf } from '@cairn/nats-security';
import { CliError } from '../cli-error.ts';
import { schedulerHubOption } from './scheduler-hub.ts';

const CA = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';
let dir = '';
let bundle = '';
let other = '';

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-scheduler-hub-'));
  bundle = join(dir, 'paris');
  other = join(dir, 'lyon');
  for (const [d, site, tags] of [[bundle, 'paris', ['eu', 'prod']], [other, 'lyon', undefined]] as const) {
    await mkdir(d);
    await writeFile(join(d, 'leaf.json'), JSON.stringify({ version: 1, site, user: `leaf-${site}`, password: 'x', ...(tags ? { tags } : {}) }));
    await writeFile(join(d, 'hub-ca.pem'), CA);
  }
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('cairn run scheduler: the hub of the site\'s bundle', () => {
  it('from --hub-credentials, else CAIRN_HUB_CREDENTIALS: the hub\'s id (its CA) and the tags it gave the site', async () => {
    const hub = { id: hubIdOf(CA), tags: ['eu', 'prod'] };
    expect(await schedulerHubOption(bundle, {}, 'paris')).toEqual(hub);
    expect(await schedulerHubOption(undefined, { CAIRN_HUB_CREDENTIALS: bundle }, 'paris')).toEqual(hub);
    // The flag wins over the environment.
    expect(await schedulerHubOption(bundle, { CAIRN_HUB_CREDENTIALS: other }, 'paris')).toEqual(hub);
    expect(await schedulerHubOption(other, {}, 'lyon')).toEqual({ id: hubIdOf(CA), tags: [] });
  });

  it('none given (or an empty variable): no hub, the site takes no global policy', async () => {
    expect(await schedulerHubOption(undefined, {}, 'paris')).toBeUndefined();
    expect(await schedulerHubOption(undefined, { CAIRN_HUB_CREDENTIALS: '' }, 'paris')).toBeUndefined();
  });

  it('refuses another site\'s bundle, a directory without one, or an empty flag, saying which', async () => {
    await expect(schedulerHubOption(other, {}, 'paris')).rejects.toThrow(/--hub-credentials: the hub credentials in .* are site lyon's, not paris's/);
    await expect(schedulerHubOption(undefined, { CAIRN_HUB_CREDENTIALS: other }, 'paris')).rejects.toThrow(/^CAIRN_HUB_CREDENTIALS: .*site lyon's/);
    await expect(schedulerHubOption(join(dir, 'nowhere'), {}, 'paris')).rejects.toThrow(/--hub-credentials: no leaf credentials in .*cairn hub add-site/);
    await expect(schedulerHubOption(' ', {}, 'paris')).rejects.toBeInstanceOf(CliError);
  });
});
