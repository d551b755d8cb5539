// The global pipe that validates what enters the gateway: each `@Input` part is converted
// (query strings to numbers and booleans) and checked against its route's TypeBox schema;
// anything else is refused with a 400 problem listing every mismatch.
import { Injectable, type PipeTransform } from '@nestjs/common';
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import { EdgeInput } from './route.decorator.ts';
import { ProblemError } from './problem.ts';

const MAX_ERRORS = 20;
const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

function checker(schema: TSchema): TypeCheck<TSchema> {
  let c = compiled.get(schema);
  if (!c) {
    c = TypeCompiler.Compile(schema);
    compiled.set(schema, c);
  }
  return c;
}

@Injectable()
export class EdgeValidationPipe implements PipeTransform {
  transform(value: unknown): unknown {
    if (!(value instanceof EdgeInput)) return value;
    const { source, schema, route } = value;
    let raw = value.raw;
    if (!schema) return raw;
    // A body whose every field is optional may be left out (`x-cairn-optional-body`).
    if (source === 'body' && raw === undefined && (schema as { 'x-cairn-optional-body'?: boolean })['x-cairn-optional-body']) raw = {};
    if (source === 'body' && raw === undefined) {
      throw new ProblemError(400, 'validation', `${route}: a JSON body is required (Content-Type: application/json)`);
    }
    // Query strings and path params arrive as text: convert what the schema says is a number or boolean.
    if (source !== 'body') raw = Value.Convert(schema, Value.Clone(raw ?? {}));
    const check = checker(schema);
    if (check.Check(raw)) return raw;
    const errors: { path: string; message: string }[] = [];
    for (const e of check.Errors(raw)) {
      errors.push({ path: `${source}${e.path}`, message: e.message });
      if (errors.length >= MAX_ERRORS) break;
    }
    const first = errors[0];
    throw new ProblemError(400, 'validation', `${route}: invalid ${source}${first ? ` (${first.path}: ${first.message})` : ''}`, { code: 'invalid_request', errors });
  }
}
