// Docker inside a machine, end to end: docker.io from Debian's archive, an image built FROM scratch (no
// registry here) and run; then, on the next commit, RUN REPEATABLE restarts from the previous build's
// state, so docker's layer cache (in /var/lib/docker, part of the snapshot) is still there and only the
// changed layer is rebuilt. Twice: in a system machine (every vm/ image: the packaged daemon, started by
// systemd on install and again after the restore, as on a VM; the Layerfile says nothing about strata),
// and in a container machine (hosts without system machines: dockerd started by strata-dockerd in a user
// namespace of its own, --network none). In both, docker's root is not the host's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot } from '../helpers/env.js';
import { createGitRepo, createTestEngine, stepId } from '../helpers/engine.js';

const dockerfile = `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY message.txt /message.txt
CMD ["/bin/sh", "-c", "echo \\"container says: $(cat /message.txt) as uid $(id -u)\\""]
`;

/** The daemon's uid map as the machine sees it: "<uid inside> <uid outside> <count>" of its first range. */
const daemonUidMap = `echo "daemon-uid-map=$(head -n1 /proc/$(pidof dockerd)/uid_map | tr -s ' ' | sed 's/^ //')"`;

interface DockerCase {
  layerfile: string;
  /** Steps: the build step and the step that runs the container. */
  buildStep: number;
  runStep: number;
  /** What the daemon's uid map must show (docker's root mapped away from the host's). */
  uidMap: RegExp;
}

async function buildRunRebuild(t: import('node:test').TestContext, docker: DockerCase): Promise<void> {
  const repo = createGitRepo(t, {
    Layerfile: docker.layerfile,
    'image/Dockerfile': dockerfile,
    'image/message.txt': 'first',
  });
  const engine = await createTestEngine(t);

  const first = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(first.result.status, 'success', [...first.output.values()].join(''));
  const build = first.output.get(stepId(docker.buildStep)) ?? '';
  assert.match(build, /Successfully tagged hello:latest/, build);
  const check = first.output.get(stepId(docker.runStep)) ?? '';
  assert.match(check, /container says: first as uid 0/, check);
  assert.match(check, docker.uidMap, check);

  repo.commit('second message', { 'image/message.txt': 'second' });
  const second = await engine.run({ repoDir: repo.dir, commit: 'HEAD' });
  assert.equal(second.result.status, 'success', [...second.output.values()].join(''));
  assert.ok(!second.ran.includes(stepId(0)), `apt-get did not run again: ${second.ran.join(', ')}`);
  const rebuild = second.output.get(stepId(docker.buildStep)) ?? '';
  // The busybox layers come from the cache the first build left in the snapshot; the message layer is new.
  assert.equal(rebuild.match(/Using cache/g)?.length, 2, rebuild);
  assert.match(second.output.get(stepId(docker.runStep)) ?? '', /container says: second as uid 0/);
}

test('docker in a system machine as on a VM: the packaged daemon runs after apt-get install and after a restore; build, run on the bridge network; REPEATABLE keeps the layer cache', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  await buildRunRebuild(t, {
    layerfile: `FROM vm/debian:12
RUN apt-get update -q && apt-get install -q --no-install-recommends docker.io busybox-static >/dev/null && docker --version
COPY . /app
RUN REPEATABLE rm -rf /tmp/ctx && cp -r /app/image /tmp/ctx && cp /bin/busybox /tmp/ctx/ && docker build -t hello /tmp/ctx
RUN docker run --rm hello && ${daemonUidMap}
`,
    buildStep: 2,
    runStep: 3,
    // Root of the machine (the daemon's uid 0) is a host uid from strata's ranges (from 2^30), never 0.
    uidMap: /daemon-uid-map=0 (\d{10,}) 65536\n/,
  });
});

test('docker in a container machine: dockerd started by strata-dockerd in a user namespace of its own, --network none', { timeout: 300_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const previous = process.env.STRATA_SYSTEM_MACHINES;
  process.env.STRATA_SYSTEM_MACHINES = '0';
  t.after(() => {
    if (previous === undefined) delete process.env.STRATA_SYSTEM_MACHINES;
    else process.env.STRATA_SYSTEM_MACHINES = previous;
  });
  await buildRunRebuild(t, {
    layerfile: `FROM vm/debian:12
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io uidmap busybox-static >/dev/null && docker --version
COPY . /app
RUN BACKGROUND strata-dockerd
RUN REPEATABLE strata-dockerd wait && rm -rf /tmp/ctx && cp -r /app/image /tmp/ctx && cp /bin/busybox /tmp/ctx/ && docker build -t hello /tmp/ctx
RUN docker run --rm --network none hello && ${daemonUidMap}
`,
    buildStep: 3,
    runStep: 4,
    // The daemon's root is uid 100000 of the machine (whose own root is not the host's either).
    uidMap: /daemon-uid-map=0 100000 65536\n/,
  });
});
