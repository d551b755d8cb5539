// Size limits shared by the sending and the receiving side.

/** NATS's default max_payload; messages above the configured limit are refused on both sides. */
export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
