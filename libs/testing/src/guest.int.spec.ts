// The test guest boots under TCG, prints its marker, keeps writing and answers the guest agent.
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { bootGuest, buildGuestImage } from './guest.ts';
import { useHarness } from './harness.ts';

const h = useHarness();

async function agentCall(socket: string, command: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let buf = '';
    const t = setTimeout(() => { s.destroy(); reject(new Error("guest agent did not answer")); }, 5_000);
    s.on('error', reject);
    s.on('data', (d) => {
      buf += d.toString();
      const line = buf.split('\n').find((l) => l.includes('"return"'));
      if (line) { clearTimeout(t); s.end(); resolve(JSON.parse(line).return); }
    });
    s.write(`${JSON.stringify({ execute: command })}\n`);
  });
}

describe('test guest', () => {
  it('boots with the host kernel, prints its marker and answers guest-ping through qemu-ga', async () => {
    const dir = await h.tmpDir('cairn-guest-');
    const image = await buildGuestImage({ dir, hostname: 'g1', workload: true, guestAgent: true });
    const guest = await bootGuest({ image, dir: `${dir}/run`, guestAgent: true });
    h.onClose(() => guest.kill());
    await guest.waitForSerial();
    let answered: unknown;
    for (let i = 0; i < 20 && answered === undefined; i++) {
      answered = await agentCall(guest.agentSocket, 'guest-ping').catch(() => undefined);
      if (answered === undefined) await new Promise((r) => setTimeout(r, 1_000));
    }
    expect(answered).toEqual({});
  }, 300_000);
});
