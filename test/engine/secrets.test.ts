// SECRET ENV without machines: the secrets file format, where values come from, the missing-secret
// error, and masking (whole texts, values split across output chunks, overlapping values, reporters).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StrataError } from '../../src/errors.js';
import { parseLayerfile } from '../../src/layerfile/index.js';
import type { Reporter } from '../../src/engine/reporter.js';
import { assertSecretsPresent, loadSecrets, maskingReporter, parseSecretsFile, SecretMasker, secretValuesFor, type Secrets } from '../../src/engine/secrets.js';

test('secrets file: comments, blank lines, export, quotes, escapes, = in values, inline comments', () => {
  const text = [
    '# a comment',
    '',
    'PLAIN=abc def',
    'export EXPORTED=yes',
    '  SPACED = padded  ',
    'WITH_EQ=a=b=c',
    'INLINE=value # not part of it',
    'HASH_INSIDE=a#b',
    'DOUBLE="line1\\nline2 \\"q\\" \\\\ # kept"',
    "SINGLE='$literal \\n # kept'",
    'EMPTY=',
    'QUOTED_EMPTY=""',
    'DOUBLE_COMMENT="x" # trailing comment',
    'CRLF=value\r',
  ].join('\n');
  const values = parseSecretsFile(text, 'secrets.env');
  assert.deepEqual(Object.fromEntries(values), {
    PLAIN: 'abc def',
    EXPORTED: 'yes',
    SPACED: 'padded',
    WITH_EQ: 'a=b=c',
    INLINE: 'value',
    HASH_INSIDE: 'a#b',
    DOUBLE: 'line1\nline2 "q" \\ # kept',
    SINGLE: '$literal \\n # kept',
    EMPTY: '',
    QUOTED_EMPTY: '',
    DOUBLE_COMMENT: 'x',
    CRLF: 'value',
  });
});

test('secrets file: a bad line is an error naming file:line that never echoes the line', () => {
  for (const [text, line, why] of [
    ['OK=1\nno-equals-sign-hunter2', 2, /expected NAME=value/],
    ['1BAD=hunter2', 1, /secret name/],
    ['A="hunter2', 1, /unterminated/],
    ["A='hunter2' extra", 1, /after the closing quote/],
  ] as const) {
    assert.throws(
      () => parseSecretsFile(text, 'secrets.env'),
      (error: unknown) => {
        assert.ok(error instanceof StrataError);
        assert.equal(error.code, 'STRATA_USAGE');
        assert.match(error.message, new RegExp(`^secrets\\.env:${line}: `));
        assert.match(error.message, why);
        assert.doesNotMatch(error.message, /hunter2/);
        return true;
      },
    );
  }
});

test('loadSecrets: STRATA_SECRET_<NAME> from the environment, the file wins; lookups are described', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'strata-secrets-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'secrets.env');
  writeFileSync(file, 'BOTH=from-file\nFILE_ONLY=f\n');
  const env = { STRATA_SECRET_BOTH: 'from-env', STRATA_SECRET_ENV_ONLY: 'e', STRATA_SECRET_: 'no name', UNRELATED: 'x' };
  const secrets = await loadSecrets({ file, env });
  assert.deepEqual(Object.fromEntries(secrets.values), { BOTH: 'from-file', FILE_ONLY: 'f', ENV_ONLY: 'e' });
  assert.match(secrets.describeLookup('X'), new RegExp(`${file.replace(/[.]/g, '\\.')}.*STRATA_SECRET_X`));

  const envOnly = await loadSecrets({ env });
  assert.deepEqual(Object.fromEntries(envOnly.values), { BOTH: 'from-env', ENV_ONLY: 'e' });
  assert.match(envOnly.describeLookup('X'), /^the environment variable STRATA_SECRET_X; no --secrets file was given$/);

  await assert.rejects(loadSecrets({ file: join(dir, 'absent.env'), env: {} }), (error: unknown) => {
    assert.ok(error instanceof StrataError);
    assert.equal(error.code, 'STRATA_USAGE');
    assert.match(error.message, /absent\.env/);
    return true;
  });
});

const secretsOf = (values: Record<string, string>): Secrets => ({ values: new Map(Object.entries(values)), describeLookup: (name) => `the test's map (${name})` });

test('a SECRET ENV without a value: one error naming each secret, its Layerfile:line and where it looked', () => {
  const { layerfile } = parseLayerfile('FROM vm/debian:12\nSECRET ENV GIVEN\nRUN true\nSECRET ENV MISSING_ONE OTHER\n', 'app/Layerfile');
  assert.doesNotThrow(() => assertSecretsPresent([layerfile], secretsOf({ GIVEN: 'g', MISSING_ONE: 'm', OTHER: 'o' })));
  assert.throws(
    () => assertSecretsPresent([layerfile], secretsOf({ GIVEN: 'g', OTHER: 'o' })),
    (error: unknown) => {
      assert.ok(error instanceof StrataError);
      assert.equal(error.code, 'STRATA_SECRET');
      assert.equal(error.message, "app/Layerfile:4: SECRET ENV MISSING_ONE has no value (looked in the test's map (MISSING_ONE))");
      return true;
    },
  );
  assert.throws(() => assertSecretsPresent([layerfile], secretsOf({})), /3 secrets have no value:\napp\/Layerfile:2: SECRET ENV GIVEN .*\napp\/Layerfile:4: SECRET ENV MISSING_ONE .*\napp\/Layerfile:4: SECRET ENV OTHER /);
  assert.deepEqual(secretValuesFor(['GIVEN'], secretsOf({ GIVEN: 'g', OTHER: 'o' }), 'ctx'), { GIVEN: 'g' });
  assert.throws(() => secretValuesFor(['GONE'], secretsOf({}), 'app/Layerfile'), /app\/Layerfile: secret GONE has no value/);
});

test('mask: every value of 3+ characters, longest first, overlapping and nested values as one run', () => {
  const masker = new SecretMasker(['hunter2', 'hunter2-long-version', 'ab', 'abcd', 'cdxy']);
  assert.equal(masker.mask('token=hunter2 and hunter2!'), 'token=*** and ***!');
  assert.equal(masker.mask('hunter2-long-version.'), '***.', 'the longer value is masked whole, not as ***-long-version');
  assert.equal(masker.mask('ab is too short to mask'), 'ab is too short to mask');
  // "abcdxy" is "abcd" overlapping "cdxy": no part of either may show.
  assert.equal(masker.mask('[abcdxy]'), '[***]');
  assert.equal(masker.mask('hunter2hunter2'), '***');
  assert.equal(new SecretMasker([]).mask('hunter2'), 'hunter2');
  assert.equal(new SecretMasker(['x', '', 'yz']).active, false);
});

/** Streams `chunks` through one stream masker. */
function streamed(masker: SecretMasker, chunks: string[]): string {
  const stream = masker.stream();
  return chunks.map((c) => stream.write(c)).join('') + stream.end();
}

test('stream masking: a value split at any point across two chunks, or one character per chunk, is masked', () => {
  const masker = new SecretMasker(['hunter2', 'abcd', 'cdxy', 's3cr3t-value']);
  const texts = ['token is hunter2\n', 'hunter2', 'xhunter2hunter2y', 'abcdxy', 'zabcdz', 'cdcdxy', 'hunte', 'abc', 's3cr3t-valu', 'a s3cr3t-value and hunter2.'];
  for (const text of texts) {
    const whole = masker.mask(text);
    for (let split = 0; split <= text.length; split++) {
      assert.equal(streamed(masker, [text.slice(0, split), text.slice(split)]), whole, `${JSON.stringify(text)} split at ${split}`);
    }
    assert.equal(streamed(masker, [...text]), whole, `${JSON.stringify(text)} one character at a time`);
  }
  // A prefix of a value that never completes comes out at the end, unmasked (it is not the value).
  assert.equal(streamed(masker, ['ends with hunt']), 'ends with hunt');
  // Held back only while it could still become a value.
  const stream = masker.stream();
  assert.equal(stream.write('hello hun'), 'hello ');
  assert.equal(stream.write('ter2 bye'), '*** bye');
  assert.equal(stream.end(), '');
});

test('maskingReporter: output per runner/step/stream, flushed when the step ends; messages masked too', () => {
  const events: Array<{ kind: string; data: string }> = [];
  const inner: Reporter = {
    onRunnerStart: (e) => events.push({ kind: 'plan', data: e.plan }),
    onStepOutput: (e) => events.push({ kind: `out ${e.runner}#${e.step} ${e.stream}`, data: e.data }),
    onStepStatus: (e) => events.push({ kind: `status ${e.runner}#${e.step} ${e.status}`, data: e.explanation?.message ?? '' }),
    onRunnerEnd: (e) => events.push({ kind: `end ${e.runner}`, data: e.message ?? '' }),
  };
  const reporter = maskingReporter(inner, new SecretMasker(['hunter2']), () => 0);
  reporter.onRunnerStart?.({ runner: 'a', plan: 'plan mentions hunter2' });
  reporter.onStepStatus?.({ runner: 'a', step: 0, status: 'running', explanation: { cached: false, message: 'because hunter2' } });
  reporter.onStepOutput?.({ runner: 'a', step: 0, stream: 'stdout', data: 'is hun', timeMs: 0 });
  // Another stream and another runner in between do not mix with a's stdout.
  reporter.onStepOutput?.({ runner: 'a', step: 0, stream: 'stderr', data: 'ter2', timeMs: 0 });
  reporter.onStepOutput?.({ runner: 'b', step: 0, stream: 'stdout', data: 'ter2', timeMs: 0 });
  reporter.onStepOutput?.({ runner: 'a', step: 0, stream: 'stdout', data: 'ter2; then hu', timeMs: 0 });
  reporter.onStepStatus?.({ runner: 'a', step: 0, status: 'failed' });
  reporter.onRunnerEnd?.({ runner: 'a', status: 'failure', message: 'step 1 failed: hunter2' });
  reporter.onRunnerEnd?.({ runner: 'b', status: 'success' });
  assert.deepEqual(events, [
    { kind: 'plan', data: 'plan mentions ***' },
    { kind: 'status a#0 running', data: 'because ***' },
    { kind: 'out a#0 stdout', data: 'is ' },
    { kind: 'out a#0 stderr', data: 'ter2' },
    { kind: 'out b#0 stdout', data: 'ter2' },
    { kind: 'out a#0 stdout', data: '***; then ' },
    { kind: 'out a#0 stdout', data: 'hu' },
    { kind: 'status a#0 failed', data: '' },
    { kind: 'end a', data: 'step 1 failed: ***' },
    { kind: 'end b', data: '' },
  ]);
  assert.equal(maskingReporter(inner, new SecretMasker([]), () => 0), inner, 'no secrets: the reporter is passed through');
});
