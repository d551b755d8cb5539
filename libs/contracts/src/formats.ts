// String formats used by the contracts. TypeBox validates `format` only for formats that are
// registered, so every format a schema names must be registered here, once, on import.
import { FormatRegistry } from '@sinclair/typebox';
import { fromPublic } from '@nats-io/nkeys';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// RFC 3339 date-time with a mandatory offset (what `new Date().toISOString()` produces).
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}

export function isDateTime(value: string): boolean {
  return DATE_TIME.test(value) && !Number.isNaN(Date.parse(value));
}

/** A user nkey's public key (`U…`) whose base32 decodes and whose CRC-16 checksum matches. */
export function isUserPublicNkey(value: string): boolean {
  if (!/^U[A-Z2-7]{55}$/.test(value)) return false;
  try {
    fromPublic(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * A name a person reads (VM, policy, token, export names): no control characters (C0, DEL, C1),
 * no bidirectional overrides or isolates (U+202A-202E, U+2066-2069, U+200E/200F, U+061C) that
 * make a name display as something else, no lone surrogates, and no leading or trailing space.
 */
export function isPlainName(value: string): boolean {
  // eslint-disable-next-line no-control-regex
  return !/[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/.test(value)
    && !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(value) && value.trim() === value;
}

if (!FormatRegistry.Has('nkey-user')) FormatRegistry.Set('nkey-user', isUserPublicNkey);
if (!FormatRegistry.Has('plain-name')) FormatRegistry.Set('plain-name', isPlainName);
if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', isUuid);
if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', isDateTime);
