import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalEnvValue, displayEnvValue, expandEnvValue, parseEnvValue } from '../../src/layerfile/index.js';

const env: Record<string, string> = { HOME: '/root', PATH: '/usr/bin', EMPTY: '' };
const lookup = (name: string): string | undefined => env[name];

test('expandEnvValue follows shell quoting: double quotes and bare text expand, single quotes do not', () => {
  assert.equal(expandEnvValue('$HOME', lookup), '/root');
  assert.equal(expandEnvValue('${HOME}/x', lookup), '/root/x');
  assert.equal(expandEnvValue('"$HOME dir"', lookup), '/root dir');
  assert.equal(expandEnvValue("'$HOME'", lookup), '$HOME');
  assert.equal(expandEnvValue('\\$HOME', lookup), '$HOME');
  assert.equal(expandEnvValue('"\\$HOME"', lookup), '$HOME');
  assert.equal(expandEnvValue('$PATH:/opt/bin', lookup), '/usr/bin:/opt/bin');
  assert.equal(expandEnvValue('$UNSET-x', lookup), '-x');
  assert.equal(expandEnvValue('${HOME}suffix', lookup), '/rootsuffix');
  assert.equal(expandEnvValue('$HOMEsuffix', lookup), '');
  assert.equal(expandEnvValue('cost: $5', lookup), 'cost: $5');
  assert.equal(expandEnvValue(`"a \\"q\\" b"`, lookup), 'a "q" b');
});

test('displayEnvValue removes quotes but leaves variables as written', () => {
  assert.equal(displayEnvValue(`"$HOME" 'x y'`), '$HOME x y');
});

test('canonicalEnvValue is equal exactly when the meaning is equal', () => {
  assert.equal(canonicalEnvValue('"a b"'), canonicalEnvValue("'a b'"));
  assert.equal(canonicalEnvValue('plain'), 'plain');
  assert.equal(canonicalEnvValue('"plain"'), 'plain');
  assert.equal(canonicalEnvValue('$A'), canonicalEnvValue('${A}'));
  assert.notEqual(canonicalEnvValue('"$X"'), canonicalEnvValue("'$X'"));
  // Concatenation must not merge a variable with following text into another variable name.
  assert.notEqual(canonicalEnvValue(`"$A"'B'`), canonicalEnvValue('$AB'));
  assert.equal(canonicalEnvValue(`"$A"'B'`), canonicalEnvValue('${A}B'));
});

test('parseEnvValue reports bad substitutions and unterminated quotes with their offset', () => {
  assert.deepEqual(parseEnvValue('ab${X:-y}'), { ok: false, offset: 2, message: 'bad substitution: only ${NAME} is supported' });
  assert.equal(parseEnvValue("x'y").ok, false);
  assert.equal(parseEnvValue('x"y').ok, false);
  assert.throws(() => expandEnvValue('${', lookup), { code: 'STRATA_LAYERFILE_SYNTAX' });
});
