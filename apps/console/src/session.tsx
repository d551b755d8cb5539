// Who is signed in and what the gateway offers: the caller's permissions (what a role may not
// do is not offered) and the API's operations from /openapi.json (a restore kind, a policy
// action appears once the gateway has its route: the console's extension points).
import { createContext, type ComponentChildren } from 'preact';
import { useContext } from 'preact/hooks';
import type { Permission, WhoAmI } from './api.ts';

export interface Session {
  readonly me: WhoAmI;
  can(permission: Permission): boolean;
  /** The gateway has this operation (by OpenAPI operationId). */
  has(operationId: string): boolean;
}

const SessionContext = createContext<Session | undefined>(undefined);

export function SessionProvider(props: { me: WhoAmI; operations: ReadonlySet<string>; children: ComponentChildren }) {
  const session: Session = {
    me: props.me,
    can: (p) => props.me.permissions.includes(p),
    has: (op) => props.operations.has(op),
  };
  return <SessionContext.Provider value={session}>{props.children}</SessionContext.Provider>;
}

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSession outside SessionProvider');
  return s;
}

/** operationIds of the gateway's OpenAPI document. */
export function operationsOf(doc: { paths?: Record<string, Record<string, { operationId?: string }>> }): Set<string> {
  const ops = new Set<string>();
  for (const methods of Object.values(doc.paths ?? {})) {
    for (const op of Object.values(methods)) if (op && typeof op.operationId === 'string') ops.add(op.operationId);
  }
  return ops;
}
