import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Command } from '@cairn/contracts';
import { RELAY_STATUS, relayRefusal } from './command-relay.controller.ts';

const command = (site: string, name = 'RequestBackup'): Command => ({
  id: randomUUID(), name, schemaVersion: 1, idempotencyKey: randomUUID(), actor: { kind: 'user', id: 'alice' }, site,
  time: new Date().toISOString(), payload: { vmId: 'vm-1', mode: 'auto' },
});

describe('relayRefusal (what the gateway checks before relaying a signed command unchanged)', () => {
  it('the hub relays to any site but itself; a site\'s gateway only to its own site', () => {
    expect(relayRefusal({ gatewaySite: 'hub', site: 'paris', command: command('paris'), roles: ['operator'] })).toBeUndefined();
    expect(relayRefusal({ gatewaySite: 'hub', site: 'hub', command: command('hub'), roles: ['administrator'] })).toMatchObject({ status: 404 });
    expect(relayRefusal({ gatewaySite: 'paris', site: 'paris', command: command('paris'), roles: ['operator'] })).toBeUndefined();
    expect(relayRefusal({ gatewaySite: 'paris', site: 'lyon', command: command('lyon'), roles: ['administrator'] })).toMatchObject({ status: 404, message: expect.stringMatching(/through the hub/) as unknown });
  });

  it('the envelope must name the site it goes to, be a known command, and the caller needs its permission here too', () => {
    expect(relayRefusal({ gatewaySite: 'hub', site: 'paris', command: command('lyon'), roles: ['administrator'] })).toMatchObject({ status: 400, message: expect.stringMatching(/addressed to site lyon/) as unknown });
    expect(relayRefusal({ gatewaySite: 'hub', site: 'paris', command: command('paris', 'NoSuchThing'), roles: ['administrator'] })).toMatchObject({ status: 400 });
    expect(relayRefusal({ gatewaySite: 'hub', site: 'paris', command: command('paris'), roles: ['auditor'] })).toMatchObject({ status: 403, message: expect.stringMatching(/needs permission backup/) as unknown });
    expect(relayRefusal({ gatewaySite: 'hub', site: 'paris', command: command('paris', 'DecideApproval'), roles: ['operator'] })).toMatchObject({ status: 403 });
  });

  it('a site\'s refusal of the signature is a 403 the console shows', () => {
    expect(RELAY_STATUS['unauthenticated']).toEqual([403, 'unauthenticated']);
  });
});
