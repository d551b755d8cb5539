// Notifications (issue 16): the route aggregate, what deserves a notice, digests, messages and
// the transports that deliver them (webhook, e-mail, syslog). The notifier service and the
// CLI (`cairn notify route …`) share it.
export * from './route.decider.ts';
export * from './notice.ts';
export * from './digest.ts';
export * from './message.ts';
export * from './transports.ts';
