// The console's frame: sign-in when there is no session, else the navigation (only the pages
// the caller's roles may use), the live-feed indicator, the theme switch and the routed page.
import { useEffect, useState } from 'preact/hooks';
import { LocationProvider, Router, Route, useLocation } from 'preact-iso';
import { useQueryClient } from '@tanstack/preact-query';
import { api, ApiError, post, type WhoAmI } from './api.ts';
import { feed, useFeed } from './live.ts';
import { SessionProvider, operationsOf, useSession } from './session.tsx';
import { SignIn } from './pages/sign-in.tsx';
import { Dashboard } from './pages/dashboard.tsx';
import { VmsPage, VmPage } from './pages/vms.tsx';
import { JobsPage, JobPage } from './pages/jobs.tsx';
import { RestoreWizard } from './pages/restore.tsx';
import { InstantPage } from './pages/instant.tsx';
import { PoliciesPage } from './pages/policies.tsx';
import { AuditPage } from './pages/audit.tsx';
import { ApprovalsPage } from './pages/approvals.tsx';
import { SitesPage } from './pages/sites.tsx';
import { HubPage } from './pages/hub.tsx';
import { forgetOperatorKey } from './keyring.tsx';
import { useHealth } from './queries.ts';
import { HUB_SITE } from './site-health.ts';

type Theme = 'light' | 'dark';
function initialTheme(): Theme {
  const saved = localStorage.getItem('cairn-theme');
  if (saved === 'light' || saved === 'dark') return saved;
  return matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

export function App() {
  const [theme, setTheme] = useState<Theme>(initialTheme);
  const [me, setMe] = useState<WhoAmI | null | undefined>(undefined);
  const [operations, setOperations] = useState<Set<string>>(new Set());
  const [error, setError] = useState<string | undefined>();

  useEffect(() => {
    document.documentElement.dataset['theme'] = theme;
    localStorage.setItem('cairn-theme', theme);
  }, [theme]);

  useEffect(() => {
    api<WhoAmI>('/v1/whoami').then(setMe, (e: unknown) => {
      if (e instanceof ApiError && e.status === 401) setMe(null);
      else setError((e as Error).message);
    });
    api<{ paths?: Record<string, Record<string, { operationId?: string }>> }>('/openapi.json').then((d) => setOperations(operationsOf(d)), () => undefined);
  }, []);

  useEffect(() => {
    if (!me) return;
    feed.start();
    return () => feed.stop();
  }, [me]);

  const toggle = (
    <button type="button" class="theme-toggle" onClick={() => setTheme(theme === 'dark' ? 'light' : 'dark')} aria-pressed={theme === 'dark'}>
      {theme === 'dark' ? 'Light theme' : 'Dark theme'}
    </button>
  );
  if (error) return <main class="center"><p class="error" role="alert">The gateway did not answer: {error}</p></main>;
  if (me === undefined) return <main class="center"><p role="status">Loading…</p></main>;
  if (me === null) return <SignIn onSignedIn={setMe} toggle={toggle} />;
  return (
    <SessionProvider me={me} operations={operations}>
      <LocationProvider>
        <Shell toggle={toggle} onSignedOut={() => setMe(null)} />
      </LocationProvider>
    </SessionProvider>
  );
}

const NAV: ReadonlyArray<{ href: string; label: string; show?: (s: ReturnType<typeof useSession>, atHub: boolean) => boolean }> = [
  { href: '/', label: 'Dashboard' },
  { href: '/vms', label: 'VMs' },
  { href: '/jobs', label: 'Jobs' },
  { href: '/restore', label: 'Restore', show: (s) => s.can('restore') },
  { href: '/instant', label: 'Instant recoveries', show: (s) => s.has('listInstantRecoveries') },
  { href: '/policies', label: 'Policies' },
  { href: '/audit', label: 'Audit' },
  { href: '/approvals', label: 'Approvals' },
  { href: '/sites', label: 'Sites' },
  { href: '/hub', label: 'Run a site', show: (_s, atHub) => atHub },
];

function Shell(props: { toggle: preact.JSX.Element; onSignedOut: () => void }) {
  const session = useSession();
  const live = useFeed();
  const { path } = useLocation();
  const queries = useQueryClient();
  const [menuOpen, setMenuOpen] = useState(false);
  const atHub = useHealth().data?.site === HUB_SITE;

  // A new page: focus its heading, so keyboard and screen-reader users land on it.
  useEffect(() => {
    setMenuOpen(false);
    requestAnimationFrame(() => document.getElementById('page-title')?.focus({ preventScroll: true }));
  }, [path]);

  const signOut = async () => {
    forgetOperatorKey();
    feed.stop();
    await post('/v1/session/end').catch(() => undefined);
    queries.clear();
    props.onSignedOut();
  };
  const current = (href: string) => (href === '/' ? path === '/' : path === href || path.startsWith(`${href}/`));

  return (
    <div class="shell">
      <a class="skip" href="#main">Skip to content</a>
      <header class="topbar">
        <a class="brand" href="/">Cairn</a>
        <button type="button" class="menu-toggle" aria-expanded={menuOpen} aria-controls="nav" onClick={() => setMenuOpen(!menuOpen)}>Menu</button>
        <span class={`feed feed-${live.status}`} data-feed-status={live.status} role="status">
          {live.status === 'live' ? 'Live' : live.status === 'connecting' ? 'Connecting…' : 'Reconnecting…'}
        </span>
        <span class="who" data-user={session.me.actor.id}>{session.me.actor.id} <span class="muted">({session.me.roles.join(', ')})</span></span>
        {props.toggle}
        <button type="button" onClick={() => void signOut()}>Sign out</button>
      </header>
      <nav id="nav" class={menuOpen ? 'nav open' : 'nav'} aria-label="Main">
        <ul>
          {NAV.filter((n) => !n.show || n.show(session, atHub)).map((n) => (
            <li key={n.href}><a href={n.href} aria-current={current(n.href) ? 'page' : undefined}>{n.label}</a></li>
          ))}
        </ul>
      </nav>
      <main id="main" class="main">
        <Router>
          <Route path="/" component={Dashboard} />
          <Route path="/vms" component={VmsPage} />
          <Route path="/vms/:vmId" component={VmPage} />
          <Route path="/jobs" component={JobsPage} />
          <Route path="/jobs/:jobId" component={JobPage} />
          <Route path="/restore" component={RestoreWizard} />
          <Route path="/instant" component={InstantPage} />
          <Route path="/policies" component={PoliciesPage} />
          <Route path="/audit" component={AuditPage} />
          <Route path="/approvals" component={ApprovalsPage} />
          <Route path="/sites" component={SitesPage} />
          <Route path="/hub" component={HubPage} />
          <Route default component={NotFound} />
        </Router>
      </main>
    </div>
  );
}

function NotFound() {
  return <section class="page"><h1 id="page-title" tabIndex={-1}>Not found</h1><p>No such page. <a href="/">Back to the dashboard</a>.</p></section>;
}
