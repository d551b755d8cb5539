// A running secure hub applies `cairn hub add-site` (a new, reissued or removed leaf user) without
// a restart: it watches its security directory (fs.watch on site.json / nats-security.conf,
// debounced, and a periodic re-check because fs.watch can miss events), renders its nats-server
// security config again from site.json (renderHubSecurity: it writes nothing, so it never races
// the CLI's writes), has nats-server reload it (SIGHUP; 2.9 reloads users and permissions, the
// leaf listener block stays the same) and then lets the relay copy the new sites' events.
// A config nats-server refuses is logged and left: the server keeps running on the previous one.
import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from 'pino';
import { assertSite } from '@cairn/contracts';
import { renderHubSecurity, type RenderedHubSecurity } from '@cairn/nats-security';
import type { NatsServerProcess } from '@cairn/nats-server';
import type { RunningHubRelay } from '@cairn/eventlog';

export interface HubSecurityWatchOptions {
  readonly dir: string;
  /** Sites the relay reads besides those with a leaf user (`cairn hub --sites`). */
  readonly sites: readonly string[];
  /** What the security config was when nats-server started. */
  readonly applied: RenderedHubSecurity;
  /** The rest of the hub's extra config (its leaf listener), unchanged by a reload. */
  readonly extraConfig: (securityConfig: string) => string;
  readonly nats: NatsServerProcess;
  readonly relay: RunningHubRelay;
  readonly say: (line: string) => void;
  readonly logger: Logger;
  /** Re-check this often even without a file event (default 10 s). */
  readonly recheckMs?: number;
  /** Wait this long after a file event before reading (default 300 ms). */
  readonly debounceMs?: number;
}

export interface HubChange {
  readonly added: readonly string[];
  readonly reissued: readonly string[];
  readonly removed: readonly string[];
}

export interface HubSecurityWatch {
  /** Checks now; resolves with what was applied (nothing when unchanged), rejects when nats-server refused the new config. */
  check(): Promise<HubChange | undefined>;
  stop(): void;
}

const WATCHED = new Set(['site.json', 'nats-security.conf']);

export function watchHubSecurity(o: HubSecurityWatchOptions): HubSecurityWatch {
  let applied = o.applied;
  let refused: string | undefined; // a config nats-server refused: not tried again until it changes
  let running: Promise<HubChange | undefined> = Promise.resolve(undefined);
  let stopped = false;
  let debounce: NodeJS.Timeout | undefined;

  async function checkNow(): Promise<HubChange | undefined> {
    if (stopped) return undefined;
    let next: RenderedHubSecurity;
    try {
      next = await renderHubSecurity(o.dir, o.sites);
    } catch (e) {
      // site.json half-written by `cairn hub add-site`: the next event or re-check reads it whole.
      o.logger.debug({ err: (e as Error).message }, 'hub security: cannot read site.json yet');
      return undefined;
    }
    if (next.config === applied.config || next.config === refused) return undefined;
    const before = applied.leafSites;
    const change: HubChange = {
      added: Object.keys(next.leafSites).filter((s) => !before[s]).sort(),
      reissued: Object.keys(next.leafSites).filter((s) => before[s] && (before[s].passwordHash !== next.leafSites[s]!.passwordHash
        || JSON.stringify(before[s].peers ?? null) !== JSON.stringify(next.leafSites[s]!.peers ?? null))).sort(),
      removed: Object.keys(before).filter((s) => !next.leafSites[s]).sort(),
    };
    const what = [
      change.added.length ? `added ${change.added.join(', ')}` : '',
      change.reissued.length ? `reissued ${change.reissued.join(', ')}` : '',
      change.removed.length ? `removed ${change.removed.join(', ')}` : '',
    ].filter(Boolean).join('; ') || 'permissions changed';
    // A site the relay may no longer read: stop reading it first, so no read is refused.
    const dropped = o.relay.status().map((x) => x.site).filter((s) => !next.sites.includes(s));
    for (const s of dropped) await o.relay.removeSite(s);
    try {
      await o.nats.reload(o.extraConfig(next.config));
    } catch (e) {
      for (const s of dropped) o.relay.addSite(s); // the previous config still lets it read them
      refused = next.config;
      o.say(`security reload      FAILED (${what}): ${(e as Error).message}`);
      o.logger.error({ err: (e as Error).message, ...change }, 'hub security: nats-server refused the new config; it keeps the previous one');
      throw e;
    }
    applied = next;
    refused = undefined;
    const newSites = next.sites.filter((s) => !o.relay.status().some((x) => x.site === s));
    for (const s of newSites) o.relay.addSite(assertSite(s));
    o.say(`security reload      ok  leaf users ${what}${newSites.length ? `; relay now copies ${newSites.join(', ')}` : ''}${dropped.length ? `; relay stopped copying ${dropped.join(', ')}` : ''}`
      + (change.reissued.length || change.removed.length ? ' (a leaf link already up stays until it reconnects: restart the hub to cut it now)' : ''));
    o.logger.info({ ...change, relayAdded: newSites, relayRemoved: dropped }, 'hub security: nats-server reloaded the leaf users and permissions');
    return change;
  }

  const check = () => {
    const run = running.then(checkNow);
    running = run.catch(() => undefined);
    return run;
  };
  const soon = () => {
    if (stopped) return;
    clearTimeout(debounce);
    debounce = setTimeout(() => { void check().catch(() => undefined); }, o.debounceMs ?? 300);
  };

  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(o.dir, (_event, name) => { if (!name || WATCHED.has(String(name))) soon(); });
    watcher.on('error', (e) => o.logger.warn({ err: e.message }, 'hub security: watching the directory failed; re-checking periodically only'));
  } catch (e) {
    o.logger.warn({ err: (e as Error).message }, 'hub security: cannot watch the directory; re-checking periodically only');
  }
  const timer = setInterval(() => { void check().catch(() => undefined); }, o.recheckMs ?? 10_000);
  timer.unref();

  return {
    check,
    stop() {
      stopped = true;
      clearTimeout(debounce);
      clearInterval(timer);
      watcher?.close();
    },
  };
}
