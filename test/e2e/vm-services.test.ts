// Services as on the VMs Layerfiles were written for (issue #12), through the real CLI on real machines:
// an image whose /sbin/init is systemd (vm/debian:12, and webapp.io/docker:20.10 built on it)
// boots as a system machine. Each Layerfile is written as a user's would be, with no strata-specific
// line: apt without -y, packages that start their services, docker-compose with a user network and a
// published port reached with curl in a later step and through EXPOSE WEBSITE; and the next commit
// restores the machine from the cache, where the services answer again without being started by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { composeAppFiles } from '../helpers/composeApp.js';
import { createGitRepo } from '../helpers/engine.js';
import { jsonEvents, runStrata, startStrata, stopAfterTest } from '../helpers/cli.js';
import { requireRoot } from '../helpers/env.js';
import { temporaryStore } from '../helpers/store.js';

/** The steps that ran (not cached) in a --json event stream. */
function stepsThatRan(stdout: string): number[] {
  const ran = jsonEvents(stdout).filter((e) => e.type === 'step-status' && (e.status === 'done' || e.status === 'failed')).map((e) => e.step ?? -1);
  return [...new Set(ran)].sort((a, b) => a - b);
}

/** The output of one step in a --json event stream. */
function outputOf(stdout: string, step: number): string {
  return jsonEvents(stdout).filter((e) => e.type === 'step-output' && e.step === step).map((e) => e.data ?? '').join('');
}

test('postgresql installed with apt runs in the next step without being started (service/systemctl manage it), and again after a restore', { timeout: 900_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const strata = stopAfterTest(t);
  const store = await temporaryStore(t, 'strata-vm-services-');
  const repo = createGitRepo(t, {
    Layerfile: `FROM vm/debian:12
RUN apt-get update -q && apt-get install -q postgresql
RUN service postgresql restart && systemctl is-active postgresql@15-main && su postgres -c "psql -tAc 'create table visits (n int); insert into visits values (41)'"
COPY . /app
RUN cat /app/version && su postgres -c "psql -tAc 'select n + 1 from visits'"
`,
    version: 'one\n',
  });
  const first = await strata.run(['run', '--plain', '--store', store, '--commit', 'HEAD', repo.dir]);
  assert.equal(first.code, 0, first.stderr + first.stdout);
  // (su from /root, which postgres may not enter, says so on stderr: that line may come in between.)
  assert.match(first.stdout, /\[main-layerfile:2\] active\n/, 'service restarts it through systemd');
  assert.match(first.stdout, /\[main-layerfile:4\] one\n/, first.stdout.slice(-2000));
  assert.match(first.stdout, /\[main-layerfile:4\] 42\n/, first.stdout.slice(-2000));

  // The step that reads /app/version reruns in a machine restored after the COPY: a VM's reboot from
  // that disk, where postgresql starts by itself (nobody re-runs `service postgresql start`).
  repo.commit('second version', { version: 'two\n' });
  const second = await strata.run(['run', '--json', '--store', store, '--commit', 'HEAD', repo.dir]);
  assert.equal(second.code, 0, second.stderr);
  assert.deepEqual(stepsThatRan(second.stdout), [3], 'only the step that read the changed file reran');
  const rerun = outputOf(second.stdout, 3);
  assert.match(rerun, /^two\n/m);
  assert.match(rerun, /^42\n/m, `the table created two steps earlier answers in the restored machine: ${rerun}`);
});

test('docker-compose with a user network and a published port: curl in a later step, EXPOSE WEBSITE, and served again after a restore', { timeout: 900_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const serving = stopAfterTest(t);
  const store = await temporaryStore(t, 'strata-vm-compose-');
  const repo = createGitRepo(t, {
    Layerfile: `FROM webapp.io/docker:20.10
RUN apt-get update -q && apt-get install -q busybox-static
COPY . /app
WORKDIR /app
RUN cp /bin/busybox web/ && cp /bin/busybox api/ && docker-compose up -d --build
RUN cat check.txt && curl -sf --retry 20 --retry-delay 1 --retry-all-errors localhost:8000/ && docker-compose exec -T web wget -qO- http://api/
EXPOSE WEBSITE localhost:8000
`,
    ...composeAppFiles({ web: 'hello from web\n', api: 'hello from api over appnet\n' }),
    'check.txt': 'first check\n',
  });
  const first = serving.track(startStrata(['run', '--plain', '--store', store, '--commit', 'HEAD', repo.dir]));
  const [, url] = await first.waitFor(/^preview: (http:\/\/127\.0\.0\.1:\d+\/) -> \S+ localhost:8000$/m, 840_000);
  const out = first.stdout();
  assert.match(out, /\[main-layerfile:\d+\] hello from web\n/, 'the published port answers on the machine\'s localhost');
  assert.match(out, /\[main-layerfile:\d+\] hello from api over appnet\n/, 'the containers reach each other by name on the user network');
  assert.equal(await (await fetch(url!)).text(), 'hello from web\n', 'EXPOSE WEBSITE serves the compose app');
  const stop = await runStrata(['stop', '--store', store]);
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal(await first.exited, 0, first.stderr());

  // The next commit changes what the last RUN read: the machine restored after `docker-compose up` boots,
  // and the app is back although its containers have compose's default restart policy ("no"): they ran
  // when the snapshot was taken, so the image's resume units start them again once docker is up (the
  // hosted product kept them running in memory). The step and the preview reach it again.
  repo.commit('second check', { 'check.txt': 'second check\n' });
  const second = serving.track(startStrata(['run', '--plain', '--store', store, '--commit', 'HEAD', repo.dir]));
  const [, again] = await second.waitFor(/^preview: (http:\/\/127\.0\.0\.1:\d+\/) -> \S+ localhost:8000$/m, 600_000);
  const secondOut = second.stdout();
  assert.match(secondOut, /\[main-layerfile:\d+\] second check\n/);
  assert.match(secondOut, /\[main-layerfile:\d+\] hello from web\n/);
  assert.match(secondOut, /\[main-layerfile:\d+\] hello from api over appnet\n/);
  assert.doesNotMatch(secondOut, /docker-compose up -d --build — running/, 'docker-compose up did not run again');
  assert.equal(await (await fetch(again!)).text(), 'hello from web\n');
  const stopAgain = await runStrata(['stop', '--store', store]);
  assert.equal(stopAgain.code, 0, stopAgain.stderr);
  assert.equal(await second.exited, 0, second.stderr());
});
