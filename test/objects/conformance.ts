// The ObjectStore conformance suite: every backend must pass these same tests.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { isStrataError } from '../../src/errors.js';
import type { ObjectStore } from '../../src/objects/types.js';

export interface ObjectStoreFactory {
  /** Backend name for test titles. */
  label: string;
  /**
   * A fresh, empty store, released after the test even on failure. `pendingUploads` lists partial
   * uploads the backend still keeps (multipart parts on S3), to show a failed put leaves none.
   */
  open(t: TestContext): Promise<{ store: ObjectStore; pendingUploads: () => Promise<string[]> }>;
}

/** A stream of `chunks` yielded one by one: a body whose size the store cannot know in advance. */
export function streamOf(...chunks: Buffer[]): Readable {
  return Readable.from(chunks, { objectMode: false });
}

/** `size` random bytes as a stream of 1 MiB chunks, with the sha256 of the whole. */
export function randomStream(size: number): { stream: Readable; sha256: string } {
  const data = randomBytes(size);
  const chunks: Buffer[] = [];
  for (let at = 0; at < size; at += 1024 * 1024) chunks.push(data.subarray(at, at + 1024 * 1024));
  return { stream: streamOf(...chunks), sha256: createHash('sha256').update(data).digest('hex') };
}

/** A body that yields `goodBytes` and then errors, as a producer that fails midway (btrfs send dying). */
export function failingStream(goodBytes: number): Readable {
  async function* produce(): AsyncGenerator<Buffer> {
    for (let sent = 0; sent < goodBytes; sent += 1024 * 1024) yield randomBytes(Math.min(1024 * 1024, goodBytes - sent));
    throw new Error('the producer failed');
  }
  return Readable.from(produce(), { objectMode: false });
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export async function sha256Of(stream: Readable): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

export async function getText(store: ObjectStore, key: string): Promise<string | undefined> {
  const stream = await store.get(key);
  return stream === undefined ? undefined : (await readAll(stream)).toString();
}

export async function assertStoreError(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (error) => {
    assert.ok(isStrataError(error), `expected a StrataError, got ${String(error)}`);
    assert.equal(error.code, 'STRATA_STORE');
    assert.match(error.message, pattern);
    return true;
  });
}

export function objectStoreConformance(factory: ObjectStoreFactory): void {
  const it = (title: string, body: (t: TestContext) => Promise<void>): void => {
    test(`${factory.label}: ${title}`, body);
  };

  it('round trip of a small object, and head gives its size', async (t) => {
    const { store } = await factory.open(t);
    assert.deepEqual(await store.put('small/hello.txt', streamOf(Buffer.from('hello '), Buffer.from('world'))), { sizeBytes: 11 });
    assert.equal(await getText(store, 'small/hello.txt'), 'hello world');
    assert.deepEqual(await store.head('small/hello.txt'), { sizeBytes: 11 });
  });

  it('round trip of an empty object', async (t) => {
    const { store } = await factory.open(t);
    assert.deepEqual(await store.put('empty', streamOf()), { sizeBytes: 0 });
    assert.deepEqual(await store.head('empty'), { sizeBytes: 0 });
    assert.equal(await getText(store, 'empty'), '');
  });

  it('round trip of a 40 MB stream of unknown size (multipart)', async (t) => {
    const { store, pendingUploads } = await factory.open(t);
    const size = 40 * 1024 * 1024 + 12345;
    const { stream, sha256 } = randomStream(size);
    assert.deepEqual(await store.put('large/blob', stream), { sizeBytes: size });
    assert.deepEqual(await store.head('large/blob'), { sizeBytes: size });
    assert.deepEqual(await sha256Of((await store.get('large/blob'))!), { sha256, bytes: size });
    assert.deepEqual(await pendingUploads(), []);
  });

  it('absent keys: get and head give undefined, delete is a no-op', async (t) => {
    const { store } = await factory.open(t);
    assert.equal(await store.get('nothing/here'), undefined);
    assert.equal(await store.head('nothing/here'), undefined);
    await store.delete('nothing/here');
    assert.deepEqual(await store.list(''), []);
  });

  it('list gives the keys under a prefix, sorted, across many pages', async (t) => {
    const { store } = await factory.open(t);
    const keys = ['a/1', 'a/2', 'a/b/3', 'ab', 'b/1', 'a/0', 'a/b/c/4', 'c'];
    for (const key of keys) await store.put(key, streamOf(Buffer.from(key)));
    assert.deepEqual(await store.list('a/'), ['a/0', 'a/1', 'a/2', 'a/b/3', 'a/b/c/4']);
    assert.deepEqual(await store.list('a'), ['a/0', 'a/1', 'a/2', 'a/b/3', 'a/b/c/4', 'ab']);
    assert.deepEqual(await store.list('a/b/'), ['a/b/3', 'a/b/c/4']);
    assert.deepEqual(await store.list(''), [...keys].sort());
    assert.deepEqual(await store.list('zzz/'), []);
  });

  it('delete removes an object and leaves the others', async (t) => {
    const { store } = await factory.open(t);
    await store.put('d/keep', streamOf(Buffer.from('keep')));
    await store.put('d/drop', streamOf(Buffer.from('drop')));
    await store.delete('d/drop');
    assert.equal(await store.get('d/drop'), undefined);
    assert.equal(await store.head('d/drop'), undefined);
    assert.deepEqual(await store.list('d/'), ['d/keep']);
    assert.equal(await getText(store, 'd/keep'), 'keep');
  });

  it('put over an existing key replaces the object whole', async (t) => {
    const { store } = await factory.open(t);
    await store.put('o/k', streamOf(Buffer.from('a first, longer version')));
    await store.put('o/k', streamOf(Buffer.from('second')));
    assert.equal(await getText(store, 'o/k'), 'second');
    assert.deepEqual(await store.head('o/k'), { sizeBytes: 6 });
    assert.deepEqual(await store.list('o/'), ['o/k']);
  });

  it('a put whose body fails leaves no object and no partial upload', async (t) => {
    const { store, pendingUploads } = await factory.open(t);
    // Small: fails before the first part is complete. Large: fails after parts were uploaded.
    for (const goodBytes of [1000, 30 * 1024 * 1024]) {
      await assertStoreError(store.put(`failed/${goodBytes}`, failingStream(goodBytes)), /the producer failed/);
      assert.equal(await store.head(`failed/${goodBytes}`), undefined);
      assert.equal(await store.get(`failed/${goodBytes}`), undefined);
    }
    assert.deepEqual(await store.list(''), []);
    assert.deepEqual(await pendingUploads(), []);
  });

  it('a failed put over an existing key keeps the old object', async (t) => {
    const { store, pendingUploads } = await factory.open(t);
    await store.put('keep/k', streamOf(Buffer.from('old')));
    await assertStoreError(store.put('keep/k', failingStream(20 * 1024 * 1024)), /the producer failed/);
    assert.equal(await getText(store, 'keep/k'), 'old');
    assert.deepEqual(await pendingUploads(), []);
  });

  it('refuses invalid keys and prefixes', async (t) => {
    const { store } = await factory.open(t);
    for (const bad of ['', '/abs', 'a//b', 'a/', 'a/../b', '.', 'sp ace', 'x'.repeat(1025), 'q?x', 'h#']) {
      await assertStoreError(store.put(bad, streamOf(Buffer.from('x'))), /invalid object key/);
      await assertStoreError(store.get(bad), /invalid object key/);
      await assertStoreError(store.head(bad), /invalid object key/);
      await assertStoreError(store.delete(bad), /invalid object key/);
    }
    await assertStoreError(store.list('/x'), /invalid object key prefix/);
    await assertStoreError(store.list('a//'), /invalid object key prefix/);
    assert.deepEqual(await store.list(''), []);
  });
}
