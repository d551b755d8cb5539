// Runs the contract against a real KurrentDB/EventStoreDB when CAIRN_KURRENTDB_URL is set
// (e.g. esdb://127.0.0.1:2113?tls=false). There is no Docker engine here to start one.
import { describe } from 'vitest';
import { EventStoreDBClient, binaryEvent } from '@eventstore/db-client';
import { eventLogContract } from './testing/event-log.contract.ts';
import { KurrentDbEventLog } from './kurrentdb-event-log.adapter.ts';

const url = process.env.CAIRN_KURRENTDB_URL;
let sites = 0;

describe.skipIf(!url)('KurrentDB adapter (skipped: needs CAIRN_KURRENTDB_URL or a Docker engine)', () => {
  eventLogContract('KurrentDB', async () => {
    const site = `kdb-${Date.now().toString(36)}-${++sites}`;
    const client = EventStoreDBClient.connectionString(url!);
    const other = EventStoreDBClient.connectionString(url!);
    return {
      log: new KurrentDbEventLog({ client, site }),
      otherLog: new KurrentDbEventLog({ client: other, site }),
      writeRaw: async (streamId, payload) => {
        await client.appendToStream(streamId, binaryEvent({ type: 'Raw', data: payload }));
      },
    };
  });
});
