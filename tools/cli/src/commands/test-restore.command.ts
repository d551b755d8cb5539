// `cairn test-restore <restore point>`: boot it in isolation on a data mover (no network,
// writes thrown away) and judge it by a serial-console pattern and, when asked, the guest agent,
// TCP ports on an isolated network and an operator script; follows `testrestore-<id>`
// until it passed (exit 0) or failed (exit 6, with the check, the reason and the console tail).
import type { Command } from 'commander';
import type { CommandPayloadMap, KnownEvent } from '@cairn/contracts';
import { CliError, EXIT } from '../cli-error.ts';
import { accepted, transportError } from '../cli-replies.ts';
import { output, table, withSession } from '../session.ts';
import { collectPages, pagingChoice, pagingOptions, printPage } from '../paging.ts';

interface Options {
  serial: string; timeout?: string; kernel?: string; initrd?: string; append?: string;
  agent?: boolean; agentExec?: string[]; tcp?: string[]; script?: string; scriptTimeout?: string;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function registerTestRestoreCommand(program: Command): void {
  const tr = program.command('test-restore')
    .argument('[restorePoint]', 'the restore point to boot')
    .description('boot a restore point in isolation (no network, writes thrown away) and judge it; exit 6 when it fails. `test-restore list`: the results so far')
    .option('--serial <text>', 'passes when this text appears on the serial console (required)')
    .option('--timeout <seconds>', 'how long the check waits (default 180)')
    .option('--kernel <file>', 'direct kernel boot (a guest without a boot loader): a file under /boot')
    .option('--initrd <file>', 'its initramfs, under /boot')
    .option('--append <cmdline>', 'its kernel command line')
    .option('--agent', 'the guest agent must answer guest-ping (and report its OS)')
    .option('--agent-exec <word>', 'a command run through the guest agent, one word per flag (implies --agent; passes on exit 0)', collect)
    .option('--tcp <port>', 'a guest TCP port that must answer on the isolated network (repeatable)', collect)
    .option('--script <name>', "an operator script from the data mover's <data>/test-restore-scripts/ (passes on exit 0)")
    .option('--script-timeout <seconds>', 'how long the script may run (default 120)')
    .action(async function (this: Command, restorePointId: string | undefined, o: Options) {
      if (!restorePointId) throw new CliError('name the restore point to boot (or `cairn test-restore list`)', EXIT.usage);
      if (!o.serial) throw new CliError("required option '--serial <text>' not specified", EXIT.usage);
      const timeoutSeconds = o.timeout === undefined ? undefined : Number(o.timeout);
      if (timeoutSeconds !== undefined && !(Number.isInteger(timeoutSeconds) && timeoutSeconds >= 10)) throw new CliError(`--timeout must be a whole number of seconds ≥ 10, not ${o.timeout}`, EXIT.usage);
      const tcpPorts = (o.tcp ?? []).map((p) => {
        const n = Number(p);
        if (!(Number.isInteger(n) && n >= 1 && n <= 65535)) throw new CliError(`--tcp must be a port 1–65535, not ${p}`, EXIT.usage);
        return n;
      });
      const scriptTimeoutSeconds = o.scriptTimeout === undefined ? undefined : Number(o.scriptTimeout);
      if (scriptTimeoutSeconds !== undefined && !(Number.isInteger(scriptTimeoutSeconds) && scriptTimeoutSeconds >= 1)) throw new CliError(`--script-timeout must be a whole number of seconds ≥ 1, not ${o.scriptTimeout}`, EXIT.usage);
      const payload: CommandPayloadMap['TestRestore'] = {
        restorePointId, serialPattern: o.serial,
        ...(timeoutSeconds ? { timeoutSeconds } : {}), ...(o.kernel ? { kernel: o.kernel } : {}), ...(o.initrd ? { initrd: o.initrd } : {}), ...(o.append ? { append: o.append } : {}),
        ...(o.agent || o.agentExec ? { agent: o.agentExec ? { exec: o.agentExec } : {} } : {}), ...(tcpPorts.length ? { tcpPorts } : {}),
        ...(o.script ? { script: o.script } : {}), ...(scriptTimeoutSeconds ? { scriptTimeoutSeconds } : {}),
      };
      await withSession(this, async (s) => {
        let started;
        try {
          started = accepted(await s.bus.send('data-mover', 'TestRestore', payload), 'test restore not started');
        } catch (e) { transportError(e); }
        // Loaded when the command runs (the CLI's start-up graph stays small: startup-graph.int.spec.ts).
        const { createJetStreamEventLog } = await import('@cairn/eventlog');
        const log = await createJetStreamEventLog({ nc: s.nc, site: s.site, createStream: false });
        const since = Date.now();
        try {
          for (;;) {
            let last: KnownEvent | undefined;
            for await (const r of log.readStream(`testrestore-${started.testRestoreId}`)) last = r.event;
            if (last?.type === 'TestRestorePassed' || last?.type === 'TestRestoreFailed') {
              if (!s.json) process.stderr.write('\n');
              const e = last;
              output(s, { outcome: e.type === 'TestRestorePassed' ? 'passed' : 'failed', ...e.data }, () => e.type === 'TestRestorePassed'
                ? `test restore ${started.testRestoreId} of ${restorePointId} passed (${e.data.results.map((x) => `${x.check}: ${x.detail}`).join('; ')}); screenshot ${e.data.screenshot?.file ?? 'none'}`
                : `test restore ${started.testRestoreId} of ${restorePointId} FAILED at ${e.data.check}: ${e.data.reason}\nscreenshot: ${e.data.screenshot?.file ?? 'none'}\n--- console tail ---\n${e.data.consoleTail}`);
              if (e.type === 'TestRestoreFailed') process.exitCode = EXIT.jobFailed;
              return;
            }
            if (!s.json) process.stderr.write(`\rtest restore ${started.testRestoreId}: booting in isolation on ${started.worker}, ${Math.round((Date.now() - since) / 1000)} s`);
            await new Promise((r) => setTimeout(r, 1000));
          }
        } finally {
          await log.close().catch(() => undefined);
        }
      });
    });

  pagingOptions(tr.command('list').description('test restores, newest first: outcome, when, how long, which checks (the catalogue)'), 'test restores')
    .option('--vm <id>', 'one VM').option('--restore-point <id>', 'one restore point').option('--status <status>', 'running, passed, failed or refused')
    .action(async function (this: Command, o: Record<string, unknown>) {
      const status = o['status'] === undefined ? undefined : String(o['status']);
      if (status !== undefined && !['running', 'passed', 'failed', 'refused'].includes(status)) throw new CliError(`--status is running, passed, failed or refused, not ${status}`, EXIT.usage);
      await withSession(this, async (s) => {
        const choice = pagingChoice(o);
        const page = await collectPages((p) => s.catalogue.query('testRestore.list', {
          ...(o['vm'] ? { vmId: String(o['vm']) } : {}), ...(o['restorePoint'] ? { restorePointId: String(o['restorePoint']) } : {}),
          ...(status ? { status: status as 'running' | 'passed' | 'failed' | 'refused' } : {}), ...p,
        }), choice);
        const { items } = page;
        printPage(s.json, page, choice, () => table(items.map((t) => ({
          testRestore: t.testRestoreId, restorePoint: t.restorePointId, vm: t.vmId, status: t.status, at: t.endedAt ?? t.startedAt,
          took: t.durationMs === null ? '' : `${Math.round(t.durationMs / 1000)} s`, checks: t.checks.join(' '), failed: t.failedCheck ?? (t.status === 'refused' ? t.reason ?? '' : ''),
        })), ['testRestore', 'restorePoint', 'vm', 'status', 'at', 'took', 'checks', 'failed']));
      });
    });
}
