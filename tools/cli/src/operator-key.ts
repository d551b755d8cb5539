// A person's operator key: an nkey (ed25519) whose public half is recorded for the user in the
// log (UserKeyAdded) and whose seed stays in one 0600 file, never in the log, a reply or a log
// line. The CLI signs what it sends over NATS with it (docs/security.md, signed commands).
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { createUser } from '@nats-io/nkeys';
import { signerFromSeed, type CommandSigner } from '@cairn/command-auth';

export interface OperatorKeyFile {
  readonly kind: 'cairn-operator-key';
  readonly userId: string;
  readonly site?: string;
  readonly publicKey: string;
  readonly seed: string;
}

export interface OperatorKey {
  readonly file: string;
  readonly userId: string;
  readonly publicKey: string;
  readonly signer: CommandSigner;
}

/** Makes a key and writes it to `file` (0600; an existing file is never overwritten). */
export async function createOperatorKey(file: string, userId: string, site?: string): Promise<OperatorKey> {
  const kp = createUser();
  const seed = new TextDecoder().decode(kp.getSeed());
  const content: OperatorKeyFile = { kind: 'cairn-operator-key', userId, ...(site ? { site } : {}), publicKey: kp.getPublicKey(), seed };
  await writeFile(file, JSON.stringify(content, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
  await chmod(file, 0o600);
  return { file, userId, publicKey: content.publicKey, signer: signerFromSeed(seed) };
}

export async function loadOperatorKey(file: string): Promise<OperatorKey> {
  let parsed: Partial<OperatorKeyFile>;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<OperatorKeyFile>;
  } catch (e) {
    throw new Error(`cannot read the operator key ${file}: ${(e as Error).message}`, { cause: e });
  }
  if (parsed.kind !== 'cairn-operator-key' || typeof parsed.seed !== 'string' || typeof parsed.userId !== 'string') {
    throw new Error(`${file} is not a Cairn operator key (made by \`cairn user key add\` or \`cairn up\`)`);
  }
  const signer = signerFromSeed(parsed.seed);
  return { file, userId: parsed.userId, publicKey: signer.publicKey, signer };
}
