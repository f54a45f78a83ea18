// trust_host_ca: every machine trusts the CAs the host trusts, without a Layerfile change (a network
// that inspects TLS with its own CA makes `npm install` in a machine retry for minutes otherwise).
//
// How, and why this way:
// - The host side picks the certificates of its bundle that its distribution does not ship (those not
//   under /usr/share/ca-certificates: the site's own CAs) and writes them, one file each named by
//   fingerprint, into a content-addressed directory in the engine's state root (/run/strata/<store>/host-ca, removed at close). That directory is
//   bind-mounted read-only at /etc/strata/host-ca in every machine: never part of a snapshot.
// - At every machine start (fresh, restored, preview, shell) a small idempotent script copies them into
//   the machine's system store the Debian way: /usr/local/share/ca-certificates/strata-host-ca/ (so an
//   `update-ca-certificates` run by a Layerfile or a package keeps them) and appended to
//   /etc/ssl/certs/ca-certificates.crt when missing. Because it runs at every start, a restored
//   snapshot is never stale: a rotated host CA is in the next machine. The system bundle itself is not
//   bind-mounted: update-ca-certificates replaces it by rename, which fails on a mount point and would
//   break `apt-get install` of anything with a ca-certificates trigger (Java, ...).
// - Tools that ignore the system store get it through the environment of every process: Node
//   (NODE_EXTRA_CA_CERTS), Python requests/pip (REQUESTS_CA_BUNDLE, PIP_CERT), OpenSSL's default paths
//   (SSL_CERT_FILE), curl and git (CURL_CA_BUNDLE, GIT_SSL_CAINFO). They name the system bundle, so a
//   CA a Layerfile adds with update-ca-certificates counts too.
// The copies persist in the snapshots taken afterwards (they are files of the machine); with trust off,
// a restored machine keeps trusting what it was given before (docs/machine.md).
import { createHash, X509Certificate } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../errors.js';

/** Where the host's certificates appear in every machine (read-only). */
export const HOST_CA_MOUNT = '/etc/strata/host-ca';
/** The machine's system bundle, which the environment variables point at. */
export const MACHINE_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
const MACHINE_LOCAL_CA_DIR = '/usr/local/share/ca-certificates/strata-host-ca';

export interface HostCaTrust {
  /** Host directory of the certificates to trust, one `<fingerprint>.crt` each. */
  sourceDir: string;
  /** How many certificates that is (0: the host trusts nothing its distribution does not ship). */
  certificates: number;
  /** Read-only bind mount of sourceDir at HOST_CA_MOUNT. */
  mount: { source: string; destination: string; readOnly: true };
  /** Added to every process's environment in a machine (a step's own ENV wins). */
  env: Record<string, string>;
  /** Run as root at every machine start: merges the certificates into the system store (idempotent). */
  startScript: string;
}

/** The environment that points TLS clients which ignore the system store at it. */
export function hostCaEnv(bundle: string = MACHINE_CA_BUNDLE): Record<string, string> {
  return {
    NODE_EXTRA_CA_CERTS: bundle,
    SSL_CERT_FILE: bundle,
    REQUESTS_CA_BUNDLE: bundle,
    PIP_CERT: bundle,
    CURL_CA_BUNDLE: bundle,
    GIT_SSL_CAINFO: bundle,
  };
}

/** PEM certificates of a bundle, each normalised to `-----BEGIN...END-----\n`. */
export function splitPemBundle(text: string): string[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)].map((m) => `${m[0].replace(/\r\n/g, '\n')}\n`);
}

/** sha256 of a PEM certificate's DER bytes, hex (what `openssl x509 -fingerprint -sha256` shows). */
export function certificateFingerprint(pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');
}

/** The script a machine runs at start. Pure text; the certificate files come through the mount. */
export function hostCaStartScript(): string {
  return [
    'set -e',
    `src=${HOST_CA_MOUNT}; dst=${MACHINE_LOCAL_CA_DIR}; bundle=${MACHINE_CA_BUNDLE}`,
    'mkdir -p "$dst" "$(dirname "$bundle")"',
    // Certificates the host no longer trusts leave the local store (the next update-ca-certificates
    // drops them from the bundle too).
    'for f in "$dst"/*.crt; do [ -e "$f" ] || continue; [ -e "$src/${f##*/}" ] || rm -f "$f"; done',
    'for f in "$src"/*.crt; do',
    '  [ -e "$f" ] || continue',
    '  cmp -s "$f" "$dst/${f##*/}" || cp "$f" "$dst/${f##*/}"',
    // A full base64 line from the end lies in the signature, unique to the certificate: present in
    // the bundle means already appended.
    '  line=$(tail -n 3 "$f" | head -n 1)',
    '  grep -qxF -- "$line" "$bundle" 2>/dev/null || cat "$f" >> "$bundle"',
    'done',
  ].join('\n');
}

/**
 * Prepares the host side from the host's bundle: its certificates minus those its distribution ships
 * (`distributionDir`, Debian's /usr/share/ca-certificates; all of them when that directory is absent).
 */
export async function prepareHostCaTrust(options: { bundle: string; workRoot?: string; distributionDir?: string }): Promise<HostCaTrust> {
  const workRoot = options.workRoot ?? '/run/strata/host-ca';
  let bundleText: string;
  try {
    bundleText = await readFile(options.bundle, 'utf8');
  } catch (error) {
    throw new StrataError('STRATA_USAGE', `trust_host_ca: cannot read the host's CA bundle ${options.bundle}: ${(error as Error).message}`, {
      cause: error,
      hint: 'set host_ca_bundle in /etc/strata/config.json to the bundle this host trusts',
    });
  }
  const shipped = new Set<string>();
  for (const file of await listFiles(options.distributionDir ?? '/usr/share/ca-certificates')) {
    if (!file.endsWith('.crt')) continue;
    for (const pem of splitPemBundle(await readFile(file, 'utf8').catch(() => ''))) shipped.add(safeFingerprint(pem) ?? '');
  }
  const extra = new Map<string, string>();
  for (const pem of splitPemBundle(bundleText)) {
    const fingerprint = safeFingerprint(pem);
    if (fingerprint !== undefined && !shipped.has(fingerprint)) extra.set(fingerprint, pem);
  }
  const digest = createHash('sha256')
    .update([...extra.keys()].sort().join('\n'))
    .digest('hex')
    .slice(0, 16);
  const sourceDir = join(workRoot, digest);
  if (!(await isDirectory(sourceDir))) {
    // Written beside and renamed: a machine never mounts half a directory.
    await mkdir(workRoot, { recursive: true, mode: 0o755 });
    const temp = `${sourceDir}.tmp-${process.pid}-${Date.now()}`;
    await mkdir(temp, { mode: 0o755 });
    try {
      for (const [fingerprint, pem] of extra) await writeFile(join(temp, `${fingerprint.slice(0, 32)}.crt`), pem, { mode: 0o644 });
      await rename(temp, sourceDir).catch(async (error: NodeJS.ErrnoException) => {
        // Another process prepared the same set meanwhile.
        if (!(await isDirectory(sourceDir))) throw error;
      });
    } finally {
      await rm(temp, { recursive: true, force: true });
    }
  }
  return {
    sourceDir,
    certificates: extra.size,
    mount: { source: sourceDir, destination: HOST_CA_MOUNT, readOnly: true },
    env: hostCaEnv(),
    startScript: hostCaStartScript(),
  };
}

function safeFingerprint(pem: string): string | undefined {
  try {
    return certificateFingerprint(pem);
  } catch {
    return undefined; // not a parsable certificate: ignored, as OpenSSL would
  }
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile() || e.isSymbolicLink()).map((e) => join(e.parentPath, e.name));
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}
