// A site's NATS may be one server or a cluster: how its address is written (one URL, or the
// members' URLs joined by commas, as `cairn up --cluster 3` records it) and how many copies a
// stream or KV bucket keeps there (R3 on a cluster of three or more, R1 on a single server).

/** The server URLs of a NATS address: `nats://a:4222,nats://b:4222` → both; blanks dropped. */
export function natsServers(address: string | readonly string[]): string[] {
  const parts = typeof address === 'string' ? address.split(',') : address.flatMap((a) => a.split(','));
  return parts.map((s) => s.trim()).filter(Boolean);
}

/** What a connected client learnt from the server's INFO (the fields of it this reads). */
export interface ClusterInfo {
  readonly cluster?: string | undefined;
  readonly connect_urls?: readonly string[] | undefined;
}

/**
 * Copies a new stream or bucket keeps: 3 when the server is in a cluster of at least three
 * (the cluster announces its members' client URLs), otherwise as many members as are known,
 * 1 for a single server. CAIRN_NATS_REPLICAS overrides it (1, 3 or 5).
 */
export function streamReplicas(info: ClusterInfo | undefined, env: Readonly<Record<string, string | undefined>> = process.env): number {
  const forced = env['CAIRN_NATS_REPLICAS'];
  if (forced !== undefined && forced !== '') {
    const n = Number(forced);
    if (!Number.isInteger(n) || n < 1 || n > 5) throw new Error(`CAIRN_NATS_REPLICAS must be a whole number from 1 to 5, not ${JSON.stringify(forced)}`);
    return n;
  }
  if (!info?.cluster) return 1;
  const members = new Set(info.connect_urls ?? []).size;
  return Math.max(1, Math.min(3, members));
}
