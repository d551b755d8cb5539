import { backendContract } from './backend.contract.ts';
import { MemoryBackend } from './memory-backend.ts';

backendContract('MemoryBackend (test double)', () => new MemoryBackend());
