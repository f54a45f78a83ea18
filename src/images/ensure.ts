// Base images as committed snapshots. `ensureImage` returns the snapshot for an image name, building it
// when the store lacks it: from the host-wide image cache (a tar per recipe hash, so throwaway stores
// and test runs do not rerun mmdebstrap), else with mmdebstrap into that cache first.
//
// The cache tar is written under a temporary name and renamed (a crash never leaves half a tar under
// the final name), and one builder at a time holds `<hash>.lock` (holding its pid, so a lock left by a
// dead process is taken over) while the others wait for the tar.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../errors.js';
import { snapshotKey, snapshotName, type SnapshotName, type SnapshotStore } from '../snapshot/types.js';
import { execOrThrow } from '../util/exec.js';
import { stageNode, nodeHooks } from './node.js';
import { defaultSiteImageTablePath, findRecipe, imageTablePath, loadImageTable, recipeHash, type ImageRecipe } from './table.js';
import { isProcessAlive } from '../util/process.js';

export type ImageProgressPhase = 'cached' | 'wait' | 'check-mirror' | 'download' | 'extract' | 'commit';

export interface ImageProgress {
  image: string;
  phase: ImageProgressPhase;
  message: string;
}

export interface EnsureImageOptions {
  onProgress?: (progress: ImageProgress) => void;
  /** The built-in image table file (default: $STRATA_IMAGE_TABLE, else config/images.json). */
  tablePath?: string;
  /** The site's table merged over it when the file exists (default /etc/strata/images.json; null: none). */
  siteTablePath?: string | null;
  /** Host-wide cache of built images (default: $STRATA_IMAGE_CACHE, else /var/cache/strata/images). */
  cacheDir?: string;
  /** How long to wait for the mirror's Release file before calling it unreachable. */
  mirrorTimeoutMs?: number;
}

export interface EnsuredImage {
  image: string;
  /** The committed snapshot holding the image's root filesystem. */
  snapshot: SnapshotName;
  recipeHash: string;
  /** How it was obtained: already in the store, extracted from the host cache, or built now. */
  source: 'store' | 'cache' | 'built';
}

export const defaultImageCacheDir = '/var/cache/strata/images';

/** The snapshot name of an image: readable, and unique per recipe. */
export function imageSnapshotName(image: string, hash: string): SnapshotName {
  return snapshotName(`image.${image.replace(/[^A-Za-z0-9]+/g, '-')}.${hash.slice(0, 16)}`);
}

/** Builds in progress per store and snapshot name: concurrent callers share one extraction. */
const inProgress = new WeakMap<SnapshotStore, Map<string, Promise<EnsuredImage>>>();

export async function ensureImage(
  store: SnapshotStore,
  image: string,
  options: EnsureImageOptions = {},
): Promise<EnsuredImage> {
  const table = await loadImageTable(imageTablePath(options.tablePath), siteTablePathOf(options));
  const tablePath = table.path;
  const recipe = findRecipe(table, image);
  const hash = recipeHash(recipe);
  const name = imageSnapshotName(image, hash);
  let builds = inProgress.get(store);
  if (!builds) inProgress.set(store, (builds = new Map()));
  const running = builds.get(name);
  if (running) return running;
  const build = ensureImageIn(store, image, recipe, hash, name, tablePath, options);
  builds.set(name, build);
  try {
    return await build;
  } finally {
    builds.delete(name);
  }
}

async function ensureImageIn(
  store: SnapshotStore,
  image: string,
  recipe: ImageRecipe,
  hash: string,
  name: SnapshotName,
  tablePath: string,
  options: EnsureImageOptions,
): Promise<EnsuredImage> {
  const progress = (phase: ImageProgressPhase, message: string): void => options.onProgress?.({ image, phase, message });

  if (await store.has(name)) return { image, snapshot: name, recipeHash: hash, source: 'store' };

  const { tarPath, source } = await cachedTarFor(image, recipe, hash, tablePath, options);

  progress('extract', `extracting into snapshot ${name}`);
  const buildKey = snapshotKey(`image-build.${hash.slice(0, 16)}.${randomBytes(4).toString('hex')}`);
  const { path } = await store.prepare(buildKey);
  try {
    await execOrThrow(
      'tar',
      ['--extract', '--file', tarPath, '--directory', path, '--numeric-owner', '--same-owner', '--preserve-permissions', '--xattrs', '--xattrs-include=*'],
      { errorCode: 'STRATA_IMAGE', timeoutMs: 10 * 60_000 },
    );
    await provideResolvConf(path);
    progress('commit', `committing ${name}`);
    try {
      await store.commit(buildKey, name);
    } catch (error) {
      // Another process using this store committed the same image meanwhile: same recipe, same content.
      if (!(await store.has(name))) throw error;
    }
  } finally {
    await store.remove(buildKey);
  }
  return { image, snapshot: name, recipeHash: hash, source };
}

/** The host cache's tarball of an image's root filesystem, built first if absent. */
async function cachedTarFor(
  image: string,
  recipe: ImageRecipe,
  hash: string,
  tablePath: string,
  options: EnsureImageOptions,
): Promise<{ tarPath: string; source: 'cache' | 'built' }> {
  const progress = (phase: ImageProgressPhase, message: string): void => options.onProgress?.({ image, phase, message });
  const cacheDir = options.cacheDir ?? process.env.STRATA_IMAGE_CACHE ?? defaultImageCacheDir;
  const tarPath = join(cacheDir, `${hash}.tar`);
  if (await exists(tarPath)) {
    progress('cached', `using cached ${tarPath}`);
    return { tarPath, source: 'cache' };
  }
  return { tarPath, source: await buildCachedTar({ image, recipe, tablePath, cacheDir, tarPath, progress, ...options }) };
}

/**
 * The host cache's tarball of `image` (built from its recipe if absent), for callers that need the root
 * filesystem without a snapshot store — e.g. tests that lay an overlay over one extracted copy.
 */
export async function ensureImageTar(image: string, options: EnsureImageOptions = {}): Promise<{ tarPath: string; recipeHash: string }> {
  const table = await loadImageTable(imageTablePath(options.tablePath), siteTablePathOf(options));
  const tablePath = table.path;
  const recipe = findRecipe(table, image);
  const hash = recipeHash(recipe);
  const { tarPath } = await cachedTarFor(image, recipe, hash, tablePath, options);
  return { tarPath, recipeHash: hash };
}

function siteTablePathOf(options: EnsureImageOptions): string | null {
  return options.siteTablePath === undefined ? defaultSiteImageTablePath : options.siteTablePath;
}

async function exists(path: string): Promise<boolean> {
  return access(path, constants.F_OK).then(
    () => true,
    () => false,
  );
}

/**
 * The machine needs a resolver configuration. mmdebstrap copies the building host's; a loopback
 * resolver (systemd-resolved's 127.0.0.53) would not answer inside a machine's own network namespace.
 */
async function provideResolvConf(root: string): Promise<void> {
  const target = join(root, 'etc', 'resolv.conf');
  const host = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  const hostUsable = /^nameserver\s+/m.test(host) && !/^nameserver\s+(127\.|::1)/m.test(host);
  const current = await readFile(target, 'utf8').catch(() => '');
  if (hostUsable) {
    if (current !== host) {
      await rm(target, { force: true }); // may be a dangling symlink
      await writeFile(target, host);
    }
  } else if (!/^nameserver\s+/m.test(current) || /^nameserver\s+(127\.|::1)/m.test(current)) {
    await rm(target, { force: true });
    await writeFile(target, 'nameserver 1.1.1.1\nnameserver 8.8.8.8\n');
  }
}

interface BuildRequest extends EnsureImageOptions {
  image: string;
  recipe: ImageRecipe;
  tablePath: string;
  cacheDir: string;
  tarPath: string;
  progress: (phase: ImageProgressPhase, message: string) => void;
}

/** Makes `tarPath` exist: builds it under the lock, or waits for the builder that holds the lock. */
async function buildCachedTar(request: BuildRequest): Promise<'cache' | 'built'> {
  const { tarPath, progress } = request;
  await mkdir(request.cacheDir, { recursive: true });
  const lockPath = `${tarPath}.lock`;
  const deadline = Date.now() + 30 * 60_000;
  for (;;) {
    if (await exists(tarPath)) return 'cache';
    if (await tryLock(lockPath)) break;
    if (Date.now() > deadline) {
      throw new StrataError('STRATA_IMAGE', `gave up waiting for another build of ${request.image} (lock ${lockPath})`);
    }
    progress('wait', `waiting for another build of ${request.image} (${lockPath})`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  try {
    if (await exists(tarPath)) return 'cache'; // finished between our check and our lock
    await checkPrerequisites(request);
    const temp = `${tarPath}.tmp-${randomBytes(6).toString('hex')}`;
    const nodeStage = `${tarPath}.node-${randomBytes(6).toString('hex')}`;
    try {
      const extraHooks: string[] = [];
      if (request.recipe.node !== undefined) {
        progress('download', `fetching Node.js ${request.recipe.node.version} from the npm registry for ${request.image}`);
        const staged = await stageNode(request.recipe.node, nodeStage, request.image);
        progress('download', `Node.js ${staged.nodeVersion}, npm ${staged.npmVersion}`);
        extraHooks.push(...nodeHooks(staged));
      }
      progress('download', `building ${request.image} with mmdebstrap (${request.recipe.suite} from ${request.recipe.mirror})`);
      await execOrThrow('mmdebstrap', mmdebstrapArgs(request.recipe, temp, extraHooks), {
        errorCode: 'STRATA_IMAGE',
        timeoutMs: 20 * 60_000,
        hint: `building base image ${request.image} (image table ${request.tablePath}) failed`,
      });
      await rename(temp, tarPath);
    } finally {
      await rm(temp, { force: true });
      await rm(nodeStage, { recursive: true, force: true });
    }
    return 'built';
  } finally {
    await rm(lockPath, { force: true });
  }
}

/** Creates the lock file holding our pid; takes over a lock whose process is gone. */
async function tryLock(lockPath: string): Promise<boolean> {
  if (await tryLockOnce(lockPath)) return true;
  const holder = Number.parseInt(await readFile(lockPath, 'utf8').catch(() => ''), 10);
  const alive = Number.isInteger(holder) && holder > 0 && isProcessAlive(holder);
  // An empty lock may be one being written this instant: only a stale-looking old one is taken over.
  const age = Date.now() - ((await stat(lockPath).catch(() => undefined))?.mtimeMs ?? Date.now());
  if (alive || (!Number.isInteger(holder) && age <= 10_000)) return false;
  await rm(lockPath, { force: true });
  return tryLockOnce(lockPath);
}

async function tryLockOnce(lockPath: string): Promise<boolean> {
  try {
    const handle = await open(lockPath, 'wx');
    await handle.writeFile(String(process.pid));
    await handle.close();
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/** Fails fast, naming image, table and mirror, instead of letting mmdebstrap fail after minutes. */
async function checkPrerequisites(request: BuildRequest): Promise<void> {
  const { image, recipe, tablePath } = request;
  const releaseUrl = `${recipe.mirror.replace(/\/+$/, '')}/dists/${recipe.suite}/Release`;
  request.progress('check-mirror', `checking ${releaseUrl}`);
  const timeoutMs = request.mirrorTimeoutMs ?? 5000;
  let problem: string | undefined;
  try {
    const response = await fetch(releaseUrl, { method: 'HEAD', signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) problem = `HTTP ${response.status} for ${releaseUrl}`;
  } catch (error) {
    const cause = (error as Error & { cause?: Error }).cause;
    problem =
      (error as Error).name === 'TimeoutError'
        ? `no answer from ${releaseUrl} within ${timeoutMs} ms`
        : `${releaseUrl}: ${cause?.message ?? (error as Error).message}`;
  }
  if (problem !== undefined) {
    throw new StrataError(
      'STRATA_IMAGE',
      `cannot build base image ${image}: its mirror ${recipe.mirror} is unreachable (${problem}); image table ${tablePath}`,
      { hint: `point the recipe of ${image} in ${tablePath} at a reachable mirror, or use another image` },
    );
  }
  if (recipe.keyring !== undefined && !(await exists(recipe.keyring))) {
    throw new StrataError(
      'STRATA_IMAGE',
      `cannot build base image ${image}: its keyring ${recipe.keyring} is missing on this host; image table ${tablePath}`,
      { hint: 'install the keyring package of that distribution (Ubuntu: ubuntu-keyring / ubuntu-archive-keyring)' },
    );
  }
}

/**
 * Packages every image has, whatever its recipe: what Layerfiles written for the hosted product's
 * Ubuntu VMs take for granted (sudo; terminfo and tput come with ncurses-base/-bin, which are essential).
 */
export const alwaysIncluded = ['sudo'] as const;

/**
 * What `sudo` keeps of the caller's environment: apt's non-interactive mode, the terminal, and the
 * CA variables of trust_host_ca (src/config/hostCa.ts), so `sudo npm install -g` and `sudo apt-get`
 * behave as the step itself does.
 */
const sudoEnvKeep = ['DEBIAN_FRONTEND', 'TERM', 'NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'PIP_CERT', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO'];

/** The docker resume unit of docs/design/system-container.md (a no-op unless strata provides the list). */
const resumeDockerUnit = [
  '[Unit]',
  'Description=strata: restart the docker containers that were running when the snapshot was taken',
  'ConditionPathExists=/run/strata/resume-containers',
  'ConditionPathExists=/usr/bin/docker',
  'After=docker.service',
  'Wants=docker.service',
  '',
  '[Service]',
  'Type=oneshot',
  "ExecStart=/bin/sh -c 'xargs -r docker start < /run/strata/resume-containers'",
  '',
  '[Install]',
  'WantedBy=multi-user.target',
];

/**
 * Runs at every boot of a system machine before docker: lists the containers that were running when the
 * snapshot was taken and would not come back by themselves (restart policy "no", compose's default), for
 * the resume unit. A snapshot is crash-consistent, so docker's own state still says Running. As on the
 * hosted product (which kept memory), a restored machine serves what it served.
 */
const resumeCaptureScript = [
  '#!/bin/sh',
  'list=/run/strata/resume-containers',
  'mkdir -p /run/strata && : > "$list.tmp" || exit 0',
  'for d in /var/lib/docker/containers/*/; do',
  '  [ -f "$d/config.v2.json" ] && [ -f "$d/hostconfig.json" ] || continue',
  '  grep -q \'"Running":true\' "$d/config.v2.json" || continue',
  '  grep -Eq \'"RestartPolicy":[{]"Name":"(no)?"\' "$d/hostconfig.json" || continue',
  '  basename "$d" >> "$list.tmp"',
  'done',
  'mv "$list.tmp" "$list"',
];

const resumeCaptureUnit = [
  '[Unit]',
  'Description=strata: note the docker containers that were running when the snapshot was taken',
  'ConditionPathIsDirectory=/var/lib/docker/containers',
  'Before=docker.service strata-resume-docker.service',
  '',
  '[Service]',
  'Type=oneshot',
  'ExecStart=/bin/sh /usr/local/lib/strata/resume-capture.sh',
  '',
  '[Install]',
  'WantedBy=multi-user.target',
];

/** An mmdebstrap hook that writes `lines` to `path` in the image (single quotes escaped for sh). */
function writeFileHook(path: string, lines: readonly string[]): string {
  const quoted = lines.map((line) => `'${line.replace(/'/g, `'\\''`)}'`).join(' ');
  return `--customize-hook=mkdir -p "$(dirname "$1${path}")" && printf '%s\\n' ${quoted} > "$1${path}"`;
}

/** An mmdebstrap hook that enables a unit for multi-user.target, as `systemctl enable` would. */
function enableUnitHook(unit: string): string {
  return `--customize-hook=mkdir -p "$1/etc/systemd/system/multi-user.target.wants" && ln -sf /etc/systemd/system/${unit} "$1/etc/systemd/system/multi-user.target.wants/${unit}"`;
}

/**
 * Images for system-container machines (recipe `system: true`; docs/design/system-container.md;
 * bump systemImageHooksVersion in table.ts when these change):
 * - the kernel debug/tracing mounts fail in a user namespace and would leave systemd `degraded`: masked
 *   (a /dev/null link is what `systemctl mask` writes; the host need not have systemctl);
 * - docker inside must use overlay2: left alone it picks btrfs, whose nested subvolumes vanish from
 *   snapshots and block deleting the machine's subvolume;
 * - the units that note (before docker starts) and restart (after) the docker containers that ran
 *   when the snapshot was taken and have no restart policy of their own;
 * - a restore boots the machine, and a step must find the files the previous step left whether the
 *   machine kept running or was restored (the differential guarantee): /tmp and /var/tmp are not
 *   emptied at boot (an empty /etc/tmpfiles.d/tmp.conf overrides systemd's), and the timers that change
 *   the machine on a clock are masked (apt's daily download and upgrade, which on CI VMs also hold the
 *   dpkg lock a step's apt-get waits for; tmpfiles cleaning; dpkg's database backup; fstrim, e2scrub).
 */
const maskedUnits = [
  'sys-kernel-debug.mount',
  'sys-kernel-tracing.mount',
  'apt-daily.timer',
  'apt-daily-upgrade.timer',
  'systemd-tmpfiles-clean.timer',
  'dpkg-db-backup.timer',
  'e2scrub_all.timer',
  'fstrim.timer',
  'man-db.timer',
];
const systemImageHooks = [
  `--customize-hook=mkdir -p "$1/etc/systemd/system" && for unit in ${maskedUnits.join(' ')}; do ln -sf /dev/null "$1/etc/systemd/system/$unit"; done`,
  '--customize-hook=mkdir -p "$1/etc/tmpfiles.d" && : > "$1/etc/tmpfiles.d/tmp.conf"',
  '--customize-hook=mkdir -p "$1/etc/docker" && echo \'{"storage-driver": "overlay2"}\' > "$1/etc/docker/daemon.json"',
  writeFileHook('/etc/systemd/system/strata-resume-docker.service', resumeDockerUnit),
  enableUnitHook('strata-resume-docker.service'),
  writeFileHook('/usr/local/lib/strata/resume-capture.sh', resumeCaptureScript),
  writeFileHook('/etc/systemd/system/strata-resume-capture.service', resumeCaptureUnit),
  enableUnitHook('strata-resume-capture.service'),
];

export function mmdebstrapArgs(recipe: ImageRecipe, target: string, extraHooks: readonly string[] = []): string[] {
  const args = [
    `--variant=${recipe.variant}`,
    '--format=tar',
    `--components=${recipe.components.join(',')}`,
    '--aptopt=Acquire::Retries "3"',
    // The machine's identity and loopback names; resolv.conf is handled at extraction.
    '--customize-hook=echo strata > "$1/etc/hostname"',
    '--customize-hook=printf "127.0.0.1\\tlocalhost strata\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n" > "$1/etc/hosts"',
    // dpkg's fsync per unpacked file is wasted in a machine: strata's snapshot after the step persists
    // everything (btrfs flushes the subvolume's data when it snapshots it), and a crashed step's
    // machine is thrown away. Debian's own container images do the same (apt-get install 2-3x faster).
    '--customize-hook=mkdir -p "$1/etc/dpkg/dpkg.cfg.d" && echo force-unsafe-io > "$1/etc/dpkg/dpkg.cfg.d/strata-unsafe-io"',
    // apt answers yes, as on the hosted VMs: `apt-get install jq` without -y (104 of 185 public
    // Layerfiles) must not stop at "Do you want to continue?", whoever runs it (sudo, scripts).
    '--customize-hook=mkdir -p "$1/etc/apt/apt.conf.d" && echo \'APT::Get::Assume-Yes "true";\' > "$1/etc/apt/apt.conf.d/90strata-assume-yes"',
    // root and every user USER creates (it adds them to group root) sudo without a password.
    `--customize-hook=printf '%s\\n' 'Defaults env_keep += "${sudoEnvKeep.join(' ')}"' '%root ALL=(ALL:ALL) NOPASSWD: ALL' > "$1/etc/sudoers.d/strata" && chmod 0440 "$1/etc/sudoers.d/strata"`,
    // The mountpoint of trust_host_ca's certificates exists in the image, so no machine creates it.
    '--customize-hook=mkdir -p "$1/etc/strata/host-ca"',
    ...(recipe.system ? systemImageHooks : []),
    ...extraHooks,
  ];
  const include = [...new Set([...alwaysIncluded, ...recipe.include])];
  args.push(`--include=${include.join(',')}`);
  if (recipe.keyring !== undefined) args.push(`--keyring=${recipe.keyring}`);
  if (recipe.architecture !== undefined) args.push(`--architectures=${recipe.architecture}`);
  args.push(recipe.suite, target, recipe.mirror);
  return args;
}
