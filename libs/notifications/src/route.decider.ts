// The notification route aggregate (stream `notifyroute-<routeId>`): add (or replace) and
// remove, written by the operator's CLI. Pure; the CLI runs it through handleCommand with the
// revision it read, so two operators editing one route never interleave.
import type { Decider, NotificationRoute, NotificationRouteAdded, NotificationRouteRemoved } from '@cairn/contracts';

export type RouteCommand =
  | { readonly type: 'AddRoute'; readonly route: NotificationRoute }
  | { readonly type: 'RemoveRoute'; readonly routeId: string };

export type RouteEvent = NotificationRouteAdded | NotificationRouteRemoved;

export interface RouteState {
  readonly route: NotificationRoute | undefined;
}

export class RouteRefused extends Error {
  constructor(message: string, readonly code: 'not_found' | 'invalid') {
    super(message);
    this.name = 'RouteRefused';
  }
}

export const routeStreamId = (routeId: string) => `notifyroute-${routeId}`;

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export const routeDecider: Decider<RouteCommand, RouteEvent, RouteState> = {
  initialState: () => ({ route: undefined }),
  evolve(state, event) {
    switch (event.type) {
      case 'NotificationRouteAdded': return { route: event.data };
      case 'NotificationRouteRemoved': return { route: undefined };
      default: return state;
    }
  },
  decide(command, state) {
    switch (command.type) {
      case 'AddRoute': {
        const t = command.route.target;
        if (t.kind === 'email' && t.user && !t.passwordEnv) throw new RouteRefused('an e-mail route with a user needs --password-env (the variable that holds the SMTP password)', 'invalid');
        // Adding what is already there changes nothing (a retried `route add`).
        if (state.route && same(state.route, command.route)) return [];
        return [{ type: 'NotificationRouteAdded', data: command.route }];
      }
      case 'RemoveRoute':
        if (!state.route) throw new RouteRefused(`no notification route ${command.routeId}`, 'not_found');
        return [{ type: 'NotificationRouteRemoved', data: { routeId: command.routeId } }];
    }
  },
};

/** Every live route, folded from route events in log order (the notifier's table). */
export function foldRoutes(routes: ReadonlyMap<string, NotificationRoute>, event: { type: string; data: unknown }): Map<string, NotificationRoute> {
  const next = new Map(routes);
  if (event.type === 'NotificationRouteAdded') {
    const r = event.data as NotificationRoute;
    next.set(r.routeId, r);
  } else if (event.type === 'NotificationRouteRemoved') {
    next.delete((event.data as { routeId: string }).routeId);
  }
  return next;
}
