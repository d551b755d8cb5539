// The operator key loaded for this tab (docs/console.md, "Operator key"): one at a time, held in
// this module's memory only — never in storage, a cookie or a request — and forgotten on sign-out,
// on "Forget key" and on reload (a new page has a new module). What the panel reads from the file
// is imported as a non-extractable CryptoKey (signing.ts) and the file's text is not kept.
import { useEffect, useState } from 'preact/hooks';
import { importOperatorKey, type OperatorKey } from './signing.ts';
import { ErrorBox } from './ui.tsx';

let current: OperatorKey | undefined;
const listeners = new Set<(k: OperatorKey | undefined) => void>();

function set(k: OperatorKey | undefined): void {
  current = k;
  for (const l of listeners) l(k);
}

export function operatorKey(): OperatorKey | undefined {
  return current;
}

export function forgetOperatorKey(): void {
  set(undefined);
}

export async function loadOperatorKey(file: Blob): Promise<OperatorKey> {
  const k = await importOperatorKey(await file.text());
  set(k);
  return k;
}

export function useOperatorKey(): OperatorKey | undefined {
  const [k, setK] = useState(current);
  useEffect(() => {
    listeners.add(setK);
    setK(current);
    return () => { listeners.delete(setK); };
  }, []);
  return k;
}

/**
 * Load or forget the operator key. `site`: the site the commands go to; a key made for another
 * site (its file says which) is named, since keys are per site and that site would refuse it.
 */
export function KeyPanel(props: { site?: string }) {
  const key = useOperatorKey();
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const onFile = async (e: Event) => {
    const input = e.target as HTMLInputElement;
    const file = input.files?.[0];
    input.value = '';
    if (!file) return;
    setBusy(true); setError(undefined);
    try {
      await loadOperatorKey(file);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const otherSite = key?.site && props.site && key.site !== props.site;
  return (
    <section class="card key-panel" aria-labelledby="key-title" data-key-loaded={key ? key.userId : ''}>
      <h2 id="key-title">Operator key</h2>
      {key ? (
        <>
          <p role="status" data-key-user={key.userId}>Signing as <strong>{key.userId}</strong>{key.site ? <> (a key of site <strong>{key.site}</strong>)</> : null}, key <code class="key-id">{key.publicKey.slice(0, 12)}…</code>. It stays in this tab's memory, cannot be read back, and is forgotten on sign-out or reload.</p>
          {otherSite ? <p class="error" role="alert">This key was made for site {key.site}; site {props.site} will refuse what it signs. Load your key of site {props.site}.</p> : null}
          <button type="button" data-action="forget-key" onClick={forgetOperatorKey}>Forget key</button>
        </>
      ) : (
        <>
          <p class="muted">Commands at a secure site are signed with your own operator key (the file <code>cairn user key add --out</code> or <code>cairn up</code> wrote). It is read here, kept only in this tab's memory as a key that cannot be read back, and never sent: the site checks the signature itself.</p>
          <label for="key-file">Operator key file</label>
          <input id="key-file" type="file" accept=".key,.json,application/json" disabled={busy} onChange={(e) => void onFile(e)} />
        </>
      )}
      <ErrorBox error={error} />
    </section>
  );
}
