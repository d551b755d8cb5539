import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError, cairnConfigJsonSchema, parseCairnConfig } from './cairn-config.ts';

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

  it('is published as docs/cairn.schema.json', () => {
    const published = JSON.parse(readFileSync(new URL('../../../../docs/cairn.schema.json', import.meta.url), 'utf8')) as unknown;
    expect(published).toEqual(JSON.parse(JSON.stringify(cairnConfigJsonSchema())));
  });
});
