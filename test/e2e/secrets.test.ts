// SECRET ENV end to end on real machines and a real store: the machine gets the real value (its sha256
// is printed), every reported event shows it masked, nothing in the store (database, WAL, snapshot
// files, the loop image) holds it, only a changed value reruns from the SECRET ENV line on, a restored
// RUN BACKGROUND gets it again, and a missing secret fails before anything runs. Then the CLI's
// `strata run --secrets FILE` and `STRATA_SECRET_<NAME>`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StrataError } from '../../src/errors.js';
import type { Secrets } from '../../src/engine/secrets.js';
import { exec } from '../../src/util/exec.js';
import { createGitRepo, createTestEngine } from '../helpers/engine.js';
import { requireRoot } from '../helpers/env.js';
import { temporaryStore } from '../helpers/store.js';

// Steps: 0 COPY, 1 RUN, 2 SECRET ENV, 3 RUN (prints), 4 RUN BACKGROUND (needs the value to stay up), 5 RUN.
const LAYERFILE = `FROM vm/debian:12
COPY . /app
RUN echo before
SECRET ENV API_TOKEN
RUN echo "token is $API_TOKEN" && echo -n "$API_TOKEN" | sha256sum
RUN BACKGROUND [ -n "$API_TOKEN" ] || exit 3; exec sleep 1000
RUN cat /app/input
`;
const runner = 'main-layerfile';

const sha256 = (value: string): string => createHash('sha256').update(value).digest('hex');
const secretsOf = (values: Record<string, string>): Secrets => ({ values: new Map(Object.entries(values)), describeLookup: (name) => `the test's secrets (${name})` });
/** Distinct per test run, with a space and a quote so that nothing on the way re-parses it. */
const newSecret = (): string => `it's s3cr3t ${randomBytes(8).toString('hex')}`;

/** Files under `root` (not following symlinks; devices, FIFOs and sockets skipped) containing `value`. */
async function filesContaining(root: string, value: string): Promise<string[]> {
  const found = await exec('grep', ['-r', '-l', '-F', '--devices=skip', '-e', value, root]);
  // grep: 0 = found, 1 = not found, 2 = trouble (then the search proves nothing).
  if (found.exitCode !== 0 && found.exitCode !== 1) throw new Error(`grep failed: ${found.stderr}`);
  return found.stdout.split('\n').filter(Boolean);
}

test('SECRET ENV: injected at exec time, masked in every event, never stored, hashed into the key', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const repo = createGitRepo(t, { Layerfile: LAYERFILE, input: 'one\n' });
  const first = newSecret();
  const second = newSecret();
  const all: Array<{ output: Map<string, string>; steps: Array<{ message?: string | undefined }> }> = [];

  const run1 = await engine.run({ repoDir: repo.dir, commit: 'HEAD', secrets: secretsOf({ API_TOKEN: first }) });
  all.push(run1);
  assert.equal(run1.result.status, 'success');
  assert.deepEqual(run1.ran, [0, 1, 2, 3, 4, 5].map((i) => `${runner}#${i}`));
  assert.equal(run1.output.get(`${runner}#3`), `token is ***\n${sha256(first)}  -\n`, 'masked in the output; the hash proves the machine had the real value');
  assert.equal(run1.output.get(`${runner}#5`), 'one\n');

  const unchanged = await engine.run({ repoDir: repo.dir, commit: 'HEAD', secrets: secretsOf({ API_TOKEN: first }) });
  all.push(unchanged);
  assert.equal(unchanged.result.status, 'success');
  assert.deepEqual(unchanged.ran, [], 'an unchanged secret reruns nothing');

  // Restoring after the RUN BACKGROUND re-launches it: it exits 3 within the check unless the value
  // (stored by name only) is injected again.
  repo.commit('edit input', { input: 'two\n' });
  const relaunch = await engine.run({ repoDir: repo.dir, commit: 'HEAD', secrets: secretsOf({ API_TOKEN: first }) });
  all.push(relaunch);
  assert.equal(relaunch.result.status, 'success', JSON.stringify(relaunch.result.outcomes.get('Layerfile')?.message));
  assert.deepEqual(relaunch.ran, [`${runner}#5`]);
  assert.equal(relaunch.output.get(`${runner}#5`), 'two\n');

  const changed = await engine.run({ repoDir: repo.dir, commit: 'HEAD', secrets: secretsOf({ API_TOKEN: second, UNUSED: first }) });
  all.push(changed);
  assert.equal(changed.result.status, 'success');
  assert.deepEqual(changed.ran, [2, 3, 4, 5].map((i) => `${runner}#${i}`), 'a changed value reruns from the SECRET ENV line on');
  assert.equal(changed.output.get(`${runner}#3`), `token is ***\n${sha256(second)}  -\n`);

  for (const secrets of [secretsOf({}), undefined]) {
    await assert.rejects(engine.run({ repoDir: repo.dir, commit: 'HEAD', ...(secrets ? { secrets } : {}) }), (error: unknown) => {
      assert.ok(error instanceof StrataError);
      assert.equal(error.code, 'STRATA_SECRET');
      assert.match(error.message, /^Layerfile:4: SECRET ENV API_TOKEN has no value \(looked in .+\)$/);
      return true;
    });
  }

  for (const run of all) {
    for (const text of [...run.output.values(), ...run.steps.map((s) => s.message ?? '')]) {
      assert.ok(!text.includes(first) && !text.includes(second), `an event shows a secret: ${JSON.stringify(text)}`);
    }
  }
  // The whole store: SQLite database and WAL, every snapshot's files (the mounted btrfs root), and the
  // loop image underneath them (which also holds freed blocks).
  assert.ok(existsSync(join(engine.store, 'strata.db')));
  for (const value of [first, second]) {
    assert.deepEqual(await filesContaining(engine.store, value), [], 'no file of the store holds a secret value');
  }
});

test('the search finds a value a step wrote into the machine, so its "absent" above means something', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const engine = await createTestEngine(t);
  const marker = `written-${randomBytes(8).toString('hex')}`;
  const repo = createGitRepo(t, { Layerfile: `FROM vm/debian:12\nRUN echo ${marker.slice(0, 8)}""${marker.slice(8)} > /root/marker\n` });
  const run = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(run.result.status, 'success');
  assert.ok((await filesContaining(join(engine.store, 'snapshots'), marker)).some((f) => f.endsWith('/root/marker')));
});

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const entry = fileURLToPath(new URL('../cli/strata.ts', import.meta.url));

function strata(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(process.execPath, ['--import', 'tsx', entry, ...args], { cwd: repoRoot, env, timeout: 300_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

test('strata run --secrets FILE / STRATA_SECRET_<NAME>: the file wins, output masked, missing secret named', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const store = await temporaryStore(t, 'strata-e2e-secrets-');
  const repo = createGitRepo(t, { Layerfile: 'FROM vm/debian:12\nSECRET ENV API_TOKEN OTHER\nRUN echo "token is $API_TOKEN, other is $OTHER" && echo -n "$API_TOKEN$OTHER" | sha256sum\n' });
  const fromFile = newSecret();
  const fromEnv = newSecret();
  const secretsFile = join(store, '..', `${store.split('/').pop()}.env`);
  t.after(() => rm(secretsFile, { force: true }));
  await writeFile(secretsFile, `# test secrets\nAPI_TOKEN="${fromFile.replace(/"/g, '\\"')}"\n`);
  const env = { ...process.env, STRATA_SECRET_API_TOKEN: 'loses-to-the-file', STRATA_SECRET_OTHER: fromEnv };

  const ok = await strata(['run', '--store', store, '--json', '--commit', 'HEAD', '--secrets', secretsFile, repo.dir], env);
  assert.equal(ok.code, 0, ok.stderr);
  const output = ok.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { type: string; step?: number; data?: string })
    .filter((e) => e.type === 'step-output' && e.step === 1)
    .map((e) => e.data)
    .join('');
  assert.equal(output, `token is ***, other is ***\n${sha256(fromFile + fromEnv)}  -\n`);
  for (const value of [fromFile, fromEnv, 'loses-to-the-file']) assert.ok(!ok.stdout.includes(value) && !ok.stderr.includes(value));

  const { STRATA_SECRET_OTHER: _dropped, ...withoutOther } = env;
  const missing = await strata(['run', '--store', store, '--plain', '--commit', 'HEAD', '--secrets', secretsFile, repo.dir], withoutOther);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, new RegExp(`Layerfile:2: SECRET ENV OTHER has no value \\(looked in the secrets file ${secretsFile.replace(/[.]/g, '\\.')} and the environment variable STRATA_SECRET_OTHER\\)`));
  assert.doesNotMatch(missing.stdout, /token is/, 'nothing ran');
});
