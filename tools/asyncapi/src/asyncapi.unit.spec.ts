import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { COMMAND_SCHEMAS, EVENT_SCHEMAS } from '@cairn/contracts';
import { buildAsyncApi, renderAsyncApi } from './asyncapi.ts';

describe('AsyncAPI document', () => {
  const doc = buildAsyncApi('1.2.3') as Record<string, Record<string, Record<string, unknown>>>;

  it('has a channel per event category and a message per event type and version', () => {
    expect(doc.asyncapi).toBe('3.0.0');
    expect(doc.channels!['events.job']!.address).toBe('cairn.{site}.evt.job.{streamId}');
    for (const type of Object.keys(EVENT_SCHEMAS)) expect(doc.components!.messages![type], type).toBeDefined();
    expect(doc.components!.messages!.JobFailed_v1).toBeDefined();
    const payload = (doc.components!.messages!.JobRequested as { payload: { properties: Record<string, unknown> } }).payload;
    expect(Object.keys(payload.properties)).toEqual(expect.arrayContaining(['id', 'type', 'schemaVersion', 'site', 'streamId', 'data']));
    expect(JSON.stringify(doc)).not.toContain('"$id"');
  });

  it('has a request/reply operation per registered command', () => {
    for (const [name, def] of Object.entries(COMMAND_SCHEMAS)) {
      const op = doc.operations![`${def.service}.${name}`] as { reply?: unknown; action: string };
      expect(op, name).toBeDefined();
      expect(op.action).toBe('receive');
      expect(op.reply).toBeDefined();
    }
  });

  it('renders the same YAML every time, and YAML that parses back to the document', () => {
    const text = renderAsyncApi('1.2.3');
    expect(renderAsyncApi('1.2.3')).toBe(text);
    expect(parse(text)).toEqual(JSON.parse(JSON.stringify(doc)));
  });
});
