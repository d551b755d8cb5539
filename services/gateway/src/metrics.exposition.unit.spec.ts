import { describe, expect, it } from 'vitest';
import { escapeHelp, escapeLabelValue, formatValue, renderExposition } from './metrics.exposition.ts';

describe('Prometheus exposition', () => {
  it('writes HELP and TYPE before the samples, one family after the other, ending in a newline', () => {
    const text = renderExposition([
      { name: 'cairn_jobs', help: 'Jobs by state.', type: 'gauge', samples: [{ labels: { state: 'running' }, value: 2 }, { labels: { state: 'failed' }, value: 0 }] },
      { name: 'cairn_backup_bytes_read_total', help: 'Bytes read.', type: 'counter', samples: [{ value: 1234567890123 }] },
    ]);
    expect(text).toBe([
      '# HELP cairn_jobs Jobs by state.',
      '# TYPE cairn_jobs gauge',
      'cairn_jobs{state="running"} 2',
      'cairn_jobs{state="failed"} 0',
      '# HELP cairn_backup_bytes_read_total Bytes read.',
      '# TYPE cairn_backup_bytes_read_total counter',
      'cairn_backup_bytes_read_total 1234567890123',
      '',
    ].join('\n'));
  });

  it('escapes backslash, quote and newline in label values, and backslash and newline in HELP', () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    expect(escapeHelp('x\\y\n"z"')).toBe('x\\\\y\\n"z"');
    const text = renderExposition([{ name: 'm', help: 'line1\nline2', type: 'gauge', samples: [{ labels: { l: 'say "hi"\\\n' }, value: 1 }] }]);
    expect(text).toContain('# HELP m line1\\nline2\n');
    expect(text).toContain('m{l="say \\"hi\\"\\\\\\n"} 1\n');
    expect(text.split('\n')).toHaveLength(4);
  });

  it('spells the special values the way Prometheus reads them', () => {
    expect(formatValue(NaN)).toBe('NaN');
    expect(formatValue(Infinity)).toBe('+Inf');
    expect(formatValue(-Infinity)).toBe('-Inf');
    expect(formatValue(0.5)).toBe('0.5');
  });

  it('keeps HELP and TYPE for a family without samples', () => {
    expect(renderExposition([{ name: 'x', help: 'h', type: 'gauge', samples: [] }])).toBe('# HELP x h\n# TYPE x gauge\n');
  });

  it('refuses invalid metric and label names and duplicate families', () => {
    expect(() => renderExposition([{ name: '1bad', help: '', type: 'gauge', samples: [] }])).toThrow(/invalid metric name/);
    expect(() => renderExposition([{ name: 'ok', help: '', type: 'gauge', samples: [{ labels: { 'bad-label': 'v' }, value: 1 }] }])).toThrow(/invalid label name/);
    expect(() => renderExposition([{ name: 'ok', help: '', type: 'gauge', samples: [{ labels: { __name__: 'v' }, value: 1 }] }])).toThrow(/invalid label name/);
    const f = { name: 'dup', help: '', type: 'gauge' as const, samples: [] };
    expect(() => renderExposition([f, f])).toThrow(/given twice/);
  });
});
