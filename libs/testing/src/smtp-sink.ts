// A real SMTP server for tests (npm smtp-server) on a loopback port: STARTTLS with a
// certificate made for the test (the client must trust `caFile`), AUTH PLAIN/LOGIN with one
// user, every accepted message parsed (mailparser) and kept.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SMTPServer } from 'smtp-server';
import { simpleParser } from 'mailparser';

const run = promisify(execFile);

export interface ReceivedMail {
  readonly from: string;
  readonly to: readonly string[];
  readonly subject: string;
  readonly text: string;
  readonly messageId: string;
  readonly headers: ReadonlyMap<string, unknown>;
  /** Whether the session had upgraded to TLS and authenticated when the message came. */
  readonly secure: boolean;
  readonly user: string | undefined;
}

export interface SmtpSink {
  readonly host: string;
  readonly port: number;
  /** PEM of the (self-signed) certificate the server presents on STARTTLS. */
  readonly caFile: string;
  readonly user: string;
  readonly password: string;
  readonly mails: ReceivedMail[];
  stop(): Promise<void>;
}

export async function startSmtpSink(dir: string, options: { user?: string; password?: string } = {}): Promise<SmtpSink> {
  const cert = join(dir, 'smtp-cert.pem');
  const key = join(dir, 'smtp-key.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']);
  const user = options.user ?? 'cairn';
  const password = options.password ?? 'mail-secret';
  const mails: ReceivedMail[] = [];
  const server = new SMTPServer({
    key: await readFile(key), cert: await readFile(cert),
    authMethods: ['PLAIN', 'LOGIN'],
    // No AUTH before STARTTLS (smtp-server's default), and none without it.
    authOptional: false,
    logger: false,
    onAuth(auth, _session, callback) {
      if (auth.username === user && auth.password === password) callback(null, { user });
      else callback(new Error('Invalid username or password'));
    },
    onData(stream, session, callback) {
      simpleParser(stream).then((m) => {
        const to = Array.isArray(m.to) ? m.to.flatMap((a) => a.value) : m.to?.value ?? [];
        mails.push({
          from: m.from?.value[0]?.address ?? '', to: to.map((a) => a.address ?? ''), subject: m.subject ?? '',
          text: m.text ?? '', messageId: m.messageId ?? '', headers: m.headers,
          secure: session.secure, user: typeof session.user === 'string' ? session.user : undefined,
        });
        callback();
      }, (e: Error) => callback(e));
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.server.address();
      if (typeof addr === 'object' && addr) resolve(addr.port);
      else reject(new Error('no port'));
    });
  });
  return {
    host: '127.0.0.1', port, caFile: cert, user, password, mails,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
