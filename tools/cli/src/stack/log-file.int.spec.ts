// A log file that cannot be written (/dev/full answers every write with ENOSPC) degrades
// logging and says so; the process goes on.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { waitFor } from '@cairn/testing';
import { flushLogFile, logFileDestination } from './log-file.ts';

describe('the stack log file on a full disk', () => {
  it('reports ENOSPC once, keeps the process alive, and does not hang in the flush at shutdown or exit', async () => {
    const said: string[] = [];
    const destination = logFileDestination('/dev/full', (l) => said.push(l));
    const logger = pino({ level: 'info' }, destination);
    for (let i = 0; i < 2000; i++) logger.info({ i, pad: 'x'.repeat(200) }, 'a line the disk has no room for');
    await waitFor(() => said.length > 0, { what: 'the full disk reported' });
    for (let i = 0; i < 2000; i++) logger.info({ i }, 'more lines');
    await new Promise((r) => setTimeout(r, 200));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/cannot write \/dev\/full \(ENOSPC\); the stack keeps running/);
    flushLogFile(destination);
    destination.destroy();
  });
});
