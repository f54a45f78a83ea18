// The host config (/etc/strata/config.json): defaults without a file, validation with the file named,
// and the CA material trust_host_ca prepares from a bundle.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { isStrataError } from '../../src/errors.js';
import { defaultHostCaBundle, defaultHostConfig, hostConfigPath, loadHostConfig, parseHostConfig } from '../../src/config/hostConfig.js';
import { certificateFingerprint, HOST_CA_MOUNT, hostCaStartScript, prepareHostCaTrust, splitPemBundle } from '../../src/config/hostCa.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'strata-config-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('no config file means the defaults; the path comes from the option, then $STRATA_CONFIG', async (t) => {
  const dir = await tempDir(t);
  assert.deepEqual(await loadHostConfig(join(dir, 'absent.json')), defaultHostConfig());
  assert.deepEqual(defaultHostConfig(), { trust_host_ca: false, host_ca_bundle: defaultHostCaBundle });
  assert.equal(hostConfigPath(undefined, {}), '/etc/strata/config.json');
  assert.equal(hostConfigPath(undefined, { STRATA_CONFIG: '/x/c.json' }), '/x/c.json');
  assert.equal(hostConfigPath('/y.json', { STRATA_CONFIG: '/x/c.json' }), '/y.json');
});

test('a config file sets trust_host_ca, the bundle and the org name', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'config.json');
  await writeFile(path, JSON.stringify({ trust_host_ca: true, host_ca_bundle: '/srv/ca.pem', org_name: 'acme' }));
  assert.deepEqual(await loadHostConfig(path), { trust_host_ca: true, host_ca_bundle: '/srv/ca.pem', org_name: 'acme' });
});

test('an invalid config is an error naming the file and the setting', () => {
  const expectError = (text: string, ...fragments: string[]) =>
    assert.throws(
      () => parseHostConfig(text, '/etc/strata/config.json'),
      (error: unknown) => {
        assert.ok(isStrataError(error));
        assert.equal(error.code, 'STRATA_USAGE');
        for (const fragment of ['/etc/strata/config.json', ...fragments]) assert.ok(error.message.includes(fragment), `"${error.message}" lacks "${fragment}"`);
        return true;
      },
    );
  expectError('{"trust_host_ca": "yes"}', 'trust_host_ca');
  expectError('{"trust_host_ca": true, "trust_host_cert": true}', 'trust_host_cert');
  expectError('{"host_ca_bundle": "relative.pem"}', 'host_ca_bundle', 'absolute');
  expectError('{not json', 'invalid host config');
  expectError('[]', 'invalid host config');
});

/** A self-signed CA made with openssl, as PEM. */
function makeCa(dir: string, name: string): string {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.pem`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`], { stdio: 'ignore' });
  return execFileSync('cat', [cert], { encoding: 'utf8' });
}

test('trust_host_ca takes the bundle\'s certificates its distribution does not ship, content-addressed', async (t) => {
  const dir = await tempDir(t);
  const shipped = makeCa(dir, 'shipped-root');
  const site = makeCa(dir, 'site-inspection-ca');
  const distribution = join(dir, 'usr-share-ca-certificates', 'mozilla');
  await mkdir(distribution, { recursive: true });
  await writeFile(join(distribution, 'Shipped_Root.crt'), shipped);
  const bundle = join(dir, 'ca-certificates.crt');
  await writeFile(bundle, `${shipped}${site}`);
  assert.equal(splitPemBundle(await readFile(bundle, 'utf8')).length, 2);

  const workRoot = join(dir, 'run');
  const trust = await prepareHostCaTrust({ bundle, workRoot, distributionDir: join(dir, 'usr-share-ca-certificates') });
  assert.equal(trust.certificates, 1);
  const files = await readdir(trust.sourceDir);
  assert.deepEqual(files, [`${certificateFingerprint(site).slice(0, 32)}.crt`]);
  assert.equal(await readFile(join(trust.sourceDir, files[0] as string), 'utf8'), splitPemBundle(site)[0]);
  assert.deepEqual(trust.mount, { source: trust.sourceDir, destination: HOST_CA_MOUNT, readOnly: true });
  for (const name of ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'REQUESTS_CA_BUNDLE', 'PIP_CERT', 'GIT_SSL_CAINFO', 'CURL_CA_BUNDLE']) {
    assert.equal(trust.env[name], '/etc/ssl/certs/ca-certificates.crt', name);
  }
  // The same set again: the same directory; no temporary directory is left.
  const again = await prepareHostCaTrust({ bundle, workRoot, distributionDir: join(dir, 'usr-share-ca-certificates') });
  assert.equal(again.sourceDir, trust.sourceDir);
  assert.deepEqual(await readdir(workRoot), [trust.sourceDir.split('/').pop()]);

  // Without a distribution directory every certificate counts.
  const all = await prepareHostCaTrust({ bundle, workRoot, distributionDir: join(dir, 'absent') });
  assert.equal(all.certificates, 2);
  assert.notEqual(all.sourceDir, trust.sourceDir);

  await assert.rejects(prepareHostCaTrust({ bundle: join(dir, 'missing.crt'), workRoot }), /missing\.crt/);
});

test('the start script merges the certificates idempotently and drops ones the host no longer has', async (t) => {
  const dir = await tempDir(t);
  const site = makeCa(dir, 'site');
  const root = join(dir, 'machine');
  const src = join(root, HOST_CA_MOUNT);
  await mkdir(src, { recursive: true });
  await mkdir(join(root, 'etc/ssl/certs'), { recursive: true });
  await writeFile(join(root, 'etc/ssl/certs/ca-certificates.crt'), makeCa(dir, 'distro'));
  await mkdir(join(root, 'usr/local/share/ca-certificates/strata-host-ca'), { recursive: true });
  await writeFile(join(root, 'usr/local/share/ca-certificates/strata-host-ca/old.crt'), 'rotated away');
  await writeFile(join(src, 'site.crt'), site);
  // The script's absolute paths, rebased into the fake machine root.
  const script = hostCaStartScript().replaceAll(' /', ` ${root}/`).replace(/(src|dst|bundle)=\//g, `$1=${root}/`);
  for (let i = 0; i < 2; i++) execFileSync('bash', ['-c', script]);
  const bundle = await readFile(join(root, 'etc/ssl/certs/ca-certificates.crt'), 'utf8');
  assert.equal(splitPemBundle(bundle).length, 2, 'appended once');
  assert.ok(bundle.includes(site.trim()));
  assert.deepEqual(await readdir(join(root, 'usr/local/share/ca-certificates/strata-host-ca')), ['site.crt']);
});
