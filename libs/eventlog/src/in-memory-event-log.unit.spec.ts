import { eventLogContract } from './testing/event-log.contract.ts';
import { InMemoryEventLog, InMemoryEventStore } from './in-memory-event-log.adapter.ts';

eventLogContract('in memory', async () => {
  const store = new InMemoryEventStore();
  return {
    log: new InMemoryEventLog('site-a', store),
    otherLog: new InMemoryEventLog('site-a', store),
    writeRaw: async (streamId, payload) => { store.appendRaw(streamId, payload); },
  };
});
