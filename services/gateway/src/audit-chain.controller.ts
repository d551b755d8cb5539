// GET /v1/audit/chain: is the site's tamper-evident audit chain intact? The gateway does not read
// the chain itself: whoever runs it hands in a probe (`cairn up` wires the audit bridge's chain
// reader and libs/audit's verifier), so the console can show the chain's status.
import { Controller, Inject } from '@nestjs/common';
import { Type } from '@sinclair/typebox';
import { GATEWAY_AUDIT_CHAIN } from './gateway.tokens.ts';
import { Route } from './route.decorator.ts';
import { ProblemError } from './problem.ts';

/** The verdict of the hash-chain verifier (libs/audit), as the route answers it. */
export type AuditChainVerdict =
  | { readonly ok: true; readonly count: number; readonly head: string }
  | { readonly ok: false; readonly count: number; readonly problem: { readonly kind: string; readonly message: string } };

export interface AuditChainProbe {
  verify(): Promise<AuditChainVerdict>;
}

const ChainVerdict = Type.Object({
  ok: Type.Boolean(),
  count: Type.Integer({ minimum: 0, description: 'Records checked' }),
  head: Type.Optional(Type.String({ description: 'Hash of the last record (when intact)' })),
  problem: Type.Optional(Type.Object({ kind: Type.String(), message: Type.String() }, { description: 'The first removed, reordered or altered record' })),
}, { $id: 'AuditChainVerdict' });

@Controller()
export class AuditChainController {
  constructor(@Inject(GATEWAY_AUDIT_CHAIN) private readonly probe: AuditChainProbe | undefined) {}

  @Route({
    method: 'GET', path: '/v1/audit/chain', operationId: 'verifyAuditChain', tag: 'audit',
    summary: 'Verify the audit hash chain now: intact, or the first removed, reordered or altered record',
    description: 'Reads the whole chain the audit bridge keeps (the same check as `cairn audit verify`); 404 (code no_audit_chain) where this gateway was started without access to it, 503 when it cannot be read now.',
    response: ChainVerdict, problems: [404, 503],
  })
  async verify() {
    if (!this.probe) throw new ProblemError(404, 'not-found', 'this gateway was started without access to the audit chain: use `cairn audit verify`', { code: 'no_audit_chain' });
    let v: AuditChainVerdict;
    try {
      v = await this.probe.verify();
    } catch (e) {
      throw new ProblemError(503, 'service-unavailable', `the audit chain cannot be read: ${(e as Error).message}`);
    }
    return v.ok ? { ok: true, count: v.count, head: v.head } : { ok: false, count: v.count, problem: { kind: v.problem.kind, message: v.problem.message } };
  }
}
