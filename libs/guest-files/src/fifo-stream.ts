// A named pipe that guestfish writes into and this process reads as a stream, so a download
// never lands in a temporary file. Both ends are opened here without blocking (a reader that
// waits in the thread pool for a writer that never comes would stall all file I/O); our own
// write end is closed once guestfish is done, which gives the reader its end of file.
import { execFile } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Socket } from 'node:net';
import { promisify } from 'node:util';
import type { Readable } from 'node:stream';

const run = promisify(execFile);

export interface PipedOutput {
  readonly stream: Readable;
  /** Settles when the writer finished; rejects (and the stream errors) when it failed. */
  readonly done: Promise<void>;
}

/** Makes a FIFO at `path`, starts `writer(path)` and returns what it writes as a stream. */
export async function pipeFrom(path: string, writer: (fifo: string) => Promise<unknown>): Promise<PipedOutput> {
  await run('mkfifo', ['-m', '600', path]);
  const rfd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const wfd = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  const stream = new Socket({ fd: rfd, readable: true, writable: false });
  let wOpen = true;
  const closeWriter = () => { if (wOpen) { wOpen = false; closeSync(wfd); } };
  const done = writer(path).then(
    () => { closeWriter(); },
    (e: unknown) => { closeWriter(); stream.destroy(e as Error); throw e; },
  ).finally(() => rm(path, { force: true }));
  done.catch(() => undefined);
  stream.on('close', () => closeWriter());
  return { stream, done };
}
