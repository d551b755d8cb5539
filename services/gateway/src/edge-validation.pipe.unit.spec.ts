import { describe, expect, it } from 'vitest';
import { Type } from '@sinclair/typebox';
import { EdgeValidationPipe } from './edge-validation.pipe.ts';
import { EdgeInput } from './route.decorator.ts';
import { ProblemError } from './problem.ts';

const pipe = new EdgeValidationPipe();
const Query = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1 })), all: Type.Optional(Type.Boolean()) }, { additionalProperties: false });
const Body = Type.Object({ vmId: Type.String({ pattern: '^[a-z0-9]+$' }) }, { additionalProperties: false });

function problemOf(fn: () => unknown): ProblemError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ProblemError) return e;
    throw e;
  }
  throw new Error('expected a ProblemError');
}

describe('EdgeValidationPipe', () => {
  it('converts query strings to the numbers and booleans the schema asks for', () => {
    expect(pipe.transform(new EdgeInput('query', Query, { limit: '5', all: 'true' }, 'listJobs'))).toEqual({ limit: 5, all: true });
  });

  it('refuses unknown and ill-typed query parameters with every problem listed', () => {
    const p = problemOf(() => pipe.transform(new EdgeInput('query', Query, { limit: 'lots', colour: 'red' }, 'listJobs')));
    expect(p.status).toBe(400);
    expect(p.toProblem('/v1/jobs')).toMatchObject({ status: 400, instance: '/v1/jobs', code: 'invalid_request' });
    expect(p.extra.errors?.map((e) => e.path)).toEqual(expect.arrayContaining(['query/limit', 'query/colour']));
  });

  it('never converts a body: JSON types must already be right', () => {
    expect(pipe.transform(new EdgeInput('body', Body, { vmId: 'vm1' }, 'requestBackup'))).toEqual({ vmId: 'vm1' });
    expect(problemOf(() => pipe.transform(new EdgeInput('body', Body, { vmId: 7 }, 'requestBackup'))).status).toBe(400);
    expect(problemOf(() => pipe.transform(new EdgeInput('body', Body, undefined, 'requestBackup'))).message).toMatch(/JSON body is required/);
  });

  it('passes through values that are not edge inputs', () => {
    expect(pipe.transform('plain')).toBe('plain');
  });
});
