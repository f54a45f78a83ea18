import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StrataError, isStrataError } from '../src/errors.js';

test('StrataError keeps code, hint and cause', () => {
  const cause = new Error('inner');
  const error = new StrataError('STRATA_SNAPSHOT', 'outer', { hint: 'try again', cause });
  assert.equal(error.code, 'STRATA_SNAPSHOT');
  assert.equal(error.hint, 'try again');
  assert.equal(error.cause, cause);
  assert.ok(isStrataError(error));
  assert.ok(!isStrataError(cause));
});
