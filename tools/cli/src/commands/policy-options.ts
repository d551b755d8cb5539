/** The options `cairn policy create|edit` (and `--bandwidth` elsewhere) parse, and the edit itself: pure, no I/O. */
import type { CommandPayloadMap } from '@cairn/contracts';
import type { PolicyView } from '@cairn/catalogue-client';
import { CliError, EXIT } from '../cli-error.ts';
import { rateBytesPerSec } from '../units.ts';

type Opts = Record<string, unknown>;

export function quiesceOption(v: unknown): 'required' | 'preferred' | 'off' {
  const mode = String(v ?? 'preferred');
  if (mode !== 'required' && mode !== 'preferred' && mode !== 'off') throw new CliError(`--quiesce must be required, preferred or off, not ${JSON.stringify(mode)}`, EXIT.usage);
  return mode;
}

/** --bandwidth: bytes per second, e.g. 20MiB; at least 1 KiB/s. */
export function rate(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  let n: number | undefined;
  try { n = rateBytesPerSec(v); } catch (e) { throw new CliError((e as Error).message, EXIT.usage); }
  if (n === undefined || n < 1024) throw new CliError(`--bandwidth must be at least 1KiB (per second), not ${JSON.stringify(v)}`, EXIT.usage);
  return n;
}

/** --test-restore: the policy's test-restore schedule as JSON (the scheduler checks it against the schema). */
export function testRestoreOption(v: unknown): NonNullable<CommandPayloadMap['CreatePolicy']['testRestore']> {
  let parsed: unknown;
  try { parsed = JSON.parse(String(v)); } catch (e) { throw new CliError(`--test-restore is JSON, e.g. '{"cron":"0 4 * * 0","serialPattern":"login:"}': ${(e as Error).message}`, EXIT.usage); }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new CliError('--test-restore is a JSON object with cron and serialPattern', EXIT.usage);
  return parsed as NonNullable<CommandPayloadMap['CreatePolicy']['testRestore']>;
}

export function parseWindow(v: string): { start: string; end: string } {
  const m = /^(\d{2}:\d{2})-(\d{2}:\d{2})$/.exec(v);
  if (!m) throw new CliError(`--window ${JSON.stringify(v)} must look like 22:00-06:00`, EXIT.usage);
  return { start: m[1]!, end: m[2]! };
}

/**
 * The policy `cairn policy edit` sends: the catalogue's view of it with only the options given
 * changed. Every policy field the view carries goes back unchanged (quiesce, file index, RPO,
 * immutability, ...); only the view's own bookkeeping (version, times) is left out.
 */
export function editedPolicy(p: PolicyView, o: Opts): CommandPayloadMap['UpdatePolicy']['policy'] {
  const num = (k: string, current: number) => {
    if (o[k] === undefined) return current;
    const v = Number(o[k]);
    if (!Number.isInteger(v) || v < 0) throw new CliError(`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} must be a whole number ≥ 0`, EXIT.usage);
    return v;
  };
  // Also not the hub's marks of a global policy (a local edit of one is refused by the site with the reason).
  const { version: _v, createdAt: _c, updatedAt: _u, deletedAt: _d, pausedAt: _p, site: _s, managedBy: _m, globalVersion: _g, globalPolicyId: _gi, ...fields } = p;
  const body: CommandPayloadMap['UpdatePolicy']['policy'] = { ...fields };
  if (o['name'] !== undefined) body.name = String(o['name']);
  if (o['vm'] || o['tag'] || o['hypervisor']) {
    body.selector = {
      ...(o['vm'] ? { names: o['vm'] as string[] } : {}),
      ...(o['tag'] ? { tags: o['tag'] as string[] } : {}),
      ...(o['hypervisor'] ? { hypervisor: String(o['hypervisor']) } : {}),
    };
  }
  const { window: oldWindow, ...scheduleRest } = p.schedule;
  const window = o['window'] === undefined ? oldWindow : String(o['window']) === 'none' ? undefined : parseWindow(String(o['window']));
  body.schedule = {
    ...scheduleRest,
    ...(o['cron'] ? { cron: String(o['cron']) } : {}),
    ...(o['timezone'] ? { timezone: String(o['timezone']) } : {}),
    ...(window ? { window } : {}),
  };
  body.retention = {
    last: num('keepLast', p.retention.last), daily: num('keepDaily', p.retention.daily), weekly: num('keepWeekly', p.retention.weekly),
    monthly: num('keepMonthly', p.retention.monthly), yearly: num('keepYearly', p.retention.yearly),
  };
  body.priority = num('priority', p.priority);
  if (o['bandwidth'] !== undefined) {
    if (String(o['bandwidth']) === 'none') delete body.bandwidthBytesPerSec;
    else body.bandwidthBytesPerSec = rate(String(o['bandwidth']))!;
  }
  if (o['quiesce'] !== undefined) body.quiesce = quiesceOption(o['quiesce']);
  if (o['testRestore'] !== undefined) {
    if (String(o['testRestore']) === 'none') delete body.testRestore;
    else body.testRestore = testRestoreOption(o['testRestore']);
  }
  if (o['rpo'] !== undefined) {
    if (String(o['rpo']) === 'none') delete body.rpoMinutes;
    else {
      const v = Number(o['rpo']);
      if (!Number.isInteger(v) || v < 1) throw new CliError(`--rpo must be a whole number of minutes ≥ 1, or none, not ${JSON.stringify(o['rpo'])}`, EXIT.usage);
      body.rpoMinutes = v;
    }
  }
  return body;
}
