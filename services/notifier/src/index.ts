// The notifier service (issue 16): follows the log and sends notifications through the routes
// recorded in it (webhook, e-mail, syslog), with digests. Start it with `startNotifier`.
export { startNotifier, type StartNotifierOptions, type RunningNotifier, type NotifierHealth, type NotifierLogger } from './notifier.service.ts';
export { NatsKvNotifierStateStore, InMemoryNotifierStateStore, type NotifierState, type NotifierStateStore } from './notifier-state.adapter.ts';
