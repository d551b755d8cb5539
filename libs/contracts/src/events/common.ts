// Small schema pieces shared by several event types.
import { Type } from '@sinclair/typebox';

export const Id = Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_-]+$' });
export const Bytes = Type.Integer({ minimum: 0, description: 'A size in bytes.' });
export const Count = Type.Integer({ minimum: 0 });
export const Reason = Type.String({ minLength: 1, maxLength: 4096 });
export const Name = Type.String({ minLength: 1, maxLength: 256 });
/** A name an operator types (policy, token, export names): no control or bidi characters (formats.ts). */
export const PlainName = Type.String({ minLength: 1, maxLength: 256, format: 'plain-name' });
export const Timestamp = Type.String({ format: 'date-time' });
