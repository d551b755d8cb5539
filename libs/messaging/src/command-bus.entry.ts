// The command bus alone, as `@cairn/messaging/command-bus`: what a client that only sends
// commands (the `cairn` CLI) needs. Importing the package's main entry dynamically keeps every
// export of the library, and with them NestJS, rxjs, prom-client and the OpenTelemetry SDK
// (docs/benchmarks.md "CLI start-up").
export { CommandBus, type CommandBusOptions, type SendOptions } from './command-bus.ts';
export {
  CommandNoRespondersError, CommandTimeoutError, InvalidReplyError, MessageTooLargeError,
} from './send-errors.ts';
