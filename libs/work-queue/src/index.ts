// The site's JetStream work queue (transfers for the data movers): its stream, created by
// whichever side starts first.
import { RetentionPolicy, type JetStreamManager } from '@nats-io/jetstream';
import { workStreamName } from '@cairn/jobs';

/** Creates the work stream when missing, with `replicas` copies (streamReplicas of the connection). */
export async function ensureWorkStream(jsm: JetStreamManager, site: string, replicas = 1): Promise<string> {
  const name = workStreamName(site);
  try {
    await jsm.streams.info(name);
  } catch {
    try {
      await jsm.streams.add({
        name,
        subjects: [`cairn.${site}.work.>`],
        retention: RetentionPolicy.Workqueue,
        duplicate_window: 2 * 60 * 1_000_000_000,
        num_replicas: replicas,
      });
    } catch (e) {
      // Another process created it at the same moment.
      await jsm.streams.info(name).catch(() => { throw e; });
    }
  }
  return name;
}
