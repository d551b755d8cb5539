// Every production wrapper, and the fault wrapper with no faults, still honours the contract
// around a real DirectoryBackend.
import { useHarness } from '@cairn/testing';
import { withBandwidthLimit } from './bandwidth-limit.wrapper.ts';
import { withConcurrencyLimit } from './concurrency-limit.wrapper.ts';
import { DirectoryBackend } from './directory.adapter.ts';
import { withRetry } from './retry.wrapper.ts';
import { wrapBackend } from './stack.ts';
import { backendContract } from './testing/backend.contract.ts';
import { withFaults } from './testing/faults.ts';

const h = useHarness();
// fsync off: these cases test the wrappers, durability is DirectoryBackend's own spec.
const dir = async () => new DirectoryBackend(await h.tmpDir('cairn-wrapped-'), { fsync: false });
const fast = { uploadBytesPerSec: 1024 ** 3, downloadBytesPerSec: 1024 ** 3 };

backendContract('withRetry(DirectoryBackend)', async () => withRetry(await dir(), { baseDelayMs: 1, timeoutMs: 30_000 }));
backendContract('withConcurrencyLimit(DirectoryBackend, 2)', async () => withConcurrencyLimit(await dir(), { limit: 2 }));
backendContract('withBandwidthLimit(DirectoryBackend)', async () => withBandwidthLimit(await dir(), fast));
backendContract('withFaults(DirectoryBackend) without faults', async () => withFaults(await dir()));
backendContract('wrapBackend(DirectoryBackend) full stack', async () =>
  wrapBackend(await dir(), { retry: { baseDelayMs: 1 }, concurrency: 4, bandwidth: fast }));
