// Signed commands: signing with an nkey, checking a signature, and the policies a command
// responder asks who may send what (service identities, a person's current operator key and
// roles); bound to a NATS connection so every responder on it applies them.
export {
  signerFromSeed, signCommand, verifyCommandSignature, readOperator, SignedCommandPolicy, UnverifiedCommandPolicy, bindCommandSecurity, commandSecurityOf,
  UNAUTHENTICATED,
  type CommandSigner, type CommandAuthorizer, type CommandAuthDecision, type CommandSecurity, type OperatorRecord, type SignedCommandPolicyOptions,
} from './command-auth.ts';
