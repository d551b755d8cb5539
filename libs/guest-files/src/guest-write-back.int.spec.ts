// Write-back into a running guest through the real QEMU guest agent: the Cairn test guest
// (host kernel, busybox root) runs the host's qemu-ga on a virtio-serial port; its host side
// is a chardev socket our GuestAgentClient speaks to. One booted guest for the file.
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GuestAgentClient } from '@cairn/hypervisor';
import { bootGuest, buildGuestImage, createHarness } from '@cairn/testing';
import { GuestFileExistsError, readFromGuest, writeIntoGuest } from './guest-write-back.ts';

const h = createHarness();
let agent: GuestAgentClient;

beforeAll(async () => {
  const dir = await h.tmpDir('cairn-writeback-');
  const image = await buildGuestImage({ dir, hostname: 'wb1', guestAgent: true });
  const guest = await bootGuest({ image, dir: `${dir}/run`, guestAgent: true });
  h.onClose(() => guest.kill());
  await guest.waitForSerial(undefined, 240_000);
  agent = new GuestAgentClient(guest.agentSocket, { timeoutMs: 20_000 });
  for (let i = 0; i < 60; i++) {
    if (await agent.execute('guest-ping').then(() => true, () => false)) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error('the guest agent never answered');
}, 300_000);

afterAll(() => h.close(), 60_000);

describe('write-back through the guest agent (real qemu-ga in a running guest)', () => {
  it('writes a file into the guest; an existing file is kept unless overwrite is asked', async () => {
    const first = randomBytes(200 * 1024 + 7);
    expect(await writeIntoGuest(agent, '/tmp/restored report.bin', Readable.from([first]))).toEqual({ bytes: first.length });
    expect((await readFromGuest(agent, '/tmp/restored report.bin')).equals(first)).toBe(true);

    const second = Buffer.from('a newer version\n');
    await expect(writeIntoGuest(agent, '/tmp/restored report.bin', Readable.from([second]))).rejects.toBeInstanceOf(GuestFileExistsError);
    expect((await readFromGuest(agent, '/tmp/restored report.bin')).equals(first)).toBe(true);

    await writeIntoGuest(agent, '/tmp/restored report.bin', Readable.from([second]), { overwrite: true });
    expect((await readFromGuest(agent, '/tmp/restored report.bin')).equals(second)).toBe(true);
    await expect(writeIntoGuest(agent, 'relative/path', Readable.from([second]))).rejects.toThrow(/must be absolute/);
  }, 120_000);
});
