// Builds the AsyncAPI 3.0 document of Cairn's messages from the contracts: one channel per
// event stream category with every event type (current and older versions) as messages,
// and one request/reply operation per command found in COMMAND_SCHEMAS (if any).
// Deterministic (no dates, sorted keys where order is not meaningful) so a check can diff it.
import * as contracts from '@cairn/contracts';
import { EVENT_SCHEMAS, envelopeSchema, type EventDefinition } from '@cairn/contracts';
import type { TSchema } from '@sinclair/typebox';
import { stringify } from 'yaml';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

/** A plain JSON Schema of a TypeBox schema: TypeBox's symbols and nested `$id`s removed. */
export function jsonSchema(schema: TSchema): JsonObject {
  const strip = (v: unknown): Json => {
    if (Array.isArray(v)) return v.map(strip);
    if (v && typeof v === 'object') {
      const out: JsonObject = {};
      for (const [k, x] of Object.entries(v)) {
        if (k === '$id' || x === undefined) continue;
        out[k] = strip(x);
      }
      return out;
    }
    return v as Json;
  };
  return strip(schema) as JsonObject;
}

/** What the generator needs of a command registry entry; anything else is ignored. */
interface CommandEntry {
  readonly description?: string;
  readonly service?: string;
  readonly latest?: TSchema;
  readonly result?: TSchema;
}

function commandRegistry(): Record<string, CommandEntry> {
  const registry = (contracts as Record<string, unknown>).COMMAND_SCHEMAS;
  return registry && typeof registry === 'object' ? (registry as Record<string, CommandEntry>) : {};
}

const EVENT_HEADERS: JsonObject = {
  type: 'object',
  properties: {
    'Nats-Msg-Id': { type: 'string', description: 'The event id: JetStream drops a repeat inside the duplicate window.' },
    'Cairn-Revision': { type: 'string', pattern: '^[0-9]+$', description: 'Revision of the event in its stream (0-based).' },
    'Cairn-Event-Type': { type: 'string', description: 'Same as `type` in the payload, for filtering without parsing.' },
    'Cairn-Schema-Version': { type: 'string', pattern: '^[0-9]+$' },
    traceparent: { type: 'string', description: 'W3C trace context of the writer, when it had one.' },
  },
};

export function buildAsyncApi(version: string): JsonObject {
  const defs = Object.values(EVENT_SCHEMAS) as EventDefinition[];
  const messages: JsonObject = {};
  const channels: JsonObject = {};
  const operations: JsonObject = {};

  const categories = [...new Set(defs.flatMap((d) => d.categories))].sort();
  for (const category of categories) {
    const inCategory = defs.filter((d) => d.categories.includes(category));
    const refs: JsonObject = {};
    for (const def of inCategory) {
      const versions = [...def.history.map((h) => h.data), def.latest];
      versions.forEach((data, i) => {
        const v = i + 1;
        const latest = v === versions.length;
        const key = latest ? def.type : `${def.type}_v${v}`;
        refs[key] = { $ref: `#/components/messages/${key}` };
        messages[key] = {
          name: def.type,
          title: latest ? `${def.type} (v${v})` : `${def.type} (v${v}, read and upcast to v${versions.length})`,
          summary: def.description,
          contentType: 'application/json',
          headers: EVENT_HEADERS,
          payload: jsonSchema(envelopeSchema(def.type, v, data)),
        };
      });
    }
    const channel = `events.${category}`;
    channels[channel] = {
      address: `cairn.{site}.evt.${category}.{streamId}`,
      title: `${category} events`,
      description: `Events of \`${category}-<id>\` streams, stored in the site's JetStream stream \`CAIRN_EVT_<SITE>\` (one subject per stream; the stream sequence is the global position).`,
      parameters: {
        site: { description: 'Site name (lowercase letters, digits, `-`).' },
        streamId: { description: `Stream id, \`${category}-<id>\`.` },
      },
      messages: refs,
    };
    operations[`receive.${channel}`] = {
      action: 'receive',
      title: `Follow ${category} events`,
      summary: 'Read through the event log port (readAll/subscribe) or a JetStream consumer on the subject filter.',
      channel: { $ref: `#/channels/${channel}` },
      messages: Object.keys(refs).map((k) => ({ $ref: `#/channels/${channel}/messages/${k}` })),
    };
  }

  const commands = commandRegistry();
  const names = Object.keys(commands).sort();
  if (names.length > 0) {
    channels['commands.reply'] = {
      address: null,
      title: 'Command replies',
      description: 'The requester\'s inbox (NATS request/reply): accepted with a result, or rejected with an error code.',
      messages: {},
    };
  }
  // The rejection shape from the contracts when they export it (CommandRejected).
  const rejectedSchema = (contracts as Record<string, unknown>).CommandRejected as TSchema | undefined;
  const rejected: JsonObject = rejectedSchema
    ? jsonSchema(rejectedSchema)
    : { type: 'object', required: ['accepted', 'error'], properties: { accepted: { const: false }, error: { type: 'object' } } };
  for (const name of names) {
    const entry = commands[name]!;
    const service = entry.service ?? 'unknown';
    const channel = `commands.${service}.${name}`;
    const requestKey = `${name}Request`;
    const replyKey = `${name}Reply`;
    const envelope = (contracts as Record<string, unknown>).CommandEnvelope as TSchema | undefined;
    const payload = entry.latest ? jsonSchema(entry.latest) : {};
    messages[requestKey] = {
      name,
      title: `${name} (request)`,
      summary: entry.description ?? name,
      contentType: 'application/json',
      payload: envelope
        ? { ...jsonSchema(envelope), properties: { ...(jsonSchema(envelope).properties as JsonObject), name: { const: name }, payload } }
        : payload,
    };
    const result = entry.result && (entry.result as { type?: unknown }).type !== 'undefined' ? jsonSchema(entry.result) : undefined;
    messages[replyKey] = {
      name: `${name}Reply`,
      title: `${name} (reply)`,
      contentType: 'application/json',
      payload: {
        oneOf: [
          { type: 'object', required: ['accepted'], properties: { accepted: { const: true }, ...(result ? { result } : {}) } },
          rejected,
        ],
      },
    };
    (channels['commands.reply'] as { messages: JsonObject }).messages[replyKey] = { $ref: `#/components/messages/${replyKey}` };
    channels[channel] = {
      address: `cairn.{site}.cmd.${service}.${name}`,
      title: `${name} command`,
      parameters: { site: { description: 'Site name.' } },
      messages: { [requestKey]: { $ref: `#/components/messages/${requestKey}` } },
    };
    operations[`${service}.${name}`] = {
      action: 'receive',
      title: name,
      summary: `${service} handles ${name}`,
      channel: { $ref: `#/channels/${channel}` },
      messages: [{ $ref: `#/channels/${channel}/messages/${requestKey}` }],
      reply: {
        channel: { $ref: '#/channels/commands.reply' },
        messages: [{ $ref: `#/channels/commands.reply/messages/${replyKey}` }],
      },
    };
  }

  return {
    asyncapi: '3.0.0',
    info: {
      title: 'Cairn messages',
      version,
      description: [
        'Events, commands and subjects of Cairn, generated from libs/contracts by tools/asyncapi',
        '(`npx tsx tools/asyncapi/generate.ts`; `npm run docs:check` fails when this file is stale).',
        'Every subject starts with `cairn.<site>` so sites joined through leaf nodes stay apart.',
        'Progress (`cairn.<site>.progress.<jobId>`) and work queues (`cairn.<site>.work.<queue>`) are described in docs/eventlog.md.',
      ].join(' '),
    },
    defaultContentType: 'application/json',
    servers: {
      site: {
        host: '127.0.0.1:4222',
        protocol: 'nats',
        description: 'The site\'s NATS server (JetStream enabled, one domain per site).',
      },
    },
    channels,
    operations,
    components: { messages },
  };
}

export function renderAsyncApi(version: string): string {
  const header = '# Generated by tools/asyncapi from libs/contracts. Do not edit: run `npx tsx tools/asyncapi/generate.ts`.\n';
  return header + stringify(buildAsyncApi(version), { lineWidth: 0, aliasDuplicateObjects: false });
}
