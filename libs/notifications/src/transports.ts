// Where a message goes: a webhook (HTTP POST, JSON), e-mail (SMTP through nodemailer, STARTTLS
// required unless the route says otherwise, auth from an environment variable) or syslog
// (RFC 5424 over TCP or TLS, octet-counted as the audit bridge frames it). `send` resolves
// once the receiver took the message (2xx, SMTP 250, flushed to the socket) and throws
// otherwise; the notifier retries.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import nodemailer from 'nodemailer';
import type { NotificationTarget } from '@cairn/contracts';
import { emailOf, webhookBodyOf, type Message } from './message.ts';

export interface NotificationTransport {
  send(message: Message): Promise<void>;
  close(): Promise<void>;
}

export class TransportRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransportRefusedError';
  }
}

export interface TransportOptions {
  /** Where `passwordEnv` is looked up (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly timeoutMs?: number;
}

export function createTransport(target: NotificationTarget, options: TransportOptions = {}): NotificationTransport {
  const timeoutMs = options.timeoutMs ?? 15_000;
  switch (target.kind) {
    case 'webhook': return webhookTransport(target.url, target.format ?? 'json', timeoutMs);
    case 'email': return emailTransport(target, options.env ?? process.env, timeoutMs);
    case 'syslog': return syslogTransport(target, timeoutMs);
  }
}

function webhookTransport(url: string, format: 'json' | 'slack' | 'teams', timeoutMs: number): NotificationTransport {
  return {
    async send(m) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': m.id, 'x-cairn-notification': m.id },
        body: JSON.stringify(webhookBodyOf(m, format)),
        signal: AbortSignal.timeout(timeoutMs),
      });
      const text = await res.text();
      if (res.status < 200 || res.status >= 300) throw new TransportRefusedError(`webhook ${new URL(url).host} answered ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`);
    },
    async close() { /* nothing held */ },
  };
}

type EmailTarget = Extract<NotificationTarget, { kind: 'email' }>;

function emailTransport(t: EmailTarget, env: Readonly<Record<string, string | undefined>>, timeoutMs: number): NotificationTransport {
  const security = t.security ?? 'starttls';
  let pass: string | undefined;
  if (t.user) {
    pass = t.passwordEnv ? env[t.passwordEnv] : undefined;
    if (pass === undefined) throw new TransportRefusedError(`the SMTP password of ${t.user} is not set: ${t.passwordEnv ?? '(no --password-env)'} is empty in the notifier's environment`);
  }
  const transporter = nodemailer.createTransport({
    host: t.host, port: t.port,
    secure: security === 'tls',
    requireTLS: security === 'starttls',
    ignoreTLS: security === 'none',
    ...(t.user ? { auth: { user: t.user, pass: pass! } } : {}),
    ...(t.caFile ? { tls: { ca: readFileSync(t.caFile, 'utf8') } } : {}),
    connectionTimeout: timeoutMs, greetingTimeout: timeoutMs, socketTimeout: timeoutMs,
  });
  return {
    async send(m) {
      await transporter.sendMail(emailOf(m, t.from, t.to));
    },
    async close() { transporter.close(); },
  };
}

type SyslogTarget = Extract<NotificationTarget, { kind: 'syslog' }>;

const SEVERITY = { info: 6, warning: 4, error: 3, critical: 2 } as const;
const sd = (v: string) => v.replace(/["\\\]]/g, (c) => `\\${c}`);

/** One RFC 5424 message: facility 1 (user), app `cairn-notifier`, structured data `[cairn@32473 …]`. */
export function syslogLineOf(m: Message, host = hostname()): string {
  const params = `id="${sd(m.id)}" site="${sd(m.site)}" route="${sd(m.routeId)}" severity="${m.severity}" count="${m.count}"`;
  const body = `${m.title}: ${m.text}`.replace(/\n/g, ' | ');
  return `<${8 + SEVERITY[m.severity]}>1 ${new Date().toISOString()} ${host.replace(/[^\x21-\x7e]/g, '_') || '-'} cairn-notifier - notification [cairn@32473 ${params}] ${body}`;
}

function syslogTransport(t: SyslogTarget, timeoutMs: number): NotificationTransport {
  const open = () => new Promise<Socket>((resolve, reject) => {
    const socket: Socket = t.tls
      ? tlsConnect({ host: t.host, port: t.port, ...(t.caFile ? { ca: readFileSync(t.caFile, 'utf8') } : {}) })
      : tcpConnect({ host: t.host, port: t.port });
    const timer = setTimeout(() => socket.destroy(new Error(`syslog ${t.host}:${t.port}: connect timed out`)), timeoutMs);
    socket.once(t.tls ? 'secureConnect' : 'connect', () => { clearTimeout(timer); resolve(socket); });
    socket.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
  return {
    async send(m) {
      // One connection per message: notifications are rare, and no half-dead socket eats one.
      const socket = await open();
      const body = Buffer.from(syslogLineOf(m), 'utf8');
      try {
        await new Promise<void>((resolve, reject) => socket.end(Buffer.concat([Buffer.from(`${body.length} `), body]), () => resolve()).once('error', reject));
      } finally {
        socket.destroy();
      }
    },
    async close() { /* nothing held */ },
  };
}
