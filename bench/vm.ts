// Machines as VMs (issue #12), measured as a user waits for them: the real CLI (`node bin/strata.js`,
// the build in dist/; run `npm run build` first), a whole process per run, on a temporary store.
// The example is a docker-compose app written as a user's Layerfile would be (webapp.io/docker:20.10,
// apt without -y, `docker-compose up -d --build`, two services on a user network, a published port):
// - its first run (apt, two image builds, compose up, the check), wall time of the whole CLI run;
// - a commit that changes only what the last step reads: the machine is restored from the snapshot
//   taken after `docker-compose up`, boots (systemd, docker, the containers that were running), and the
//   step curls the app. Measured: from the CLI's start until the app answered (the step prints the
//   time of its first successful curl; goal < 2 s), and the whole CLI run (restore, the step, its
//   snapshot, the machine's teardown).
// Not compared with BuildKit: the same flow on the host needs docker's bridge network, iptables and
// ip_forward on the host (state a bench must not leave), and BuildKit alone does not run the app.
// Needs root and Debian's archive (busybox-static); the image is built before anything is timed.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureImageTar } from '../src/images/ensure.js';
import { composeAppFiles } from '../test/helpers/composeApp.js';
import { removeStore } from '../test/helpers/store.js';
import type { BenchRow } from './types.js';
import { benchRepo, formatShort, median } from './util.js';

const cli = fileURLToPath(new URL('../bin/strata.js', import.meta.url));
const image = 'webapp.io/docker:20.10';
const RESTORES = 5;

const files: Record<string, string> = {
  Layerfile: `FROM ${image}
RUN apt-get update -q && apt-get install -q busybox-static
COPY . /app
WORKDIR /app
RUN cp /bin/busybox web/ && cp /bin/busybox api/ && docker-compose up -d --build
RUN cat check.txt && until curl -sf localhost:8000/ >/dev/null; do sleep 0.02; done && echo "answered-at=$(date +%s%3N)" && curl -sf localhost:8000/
`,
  ...composeAppFiles({ web: 'hello from web\n', api: 'hello from api\n' }),
  'check.txt': 'check 0\n',
};

interface CliRun {
  wallMs: number;
  /** Epoch ms when the CLI process was spawned. */
  startedAt: number;
  stdout: string;
}

function runCli(args: string[]): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const startedAt = Date.now();
    const start = performance.now();
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const wallMs = performance.now() - start;
      if (code === 0) resolve({ wallMs, startedAt, stdout });
      else reject(new Error(`strata ${args.join(' ')} exited ${code}\n${stdout.slice(-3000)}\n${stderr.slice(-3000)}`));
    });
  });
}

export async function benchVm(): Promise<BenchRow[]> {
  if (!existsSync(join(cli, '..', '..', 'dist', 'cli', 'main.js'))) throw new Error('bench vm: dist/ is missing: run `npm run build` first');
  await ensureImageTar(image);
  const store = mkdtempSync(join(tmpdir(), 'strata-bench-vm-store-'));
  const repo = benchRepo(files);
  try {
    const run = () => runCli(['run', '--plain', '--store', store, '--commit', 'HEAD', repo.dir]);
    const first = await run();
    if (!/hello from web/.test(first.stdout)) throw new Error(`bench vm: the first run did not reach the app:\n${first.stdout.slice(-3000)}`);

    const untilAnswer: number[] = [];
    const walls: number[] = [];
    for (let i = 1; i <= RESTORES; i++) {
      repo.commit({ 'check.txt': `check ${i}\n` });
      const restored = await run();
      const answeredAt = /answered-at=(\d+)/.exec(restored.stdout)?.[1];
      if (answeredAt === undefined || !restored.stdout.includes(`check ${i}`)) throw new Error(`bench vm: restore ${i} did not answer:\n${restored.stdout.slice(-3000)}`);
      if (/docker-compose up -d --build — running/.test(restored.stdout)) throw new Error('bench vm: docker-compose up ran again: the restore was not from its snapshot');
      untilAnswer.push(Number(answeredAt) - restored.startedAt);
      walls.push(restored.wallMs);
    }
    return [
      { name: 'vm: compose example, first run (strata run, whole CLI process)', medianMs: first.wallMs, note: 'apt, 2 image builds, compose up, curl; 1 run' },
      {
        name: 'vm: restore of the running compose app until it answers HTTP (from the CLI\'s start)',
        medianMs: median(untilAnswer),
        goalMs: 2000,
        note: `${RESTORES} restores, min ${formatShort(Math.min(...untilAnswer))}, max ${formatShort(Math.max(...untilAnswer))}`,
      },
      { name: 'vm: the same restore, whole CLI run (the step, its snapshot, teardown)', medianMs: median(walls), note: `${RESTORES} runs` },
    ];
  } finally {
    repo.remove();
    await removeStore(store);
  }
}
