// Sign-in with an API token (or an OIDC token where the gateway has a provider): the gateway
// keeps it in an HttpOnly cookie; the page never stores it.
import { useEffect, useState } from 'preact/hooks';
import type { JSX } from 'preact';
import { api, post, type WhoAmI } from '../api.ts';

export function SignIn(props: { onSignedIn: (me: WhoAmI) => void; toggle: JSX.Element }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const [sso, setSso] = useState<{ issuer: string } | null>(null);
  useEffect(() => {
    api<{ oidc: { issuer: string } | null }>('/v1/session/options').then((o) => setSso(o.oidc), () => undefined);
  }, []);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await post<WhoAmI>('/v1/session', { token: token.trim() });
      setToken('');
      // The session's answer names the caller; whoami also says what the site requires (signaturesRequired).
      props.onSignedIn(await api<WhoAmI>('/v1/whoami'));
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="center sign-in">
      <form class="card" onSubmit={(e) => void submit(e)} aria-labelledby="page-title">
        <h1 id="page-title">Sign in to Cairn</h1>
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autoComplete="off" required minLength={16} value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)} aria-describedby="token-help" />
        <p id="token-help" class="muted">An API token (<code>cairn token create</code>; <code>cairn up</code> writes the administrator's to <code>secrets/api.token</code>), or an OIDC token where the gateway has a provider.</p>
        {error ? <p class="error" role="alert">{error}</p> : null}
        <div class="row">
          <button type="submit" class="primary" disabled={busy}>{busy ? 'Signing in…' : 'Sign in'}</button>
          {props.toggle}
        </div>
        {sso ? <p><a class="button" href="/v1/session/oidc" data-action="sso">Sign in with single sign-on</a> <span class="muted">({sso.issuer})</span></p> : null}
      </form>
    </main>
  );
}
