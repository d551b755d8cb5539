// The checks a test restore runs once the serial pattern appeared: the guest agent answering
// (`guest-ping`, its OS from `guest-get-osinfo`, optionally a command through `guest-exec`),
// guest TCP ports answering on the isolated network (user-mode networking with `restrict=on`:
// the guest has no route out; each port is reached through a loopback forward), and an
// operator's script run against the booted VM with a timeout. Each returns a result; none
// throws, and each waits on its condition until the run's deadline.
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { GuestAgentClient } from '@cairn/hypervisor';

export interface CheckResult { readonly check: string; readonly ok: boolean; readonly detail: string }

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
const clip = (s: string, n = 1000) => (s.length > n ? `…${s.slice(-n)}` : s);

/** A free loopback port for a forward (asked of the kernel, then released for QEMU to bind). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

interface OsInfo { 'pretty-name'?: string; name?: string; 'version-id'?: string; 'kernel-release'?: string }

/** `guest-ping` until it answers, then the OS the agent reports; then `exec` when asked (exit 0 passes). */
export async function agentChecks(socket: string, deadline: number, exec?: readonly string[]): Promise<CheckResult[]> {
  const agent = new GuestAgentClient(socket, { timeoutMs: 5000 });
  const started = Date.now();
  let lastError: string;
  for (;;) {
    try {
      await agent.execute('guest-ping');
      break;
    } catch (e) {
      lastError = (e as Error).message;
      if (Date.now() > deadline) {
        const failed = [{ check: 'agent:guest-ping', ok: false, detail: `the guest agent did not answer guest-ping before the deadline: ${clip(lastError, 500)}` }];
        return exec ? [...failed, { check: execName(exec), ok: false, detail: 'not run: the guest agent did not answer' }] : failed;
      }
      await pause(1000);
    }
  }
  const os = await agent.execute<OsInfo>('guest-get-osinfo').then(
    (o) => o['pretty-name'] ?? ([o.name, o['version-id']].filter(Boolean).join(' ') || `kernel ${o['kernel-release'] ?? 'unknown'}`),
    (e: Error) => `OS not reported (${clip(e.message, 200)})`);
  const results: CheckResult[] = [{ check: 'agent:guest-ping', ok: true, detail: `answered after ${Date.now() - started} ms; OS: ${os}` }];
  if (exec) results.push(await agentExec(agent, exec, deadline));
  return results;
}

const execName = (exec: readonly string[]) => `agent:exec:${exec.join(' ')}`.slice(0, 256);

async function agentExec(agent: GuestAgentClient, exec: readonly string[], deadline: number): Promise<CheckResult> {
  const check = execName(exec);
  try {
    const { pid } = await agent.execute<{ pid: number }>('guest-exec', { path: exec[0], arg: exec.slice(1), 'capture-output': true });
    for (;;) {
      const st = await agent.execute<{ exited: boolean; exitcode?: number; signal?: number; 'out-data'?: string; 'err-data'?: string }>('guest-exec-status', { pid });
      if (st.exited) {
        const out = Buffer.from(st['out-data'] ?? '', 'base64').toString('utf8') + Buffer.from(st['err-data'] ?? '', 'base64').toString('utf8');
        const ok = st.exitcode === 0;
        return { check, ok, detail: `${st.signal !== undefined ? `killed by signal ${st.signal}` : `exit ${st.exitcode}`}: ${clip(out.trim(), 800)}` };
      }
      if (Date.now() > deadline) return { check, ok: false, detail: 'still running at the deadline' };
      await pause(500);
    }
  } catch (e) {
    return { check, ok: false, detail: clip((e as Error).message, 800) };
  }
}

/**
 * One forwarded guest port. User-mode networking accepts on the host side before the guest
 * answers (and keeps a silent guest's connection open while it resends its SYN), so a port
 * answers when data comes or QEMU's own table (`info usernet`) shows that connection
 * ESTABLISHED with the guest; a refusal closes it at once.
 */
export async function tcpCheck(guestPort: number, hostPort: number, usernet: () => Promise<string>, deadline: number): Promise<CheckResult> {
  const check = `tcp:${guestPort}`;
  const started = Date.now();
  const established = new RegExp(`TCP\\[ESTABLISHED\\]\\s+\\d+\\s+127\\.0\\.0\\.1\\s+${hostPort}\\s+\\S+\\s+${guestPort}\\s`);
  let last: string;
  for (;;) {
    last = await probe(hostPort, async () => established.test(await usernet().catch(() => '')), 5000);
    if (last === 'open') return { check, ok: true, detail: `guest port ${guestPort} answered after ${Date.now() - started} ms (isolated network, loopback forward ${hostPort})` };
    if (Date.now() > deadline) return { check, ok: false, detail: `guest port ${guestPort} did not answer before the deadline (last: ${last})` };
    await pause(1000);
  }
}

function probe(port: number, isEstablished: () => Promise<boolean>, holdMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    let settled = false;
    const done = (why: string) => { if (settled) return; settled = true; s.destroy(); resolve(why); };
    s.once('connect', () => {
      void (async () => {
        for (const until = Date.now() + holdMs; !settled && Date.now() < until; await pause(200)) {
          if (await isEstablished()) done('open');
        }
        done('no answer from the guest (its SYN unanswered)');
      })();
    });
    s.once('data', () => done('open'));
    s.once('end', () => done('refused by the guest'));
    s.once('error', (e) => done(e.message));
  });
}

export interface ScriptContext {
  readonly testRestoreId: string;
  readonly restorePointId: string;
  readonly vmId: string;
  readonly qmpSocket: string;
  readonly serialLog: string;
  readonly agentSocket?: string;
  /** Guest port → loopback port that reaches it. */
  readonly forwards: ReadonlyMap<number, number>;
}

/** The operator's script with the VM's coordinates in its environment; exit 0 passes, killed at its timeout. */
export function scriptCheck(file: string, name: string, ctx: ScriptContext, timeoutMs: number): Promise<CheckResult> {
  const check = `script:${name}`;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    CAIRN_TEST_RESTORE_ID: ctx.testRestoreId,
    CAIRN_RESTORE_POINT: ctx.restorePointId,
    CAIRN_VM_ID: ctx.vmId,
    CAIRN_QMP_SOCKET: ctx.qmpSocket,
    CAIRN_SERIAL_LOG: ctx.serialLog,
    ...(ctx.agentSocket ? { CAIRN_AGENT_SOCKET: ctx.agentSocket } : {}),
    ...Object.fromEntries([...ctx.forwards].map(([g, h]) => [`CAIRN_TCP_${g}`, `127.0.0.1:${h}`])),
  };
  return new Promise((resolve) => {
    const started = Date.now();
    let out = '';
    const child = spawn(file, [], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const collect = (b: Buffer) => { out = (out + b.toString('utf8')).slice(-4000); };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let timedOut = false;
    // The script's whole process group goes at the timeout (a script may start its own children).
    const timer = setTimeout(() => { timedOut = true; try { process.kill(-child.pid!, 'SIGKILL'); } catch { child.kill('SIGKILL'); } }, timeoutMs);
    child.once('error', (e) => { clearTimeout(timer); resolve({ check, ok: false, detail: `could not run ${name}: ${e.message}` }); });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const took = Date.now() - started;
      if (timedOut) resolve({ check, ok: false, detail: `killed after its timeout of ${timeoutMs} ms: ${clip(out.trim(), 800)}` });
      else resolve({ check, ok: code === 0, detail: `${signal ? `killed by ${signal}` : `exit ${code}`} after ${took} ms: ${clip(out.trim(), 800)}` });
    });
  });
}
