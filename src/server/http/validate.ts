// Request input through zod: a failure is a STRATA_USAGE error (400) naming the field, e.g.
// "body.name: lowercase letters, digits, ., _ and -".
import type { z } from 'zod';
import { StrataError } from '../../errors.js';

export function parseInput<Schema extends z.ZodType>(schema: Schema, value: unknown, where: 'body' | 'query' | 'params'): z.output<Schema> {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${[where, ...issue.path.map(String)].join('.')}: ${issue.message}`);
  throw new StrataError('STRATA_USAGE', `invalid request: ${problems.join('; ')}`);
}
