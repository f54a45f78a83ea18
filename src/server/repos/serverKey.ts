// The server key: 32 random bytes in `<store>/server.key` (mode 0600), created once, encrypting repo
// secrets and webhook secrets at rest with AES-256-GCM. Losing the file loses those values (not the
// repos): re-enter them.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StrataError } from '../../errors.js';

export const SERVER_KEY_FILE = 'server.key';
const KEY_BYTES = 32;

/** Reads the store's server key, creating it first if there is none (safe against a concurrent creator). */
export function loadOrCreateServerKey(storeRoot: string): Buffer {
  const file = join(storeRoot, SERVER_KEY_FILE);
  try {
    return checkKey(readFileSync(file), file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  // Written under a temporary name, then linked: the final name never holds a partial key, and link
  // fails rather than replace a key another process created meanwhile.
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(temporary, randomBytes(KEY_BYTES), { mode: 0o600, flag: 'wx' });
  try {
    linkSync(temporary, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    unlinkSync(temporary);
  }
  return checkKey(readFileSync(file), file);
}

function checkKey(key: Buffer, file: string): Buffer {
  if (key.length !== KEY_BYTES) throw new StrataError('STRATA_STORE', `the server key ${file} is not ${KEY_BYTES} bytes`, { hint: 'restore it from a backup, or delete it and re-enter the repos\' secrets' });
  return key;
}

/**
 * `v1.<iv>.<tag>.<ciphertext>` (base64url). `context` (e.g. "secret:repo/NAME") is authenticated with
 * the value, so a value copied to another row or repo does not decrypt there.
 */
export function encrypt(key: Buffer, plaintext: string, context: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return ['v1', iv, cipher.getAuthTag(), ciphertext].map((part) => (typeof part === 'string' ? part : part.toString('base64url'))).join('.');
}

export function decrypt(key: Buffer, sealed: string, context: string): string {
  const [version, iv, tag, ciphertext] = sealed.split('.');
  if (version !== 'v1' || iv === undefined || tag === undefined || ciphertext === undefined) {
    throw new StrataError('STRATA_STORE', `a stored value for ${context} is not in a known format`);
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ciphertext, 'base64url')), decipher.final()]).toString('utf8');
  } catch (cause) {
    throw new StrataError('STRATA_STORE', `cannot decrypt the stored value for ${context}`, { cause, hint: 'the store\'s server.key is not the one it was encrypted with' });
  }
}
