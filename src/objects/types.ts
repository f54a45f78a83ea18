// The object store: the one seam through which workers share bytes (snapshot streams) through
// S3-compatible storage. Objects are opaque byte strings under keys; an object is written whole or not
// at all, so a reader never sees half of one.
import type { Readable } from 'node:stream';
import { StrataError } from '../errors.js';

export interface ObjectStore {
  /**
   * Stores everything `body` yields under `key`, replacing any object there; the size need not be
   * known in advance. Atomic: the key shows the old object (or none) until the new one is complete.
   * If `body` errors or the upload fails, it rejects, the key keeps what it had, and no partial upload
   * is left behind. Cancel by destroying `body` with an error.
   */
  put(key: string, body: Readable): Promise<{ sizeBytes: number }>;
  /**
   * The object's bytes, or undefined when there is none. A transfer that breaks makes the stream error
   * (STRATA_STORE): it never ends early as if the object were shorter. Destroy it to stop reading.
   */
  get(key: string): Promise<Readable | undefined>;
  /** The object's size, or undefined when there is none. */
  head(key: string): Promise<{ sizeBytes: number } | undefined>;
  /** Removes the object; removing a key that has none is not an error. */
  delete(key: string): Promise<void>;
  /** Every key that starts with `prefix` (all when ''), sorted. */
  list(prefix: string): Promise<string[]>;
  /** Releases connections. */
  close(): Promise<void>;
}

// Keys are paths of safe characters ('snapshots/ab12.../cd34.zst'): no empty segments, no '.' or '..'
// segments, none of the characters S3 and proxies treat specially. ':' '@' '+' '=' are allowed, as in
// snapshot names.
const keyPattern = /^[A-Za-z0-9_.:@+=-]+(\/[A-Za-z0-9_.:@+=-]+)*$/;

export function isValidObjectKey(key: string): boolean {
  return key.length <= 1024 && keyPattern.test(key) && !key.split('/').some((segment) => segment === '.' || segment === '..');
}

export function assertObjectKey(key: string): void {
  if (!isValidObjectKey(key)) {
    throw new StrataError('STRATA_STORE', `invalid object key ${JSON.stringify(key)}`, {
      hint: 'use 1-1024 characters of A-Z a-z 0-9 _ . : @ + = - in segments separated by single slashes, none of them "." or ".."',
    });
  }
}

/** A prefix for `list`: '' or the start of a key ('snapshots/', 'snapshots/ab'). */
export function assertObjectKeyPrefix(prefix: string): void {
  if (prefix !== '' && !isValidObjectKey(prefix.endsWith('/') ? `${prefix}x` : prefix)) {
    throw new StrataError('STRATA_STORE', `invalid object key prefix ${JSON.stringify(prefix)}`, {
      hint: 'a prefix is the start of a valid key, e.g. "snapshots/"',
    });
  }
}
