import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, cairnConfigJsonSchema, configRoutes, parseCairnConfig, rateBytesPerSec } from './cairn-config.ts';

const problems = (text: string) => {
  try {
    parseCairnConfig(text);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.line}:${p.path}: ${p.message}`);
    throw e;
  }
  return [];
};

describe('cairn.yaml', () => {
  it('reads SIEM targets, with ${env:…} for secrets', () => {
    process.env['CAIRN_TEST_HEC_TOKEN'] = 's3cret';
    const c = parseCairnConfig([
      'site: paris',
      'audit:',
      '  targets:',
      '    - { kind: syslog, name: siem, host: 127.0.0.1, port: 6514 }',
      '    - kind: hec',
      '      name: splunk',
      '      url: https://splunk.example:8088',
      '      token: ${env:CAIRN_TEST_HEC_TOKEN}',
    ].join('\n'));
    expect(c.site).toBe('paris');
    expect(c.audit?.targets?.[1]).toMatchObject({ kind: 'hec', token: 's3cret' });
  });

  it('names the line of each mistake', () => {
    expect(problems([
      'site: paris',
      'audit:',
      '  targets:',
      '    - kind: syslog',
      '      name: siem',
      '      host: 127.0.0.1',
      '      port: seventy',
    ].join('\n'))[0]).toMatch(/^7:\/audit\/targets\/0/);
    expect(problems('site: paris\ncolour: blue\n')[0]).toMatch(/^2:/);
    expect(problems('audit:\n  targets:\n    - kind: hec\n      name: s\n      url: https://x\n      token: ${env:CAIRN_TEST_UNSET_VAR}\n'))
      .toEqual(['6:/audit/targets/0/token: environment variable CAIRN_TEST_UNSET_VAR is not set']);
    expect(problems('site: [unclosed\n')[0]).toMatch(/^\d+:: /);
  });

  it('reads bandwidth limits, concurrency and policy defaults, and names the line of a wrong one', () => {
    const c = parseCairnConfig([
      'bandwidth:',
      '  hostBytesPerSec: 20MiB',
      '  siteBytesPerSec: 104857600',
      'concurrency:',
      '  maxJobsPerHost: 3',
      '  maxJobsPerRepository: 5',
      'policyDefaults:',
      '  window: { start: "22:00", end: "06:00" }',
      '  retention: { last: 3, daily: 14 }',
      '  bandwidth: 512KiB/s',
    ].join('\n'));
    expect(rateBytesPerSec(c.bandwidth?.hostBytesPerSec)).toBe(20 * 1024 * 1024);
    expect(rateBytesPerSec(c.bandwidth?.siteBytesPerSec)).toBe(104857600);
    expect(rateBytesPerSec(c.policyDefaults?.bandwidth)).toBe(512 * 1024);
    expect(c.concurrency?.maxJobsPerHost).toBe(3);
    expect(c.concurrency?.maxJobsPerRepository).toBe(5);
    expect(c.policyDefaults?.window).toEqual({ start: '22:00', end: '06:00' });
    expect(problems('concurrency:\n  maxJobsPerHost: 0\n')[0]).toMatch(/^2:\/concurrency\/maxJobsPerHost/);
    expect(problems('concurrency:\n  maxJobsPerHost: 2\n  maxJobsPerRepository: many\n')[0]).toMatch(/^3:\/concurrency\/maxJobsPerRepository/);
    expect(problems('bandwidth:\n  hostBytesPerSec: fast\n')[0]).toMatch(/^2:\/bandwidth\/hostBytesPerSec/);
    expect(problems('policyDefaults:\n  window: { start: "25:00", end: "06:00" }\n')[0]).toMatch(/^2:\/policyDefaults\/window\/start/);
  });

  it('is published as docs/cairn.schema.json', () => {
    const published = JSON.parse(readFileSync(new URL('../../../../docs/cairn.schema.json', import.meta.url), 'utf8')) as unknown;
    expect(published).toEqual(JSON.parse(JSON.stringify(cairnConfigJsonSchema())));
  });

  it('declares notification routes (name = id), names the line of a bad target and of a second route with one name', () => {
    const c = parseCairnConfig([
      'notifications:',
      '  routes:',
      '    - name: ops-hook',
      '      target: { kind: webhook, url: "https://hooks.example/x", format: slack }',
      '      match: { kinds: [job-failed, rpo-missed] }',
      '    - name: ops-mail',
      '      target: { kind: email, host: smtp.example, port: 587, from: cairn@example.com, to: [ops@example.com], passwordEnv: SMTP_PASSWORD }',
      '      digest: { intervalMinutes: 30 }',
    ].join('\n'));
    expect(configRoutes(c)).toEqual([
      { routeId: 'ops-hook', name: 'ops-hook', match: { kinds: ['job-failed', 'rpo-missed'] }, target: { kind: 'webhook', url: 'https://hooks.example/x', format: 'slack' } },
      { routeId: 'ops-mail', name: 'ops-mail', match: {}, target: { kind: 'email', host: 'smtp.example', port: 587, from: 'cairn@example.com', to: ['ops@example.com'], passwordEnv: 'SMTP_PASSWORD' }, digest: { intervalMinutes: 30 } },
    ]);
    expect(problems('notifications:\n  routes:\n    - name: x\n      target: { kind: pager, url: "https://p" }\n')).toEqual([expect.stringMatching(/^4:\/notifications\/routes\/0\/target\/kind: kind must be one of webhook, email, syslog/)]);
    expect(problems('notifications:\n  routes:\n    - { name: a, target: { kind: syslog, host: h, port: 514 } }\n    - { name: a, target: { kind: syslog, host: h, port: 515 } }\n')).toEqual(['4:/notifications/routes/1/name: a second route named a']);
  });
});
