// Canonical JSON (the RFC 8785 shape for the values events hold): object keys sorted by code
// unit, no whitespace, numbers and strings as JSON.stringify writes them. Two parties that
// hold the same event get the same bytes, whatever order its keys were written in.
export function canonicalJson(value: unknown): string {
  return write(value, '');
}

function write(value: unknown, path: string): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean': return value ? 'true' : 'false';
    case 'string': return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonical JSON: ${value} at ${path || '/'} is not a JSON number`);
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map((v, i) => write(v, `${path}/${i}`)).join(',')}]`;
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${write(obj[k], `${path}/${k}`)}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonical JSON: a ${typeof value} at ${path || '/'} has no JSON form`);
  }
}
