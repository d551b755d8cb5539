// Approvals: the four-eyes inbox. Administrators approve or refuse others' requests with a
// reason; their own requests they can only withdraw; other roles see the list only.
import { useState } from 'preact/hooks';
import { useQueryClient } from '@tanstack/preact-query';
import { post, type Approval } from '../api.ts';
import { useApprovals } from '../queries.ts';
import { useSession } from '../session.tsx';
import { Empty, ErrorBox, Loading, Page, StateBadge, Time } from '../ui.tsx';
import { KeyPanel, useOperatorKey } from '../keyring.tsx';
import { signApproval, type OperatorKey } from '../signing.ts';

function describe(a: Approval): string {
  const x = a.action;
  if (x.kind === 'delete-restore-point') return `Delete restore point ${x.restorePointId}`;
  if (x.kind === 'delete-repository') return `Delete repository ${x.repository}`;
  if (x.kind === 'shorten-retention') return `Shorten the retention of policy ${x.policyId}`;
  if (x.kind === 'disable-immutability') return `Turn immutability off for policy ${x.policyId}`;
  if (x.kind === 'grant-administrator') return `Make ${x.userId} an administrator`;
  if (x.kind === 'add-operator-key') return `Add an operator key for ${x.userId}`;
  return (x as { kind: string }).kind;
}

export function ApprovalsPage() {
  const session = useSession();
  const [show, setShow] = useState<'pending' | 'all'>('pending');
  const approvals = useApprovals(show === 'pending' ? 'pending' : undefined);
  const key = useOperatorKey();
  return (
    <Page title="Approvals">
      <div class="row" role="group" aria-label="Show">
        <button type="button" aria-pressed={show === 'pending'} onClick={() => setShow('pending')}>Waiting</button>
        <button type="button" aria-pressed={show === 'all'} onClick={() => setShow('all')}>All</button>
      </div>
      {session.me.signaturesRequired === true && session.can('admin') ? <KeyPanel /> : null}
      <ErrorBox error={approvals.error} />
      {approvals.isLoading ? <Loading what="approvals" /> : (approvals.data?.items.length ?? 0) === 0 ? <Empty>Nothing waits for a decision.</Empty> : (
        <ul class="cards">
          {approvals.data!.items.map((a) => <ApprovalCard key={a.approvalId} a={a} mine={a.requestedBy === session.me.actor.id} admin={session.can('admin')} signed={session.me.signaturesRequired === true} signer={key} />)}
        </ul>
      )}
    </Page>
  );
}

function ApprovalCard(props: { a: Approval; mine: boolean; admin: boolean; signed: boolean; signer: OperatorKey | undefined }) {
  const { a } = props;
  const queries = useQueryClient();
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState(false);
  const decide = async (verb: 'approve' | 'reject') => {
    setBusy(true); setError(undefined);
    try {
      // With an operator key loaded, the decision carries the person's own signature (what a secure site requires; docs/security.md, four-eyes).
      const signature = props.signer ? await signApproval(props.signer, a.approvalId, verb === 'approve' ? 'grant' : 'reject', a.action) : undefined;
      await post(`/v1/approvals/${encodeURIComponent(a.approvalId)}/${verb}`, { ...(verb === 'reject' && reason ? { reason } : {}), ...(signature ? { signature } : {}) });
      void queries.invalidateQueries({ queryKey: ['approvals'] });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const reasonId = `reason-${a.approvalId}`;
  return (
    <li class="card" data-approval={a.approvalId} data-status={a.status}>
      <h2>{describe(a)} <StateBadge state={a.status} /></h2>
      <p>Asked by <strong>{a.requestedBy}</strong> <Time iso={a.requestedAt} />{a.reason ? ` — “${a.reason}”` : ''}</p>
      {a.approvedBy ? <p>Approved by {a.approvedBy}</p> : null}
      {a.rejectedBy ? <p>Refused by {a.rejectedBy}</p> : null}
      {a.detail ? <p class="muted">{a.detail}</p> : null}
      {a.status === 'pending' && props.admin ? (
        <div class="decide">
          <label for={reasonId}>Reason</label>
          <input id={reasonId} value={reason} maxLength={1024} onInput={(e) => setReason((e.target as HTMLInputElement).value)} />
          <div class="row">
            {props.mine
              ? <span class="muted">A second administrator must approve your own request.</span>
              // A secure site: the approval is signed with the approver's own operator key — loaded above for this tab, or with the CLI.
              : props.signed && !props.signer
                ? <span class="muted" data-hint="sign-with-cli">This site needs your approval signed with your operator key: load it above, or run <code>cairn approval approve {a.approvalId}</code>.</span>
                : <button type="button" class="primary" data-action="approve" disabled={busy} onClick={() => void decide('approve')}>Approve</button>}
            <button type="button" class="danger" data-action="reject" disabled={busy} onClick={() => void decide('reject')}>{props.mine ? 'Withdraw' : 'Refuse'}</button>
          </div>
        </div>
      ) : null}
      <ErrorBox error={error} />
    </li>
  );
}
