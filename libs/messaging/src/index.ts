// Cairn's messaging over NATS: a Nest transport binding handlers to durable JetStream
// consumers (ack / nak with backoff / dead-letter) and to command request/reply, plus the
// sending side (JetStreamClient, CommandBus). Semantics are written up in docs/messaging.md.
export { JetStreamServer, DEFAULT_MAX_MESSAGE_BYTES, type JetStreamServerOptions } from './jetstream.server.ts';
export {
  JetStreamHandler, CommandHandler, JETSTREAM_TRANSPORT,
  type JetStreamHandlerOptions, type CommandHandlerOptions,
} from './decorators.ts';
export { DurableConsumers, type DurableConsumersOptions, type RunningConsumer } from './durable-consumers.ts';
export { QueryResponder, type QueryResponderOptions, type QueryRoute } from './query-responder.ts';
export { JetStreamContext, CommandContext, type JetStreamMessageInfo, type CommandInfo } from './handler-context.ts';
export { JetStreamClient, EVENT_TYPE_HEADER, SCHEMA_VERSION_HEADER, type PublishOptions, type JetStreamClientOptions } from './jetstream-client.ts';
export { CommandBus, type CommandBusOptions, type SendOptions } from './command-bus.ts';
export { REPLAYED_HEADER } from './command-responder.ts';
export {
  NonRetryableError, RetryLaterError, CommandFailedError, MessageTooLargeError, CommandNoRespondersError, CommandTimeoutError,
  InvalidReplyError, isNonRetryable,
} from './errors.ts';
export {
  EventLogDeadLetterSink, JetStreamDeadLetterSink, deadLetterEvent, deadLetterEventId, deadLetterStreamId,
  type DeadLetter, type DeadLetterSink, type EventAppender, type DeadLetterEventOptions,
} from './dead-letter.ts';
export { exponentialBackoff, DEFAULT_BACKOFF_MS, type DeadLetterReason, type RetryPolicy } from './delivery-policy.ts';
export { eventMessages, readableEvents, schemaMessages, versionedMessages, anyJson, type MessageValidator, type Validation, type Problem } from './message-validation.ts';
export { commandFingerprint, type ProcessedMessages, type CommandReplies, type ReplyClaim } from './idempotency.ts';
export { KvProcessedMessages, KvCommandReplies, type KvStoreOptions, type KvCommandRepliesOptions } from './idempotency.adapter.ts';
export { injectTrace, extractTrace, type ExtractedTrace } from './trace-context.ts';
export type { Disposition, JetStreamConsumer, ConsumerLogger } from './jetstream-consumer.ts';
export { NatsPermissionDeniedError, asPermissionDenied, onPermissionDenied, subscribeChecked, publishChecked } from './permissions.ts';
export { FileStreamServer, FileStreamError, pullFileStream, cancelFileStream, FILE_STREAM_CANCEL, FILE_STREAM_EOF, FILE_STREAM_ERROR, type FileStreamOffer, type FileStreamOutcome, type FileStreamServerOptions } from './file-stream.ts';
export { trackConnection, type NatsConnectionState } from './connection-state.ts';
export { settleQuietly } from './request-cancel.ts';
