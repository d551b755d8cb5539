// Runs the contract against a real KurrentDB: the one CAIRN_KURRENTDB_URL names (e.g.
// esdb://127.0.0.1:2113?tls=false), else one started in a container through testcontainers
// when it finds a container engine. Neither here (no Docker engine): skipped, saying so.
import { afterAll, beforeAll, describe } from 'vitest';
import { EventStoreDBClient, binaryEvent } from '@eventstore/db-client';
import { containerEngine, startKurrentDbContainer, type ContainerServer } from '@cairn/testing';
import { eventLogContract } from './testing/event-log.contract.ts';
import { KurrentDbEventLog } from './kurrentdb-event-log.adapter.ts';

const fromEnv = process.env.CAIRN_KURRENTDB_URL;
const engine = fromEnv ? undefined : await containerEngine();
const skip = !fromEnv && !engine?.available;
const why = engine && !engine.available ? engine.reason : '';
let sites = 0;
let url = fromEnv ?? '';
let container: ContainerServer | undefined;

describe.skipIf(skip)(`KurrentDB adapter${skip ? ` (skipped: set CAIRN_KURRENTDB_URL to a KurrentDB, or make a Docker engine reachable so that testcontainers starts one; ${why})` : ''}`, () => {
  beforeAll(async () => {
    if (fromEnv) return;
    container = await startKurrentDbContainer();
    url = container.url;
  }, 300_000);
  afterAll(async () => { await container?.stop(); });

  eventLogContract('KurrentDB', async () => {
    const site = `kdb-${Date.now().toString(36)}-${++sites}`;
    const client = EventStoreDBClient.connectionString(url);
    const other = EventStoreDBClient.connectionString(url);
    return {
      log: new KurrentDbEventLog({ client, site }),
      otherLog: new KurrentDbEventLog({ client: other, site }),
      writeRaw: async (streamId, payload) => {
        await client.appendToStream(streamId, binaryEvent({ type: 'Raw', data: payload }));
      },
    };
  });
});
