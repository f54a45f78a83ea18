import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StrataError } from '../../src/errors.js';
import { LayerfileError } from '../../src/layerfile/index.js';

test('LayerfileError formats file:line:col, the source line, carets and the hint', () => {
  const error = new LayerfileError({
    file: 'services/api/Layerfile',
    line: 3,
    column: 1,
    length: 4,
    sourceLine: 'RUNN echo hi',
    message: 'unknown directive "RUNN"',
    suggestion: 'RUN',
  });
  assert.ok(error instanceof StrataError);
  assert.equal(error.code, 'STRATA_LAYERFILE_SYNTAX');
  assert.equal(error.hint, 'did you mean "RUN"?');
  assert.equal(error.suggestion, 'RUN');
  assert.equal(
    error.format(),
    ['services/api/Layerfile:3:1: unknown directive "RUNN"', '  RUNN echo hi', '  ^^^^', '  hint: did you mean "RUN"?'].join('\n'),
  );
});

test('format keeps tabs under tabs, shows control characters visibly and omits a missing hint', () => {
  const error = new LayerfileError({ file: 'L', line: 1, column: 3, sourceLine: '\t\tX\u0000', message: 'm' });
  assert.equal(error.format(), 'L:1:3: m\n  \t\tX\u2400\n  \t\t^');
});
