// Tamper evidence for the audit trail: a SHA-256 hash chain over the log in position order
// and a verifier that says which record was removed, reordered or altered. Pure.
export { canonicalJson } from './canonical-json.ts';
export {
  GENESIS_HASH, chainHash, chainEvents, verifyChain,
  type ChainableEvent, type PositionedEvent, type ChainedRecord, type ChainProblem, type ChainProblemKind,
  type ChainVerdict, type VerifyOptions,
} from './hash-chain.ts';
