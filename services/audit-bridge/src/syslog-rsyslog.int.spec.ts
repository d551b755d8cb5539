// A real rsyslog receives the CEF events of backup jobs over TCP and over TLS (gtls driver):
// every received line is RFC 5424 with Cairn's structured data and parses as CEF with the
// right fields, escaping included.
import { describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { createJetStreamEventLog } from '@cairn/eventlog';
import type { CairnEvent } from '@cairn/contracts';
import { useHarness, waitFor } from '@cairn/testing';
import { startAuditBridge } from './audit-bridge.service.ts';
import { parseCef } from './cef.format.ts';
import { startRsyslog } from './testing/rsyslog-server.ts';
import { NASTY_REASON, appendJob, jobEvents } from './testing/job-events.ts';

const RFC5424 = /^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) (\[cairn@32473 (?:[^\]\\]|\\.)*\]) (CEF:0\|.*)$/;

describe('audit bridge to rsyslog', () => {
  const h = useHarness();

  it('delivers every event of two jobs as RFC 5424 + CEF over TCP and TLS', async () => {
    const site = 'site-s';
    const server = await h.nats();
    const nc = await connect({ servers: server.url });
    h.onClose(() => nc.close());
    const log = await createJetStreamEventLog({ nc, site });
    const rsyslog = await startRsyslog(await h.tmpDir('cairn-rsyslog-'));
    h.onClose(() => rsyslog.stop());

    const events: CairnEvent[] = [...jobEvents(site, 'job-ok', 'completed'), ...jobEvents(site, 'job-bad', 'failed')];
    await appendJob(log, events.slice(0, 4));
    const bridge = await startAuditBridge({
      nc, site, version: '1.2|3',
      targets: [
        { kind: 'syslog', name: 'rsyslog-tcp', host: '127.0.0.1', port: rsyslog.tcpPort, hostname: 'cairn-host' },
        { kind: 'syslog', name: 'rsyslog-tls', host: '127.0.0.1', port: rsyslog.tlsPort, hostname: 'cairn-host', tls: { ca: rsyslog.certPem } },
      ],
    });
    h.onClose(() => bridge.close());
    await appendJob(log, events.slice(4)); // the rest arrive live

    const lines = await waitFor(async () => {
      const l = await rsyslog.lines();
      return l.length >= events.length * 2 ? l : undefined;
    }, { timeoutMs: 20_000, what: 'rsyslog to receive every event twice (TCP and TLS)' });
    expect(bridge.health().ok).toBe(true);

    const received = lines.map((line) => {
      const m = RFC5424.exec(line);
      if (!m) throw new Error(`not RFC 5424 with Cairn structured data: ${line}`);
      return { pri: Number(m[1]), time: m[2], host: m[3], app: m[4], msgid: m[6], sd: m[7]!, cef: parseCef(m[8]!) };
    });
    // Each event arrived over both transports (at least once; the id is the key).
    for (const e of events) {
      expect(received.filter((r) => r.cef.ext['externalId'] === e.id).length).toBeGreaterThanOrEqual(2);
    }
    for (const e of events) {
      const r = received.find((x) => x.cef.ext['externalId'] === e.id)!;
      expect(r.time).toBe(e.time);
      expect(r.host).toBe('cairn-host');
      expect(r.app).toBe('cairn');
      expect(r.msgid).toBe(e.type);
      expect(r.sd).toContain(`eventId="${e.id}"`);
      expect(r.sd).toContain(`correlationId="${e.correlationId}"`);
      const failure = e.type.endsWith('Failed');
      expect(r.pri).toBe(13 * 8 + (failure ? 3 : 6));
      expect(r.cef.header).toEqual(['CEF:0', 'Cairn', 'Cairn', '1.2|3', e.type, expect.any(String), failure ? '7' : '3']);
      expect(r.cef.ext).toMatchObject({
        rt: String(Date.parse(e.time)),
        act: e.type,
        suser: e.actor.id,
        cs1Label: 'correlationId',
        cs1: e.correlationId,
        cs2: e.streamId,
        cs3: site,
        externalId: e.id,
      });
      expect(JSON.parse(r.cef.ext['msg']!)).toEqual(e.data);
    }
    // Escaping survived the trip: the reason with `|`, `\`, `=`, `]`, `"` and a newline.
    const failed = received.find((r) => r.cef.ext['act'] === 'JobFailed')!;
    expect((JSON.parse(failed.cef.ext['msg']!) as { reason: string }).reason).toBe(NASTY_REASON);
    expect(received.find((r) => r.cef.ext['act'] === 'JobRequested')!.cef.ext['suser']).toBe('alice@example.com');
    const positions = received.map((r) => Number(r.cef.ext['cn1']));
    expect(Math.max(...positions)).toBe(events.length);

    // rsyslog down for a while: the bridge retries, and afterwards the new events arrived too.
    await rsyslog.stop();
    const later = jobEvents(site, 'job-later', 'completed');
    await appendJob(log, later);
    await waitFor(() => bridge.health().targets.every((t) => t.failures >= 2), { timeoutMs: 20_000, what: 'both syslog targets failing' });
    await new Promise((r) => setTimeout(r, 1500));
    await rsyslog.start();
    await waitFor(async () => {
      const ids = (await rsyslog.lines()).map((l) => parseCef(RFC5424.exec(l)![8]!).ext['externalId']);
      return later.every((e) => ids.filter((id) => id === e.id).length >= 2);
    }, { timeoutMs: 20_000, what: 'the events appended while rsyslog was down, over TCP and TLS' });
    await waitFor(() => bridge.health().ok, { what: 'healthy again' });
  }, 60_000);
});
