// The S3 object store against a real S3-compatible server (s3rver in a child process, see
// test/helpers/s3Server.ts) reached through a fault-injecting proxy: the conformance suite with no
// faults, then what the store does when requests fail (retries, aborted uploads, broken downloads).
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { TestContext } from 'node:test';
import { test } from 'node:test';
import { createS3ObjectStore, type S3ObjectStoreOptions } from '../../src/objects/s3.js';
import type { ObjectStore } from '../../src/objects/types.js';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy.js';
import { startS3Server, type TestS3Server } from '../helpers/s3Server.js';
import { assertStoreError, getText, objectStoreConformance, randomStream, readAll, sha256Of, streamOf } from './conformance.js';

interface Harness {
  store: ObjectStore;
  server: TestS3Server;
  proxy: FaultProxy;
}

/** s3rver behind the fault proxy, and an S3 object store talking to the proxy; all closed after the test. */
async function openHarness(t: TestContext, overrides: Partial<S3ObjectStoreOptions> = {}): Promise<Harness> {
  const server = await startS3Server(t);
  const proxy = await startFaultProxy(t, server.endpoint);
  const store = createS3ObjectStore({
    endpoint: proxy.endpoint,
    region: server.region,
    bucket: server.bucket,
    credentials: server.credentials,
    forcePathStyle: true,
    partSizeBytes: 5 * 1024 * 1024, // S3's minimum: more parts per test
    listPageSize: 2, // more pages per listing
    ...overrides,
  });
  t.after(() => store.close());
  return { store, server, proxy };
}

objectStoreConformance({
  label: 's3 (s3rver)',
  open: async (t) => {
    const { store, server } = await openHarness(t);
    return { store, pendingUploads: () => server.pendingUploads() };
  },
});

const isPart = (request: { method: string; url: string }): boolean => request.method === 'PUT' && request.url.includes('partNumber=');
const isGet = (request: { method: string; url: string }): boolean => request.method === 'GET' && request.url.includes('x-id=GetObject');
const countOf = (proxy: FaultProxy, predicate: (request: { method: string; url: string }) => boolean): number =>
  proxy.requests.filter(predicate).length;

test('s3: a large put is a multipart upload of 5 MiB parts, and listing pages through', async (t) => {
  const { store, proxy } = await openHarness(t);
  await store.put('big', randomStream(12 * 1024 * 1024).stream);
  assert.equal(countOf(proxy, isPart), 3);
  assert.equal(countOf(proxy, (r) => r.method === 'POST' && r.url.includes('uploads')), 1);
  for (const key of ['p/1', 'p/2', 'p/3', 'p/4', 'p/5']) await store.put(key, streamOf(Buffer.from(key)));
  const before = countOf(proxy, (r) => r.url.includes('list-type=2'));
  assert.deepEqual(await store.list('p/'), ['p/1', 'p/2', 'p/3', 'p/4', 'p/5']);
  assert.equal(countOf(proxy, (r) => r.url.includes('list-type=2')) - before, 3, 'pages of 2 keys');
});

test('s3: a part answered 503 once, or whose connection drops mid-upload, is retried and the object is whole', async (t) => {
  const { store, proxy, server } = await openHarness(t);
  proxy.inject({ fault: { kind: 'status', status: 503 }, match: isPart });
  proxy.inject({ fault: { kind: 'drop', afterRequestBytes: 1024 * 1024 }, match: isPart });
  const { stream, sha256 } = randomStream(17 * 1024 * 1024);
  await store.put('retried', stream);
  assert.deepEqual(
    proxy.requests.filter((r) => r.fault !== undefined).map((r) => r.fault),
    ['status', 'drop'],
  );
  assert.equal(countOf(proxy, isPart), 4 + 2, 'four parts, two of them sent twice');
  assert.deepEqual(await sha256Of((await store.get('retried'))!), { sha256, bytes: 17 * 1024 * 1024 });
  assert.deepEqual(await server.pendingUploads(), []);
});

test('s3: a part that keeps failing fails the put, which aborts the upload: no object, no parts left', async (t) => {
  const { store, proxy, server } = await openHarness(t);
  await store.put('kept', streamOf(Buffer.from('old version')));
  proxy.inject({ fault: { kind: 'status', status: 500 }, match: (r) => isPart(r) && r.url.includes('partNumber=2'), times: Infinity });
  await assertStoreError(store.put('kept', randomStream(16 * 1024 * 1024).stream), /put kept .* failed .*InternalError \(HTTP 500 after 3 attempts\)/);
  assert.equal(countOf(proxy, (r) => r.method === 'DELETE' && r.url.includes('uploadId=')), 1, 'the upload was aborted');
  assert.deepEqual(await server.pendingUploads(), []);
  proxy.clear();
  assert.equal(await getText(store, 'kept'), 'old version');

  // A put that never existed before leaves nothing either.
  proxy.inject({ fault: { kind: 'status', status: 500 }, match: isPart, times: Infinity });
  await assertStoreError(store.put('new', randomStream(11 * 1024 * 1024).stream), /HTTP 500/);
  proxy.clear();
  assert.equal(await store.head('new'), undefined);
  assert.deepEqual(await store.list(''), ['kept']);
  assert.deepEqual(await server.pendingUploads(), []);
});

test('s3: when the abort fails too, the error says so (the parts stay for the lifecycle rules)', async (t) => {
  const { store, proxy, server } = await openHarness(t);
  proxy.inject({ fault: { kind: 'status', status: 500 }, match: isPart, times: Infinity });
  proxy.inject({ fault: { kind: 'status', status: 500 }, match: (r) => r.method === 'DELETE', times: Infinity });
  await assertStoreError(store.put('k', randomStream(11 * 1024 * 1024).stream), /HTTP 500.*aborting the multipart upload failed too/);
  assert.equal((await server.pendingUploads()).length, 1);
});

test('s3: a download cut mid-body makes the stream error, never end short', async (t) => {
  const { store, proxy } = await openHarness(t);
  const size = 9 * 1024 * 1024;
  const { stream, sha256 } = randomStream(size);
  await store.put('cut', stream);
  for (const afterBytes of [0, 1, 4 * 1024 * 1024 + 7]) {
    proxy.inject({ fault: { kind: 'cutResponse', afterBytes }, match: isGet });
    const body = await store.get('cut');
    assert.ok(body);
    await assertStoreError(readAll(body), new RegExp(`get cut .*broke after \\d+ of ${size} bytes`));
  }
  // Nothing sticks: the next download is whole.
  assert.deepEqual(await sha256Of((await store.get('cut'))!), { sha256, bytes: size });
});

test('s3: a request answered 503 or dropped before any answer is retried; one that always fails is a StrataError', async (t) => {
  const { store, proxy } = await openHarness(t);
  await store.put('r', streamOf(Buffer.from('retry me')));
  proxy.inject({ fault: { kind: 'status', status: 503 }, match: isGet });
  proxy.inject({ fault: { kind: 'drop' }, match: isGet });
  assert.equal(await getText(store, 'r'), 'retry me');
  assert.equal(countOf(proxy, isGet), 3);

  proxy.inject({ fault: { kind: 'drop' }, match: (r) => r.method === 'HEAD', times: Infinity });
  await assertStoreError(store.head('r'), /head r in .* failed/);
  proxy.inject({ fault: { kind: 'status', status: 503 }, match: isGet, times: Infinity });
  await assertStoreError(store.get('r'), /get r from .* failed: ServiceUnavailable \(HTTP 503 after 3 attempts\)/);
  proxy.inject({ fault: { kind: 'status', status: 500 }, match: (r) => r.url.includes('list-type=2'), times: Infinity });
  await assertStoreError(store.list(''), /list "" in .* failed: InternalError/);
  proxy.inject({ fault: { kind: 'status', status: 500 }, match: (r) => r.method === 'DELETE', times: Infinity });
  await assertStoreError(store.delete('r'), /delete r from .* failed: InternalError/);
});

test('s3: a missing bucket, wrong credentials and an unreachable endpoint are clear errors with hints', async (t) => {
  const { server } = await openHarness(t);
  const base = { endpoint: server.endpoint, region: server.region, credentials: server.credentials, forcePathStyle: true, maxAttempts: 1 };

  const noBucket = createS3ObjectStore({ ...base, bucket: 'no-such-bucket' });
  t.after(() => noBucket.close());
  await assert.rejects(noBucket.put('k', streamOf(Buffer.from('x'))), { code: 'STRATA_STORE', message: /NoSuchBucket/, hint: /create the bucket/ });

  const badKey = createS3ObjectStore({ ...base, bucket: server.bucket, credentials: { accessKeyId: 'WRONG', secretAccessKey: 'WRONG' } });
  t.after(() => badKey.close());
  await assert.rejects(badKey.list(''), { code: 'STRATA_STORE', message: /InvalidAccessKeyId/, hint: /credentials/ });

  const port = await closedPort();
  const nowhere = createS3ObjectStore({ ...base, bucket: server.bucket, endpoint: `http://127.0.0.1:${port}` });
  t.after(() => nowhere.close());
  await assert.rejects(nowhere.head('k'), { code: 'STRATA_STORE', message: /ECONNREFUSED/, hint: /endpoint/ });
});

/** A port nothing listens on (one the kernel just gave out and was closed again). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
