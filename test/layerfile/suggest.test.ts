import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closest, editDistance } from '../../src/layerfile/index.js';
import { KEYWORDS } from '../../src/layerfile/index.js';

test('editDistance counts insertions, deletions, substitutions and adjacent transpositions', () => {
  assert.equal(editDistance('RUN', 'RUN'), 0);
  assert.equal(editDistance('RUNN', 'RUN'), 1);
  assert.equal(editDistance('RN', 'RUN'), 1);
  assert.equal(editDistance('RAN', 'RUN'), 1);
  assert.equal(editDistance('FORM', 'FROM'), 1);
  assert.equal(editDistance('WEBSTIE', 'WEBSITE'), 1);
  assert.equal(editDistance('', 'COPY'), 4);
  assert.equal(editDistance('kitten', 'sitting'), 3);
  // Symmetric.
  assert.equal(editDistance('CHEKCPOINT', 'CHECKPOINT'), editDistance('CHECKPOINT', 'CHEKCPOINT'));
});

test('closest suggests keywords case-insensitively, and nothing for far-off words', () => {
  assert.equal(closest('Copy', KEYWORDS), 'COPY');
  assert.equal(closest('run', KEYWORDS), 'RUN');
  assert.equal(closest('EXPOSE WEBSTIE', KEYWORDS), 'EXPOSE WEBSITE');
  assert.equal(closest('BUILDENV', KEYWORDS), 'BUILD ENV');
  assert.equal(closest('WROKDIR', KEYWORDS), 'WORKDIR');
  assert.equal(closest('CHEKPOINT', KEYWORDS), 'CHECKPOINT');
  assert.equal(closest('FROBNICATE', KEYWORDS), undefined);
  assert.equal(closest('X', KEYWORDS), undefined);
});
