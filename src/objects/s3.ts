// The object store on S3-compatible storage, through the AWS SDK: @aws-sdk/client-s3 for requests and
// @aws-sdk/lib-storage's Upload for streamed multipart uploads of unknown size.
//
// Non-AWS servers (Ceph, Swift, Garage, R2, MinIO...) reject or mangle the SDK's default integrity
// checksums (CRC trailers on every upload since SDK 3.729): checksums are computed and validated only
// when an operation requires them. Integrity end to end is the payload's business (a zstd frame carries
// its own checksum); a download is at least checked against its Content-Length, so a body cut short
// errors instead of ending early.
import { Transform, type Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  paginateListObjectsV2,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { StrataError } from '../errors.js';
import { assertObjectKey, assertObjectKeyPrefix, type ObjectStore } from './types.js';

export interface S3ObjectStoreOptions {
  /** Server URL ('http://127.0.0.1:9000'); omit for AWS itself. */
  endpoint?: string;
  region: string;
  bucket: string;
  /** Omit to use the SDK's default chain (environment, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Bucket in the path ('host/bucket/key') rather than the host name: what most non-AWS servers need. */
  forcePathStyle?: boolean;
  /** Size of each part of a multipart upload (default 16 MiB, min 5 MiB): 10,000 parts make the largest object 160 GiB. */
  partSizeBytes?: number;
  /** Parts uploaded at once (default 4); memory used is about this times the part size. */
  uploadConcurrency?: number;
  /** Attempts per request, retries included (default 3). Requests answered 5xx or cut before the answer are retried. */
  maxAttempts?: number;
  /** Give up connecting after this long (default 10 s). */
  connectTimeoutMs?: number;
  /** Give up on a connection idle this long, mid-answer included (default 60 s). */
  idleTimeoutMs?: number;
  /** Keys per list request (default 1000, S3's maximum). */
  listPageSize?: number;
}

const defaultPartSize = 16 * 1024 * 1024;

export function createS3ObjectStore(options: S3ObjectStoreOptions): ObjectStore {
  const client = new S3Client({
    region: options.region,
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    forcePathStyle: options.forcePathStyle ?? false,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: options.maxAttempts ?? 3,
    requestHandler: { connectionTimeout: options.connectTimeoutMs ?? 10_000, socketTimeout: options.idleTimeoutMs ?? 60_000 },
  });
  const where = `${options.endpoint ?? 'AWS S3'} bucket ${options.bucket}`;
  const { bucket } = options;

  return {
    async put(key, body) {
      assertObjectKey(key);
      const counted = countBytes(body);
      let upload: Upload | undefined;
      try {
        upload = new Upload({
          client,
          params: { Bucket: bucket, Key: key, Body: counted.stream },
          partSize: options.partSizeBytes ?? defaultPartSize,
          queueSize: options.uploadConcurrency ?? 4,
          // The abort is ours (below), so a failed abort cannot hide why the upload failed.
          leavePartsOnError: true,
        });
        await upload.done();
        return { sizeBytes: counted.bytes() };
      } catch (error) {
        body.destroy();
        const abortFailure = await abortUpload(client, bucket, key, upload?.uploadId);
        throw storeError(`put ${key} to ${where} failed after ${counted.bytes()} bytes read`, error, abortFailure);
      }
    },

    async get(key) {
      assertObjectKey(key);
      try {
        const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        return checkedLength(response.Body as Readable, response.ContentLength, `get ${key} from ${where}`);
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw storeError(`get ${key} from ${where} failed`, error);
      }
    },

    async head(key) {
      assertObjectKey(key);
      try {
        const response = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return { sizeBytes: response.ContentLength ?? 0 };
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw storeError(`head ${key} in ${where} failed`, error);
      }
    },

    async delete(key) {
      assertObjectKey(key);
      try {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      } catch (error) {
        throw storeError(`delete ${key} from ${where} failed`, error);
      }
    },

    async list(prefix) {
      assertObjectKeyPrefix(prefix);
      const keys: string[] = [];
      try {
        const pages = paginateListObjectsV2({ client, pageSize: options.listPageSize ?? 1000 }, { Bucket: bucket, Prefix: prefix });
        for await (const page of pages) {
          for (const object of page.Contents ?? []) if (object.Key !== undefined) keys.push(object.Key);
        }
      } catch (error) {
        throw storeError(`list ${JSON.stringify(prefix)} in ${where} failed`, error);
      }
      return keys.sort();
    },

    async close() {
      client.destroy();
    },
  };
}

/** `source` passed through, counting its bytes (errors pass through too). */
function countBytes(source: Readable): { stream: Readable; bytes: () => number } {
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  source.on('error', (error) => counter.destroy(error));
  return { stream: source.pipe(counter), bytes: () => bytes };
}

/** Drops the parts of an upload that failed; returns why that failed too, if it did. */
async function abortUpload(client: S3Client, bucket: string, key: string, uploadId: string | undefined): Promise<unknown> {
  if (uploadId === undefined) return undefined; // a single-request upload: nothing was stored
  try {
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
    return undefined;
  } catch (error) {
    return error;
  }
}

/**
 * `body` passed through, but an error if it ends before `expectedBytes`: a connection closed mid-body
 * must not look like a shorter object. Destroying the result releases the connection.
 */
function checkedLength(body: Readable, expectedBytes: number | undefined, what: string): Readable {
  let received = 0;
  const checked = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      received += chunk.length;
      done(null, chunk);
    },
    flush(done) {
      if (expectedBytes === undefined || received === expectedBytes) done();
      else done(new StrataError('STRATA_STORE', `${what}: the body ended after ${received} of ${expectedBytes} bytes`));
    },
  });
  body.on('error', (error) => {
    checked.destroy(storeError(`${what}: the transfer broke after ${received} of ${expectedBytes ?? '?'} bytes`, error));
  });
  checked.on('close', () => body.destroy());
  return body.pipe(checked);
}

function isNotFound(error: unknown): boolean {
  return error instanceof S3ServiceException && (error.name === 'NoSuchKey' || error.name === 'NotFound' || error.$metadata.httpStatusCode === 404);
}

/** A StrataError saying what failed, how (S3 error code and HTTP status, or the network error), and what to check. */
function storeError(what: string, cause: unknown, abortFailure?: unknown): StrataError {
  if (cause instanceof StrataError && abortFailure === undefined) return cause; // the body's own failure (a snapshot stream's)
  const abortNote = abortFailure === undefined ? '' : ` (and aborting the multipart upload failed too: ${describe(abortFailure)}; its parts stay until the bucket's lifecycle rules remove them)`;
  return new StrataError('STRATA_STORE', `${what}: ${describe(cause)}${abortNote}`, { cause, hint: hintFor(cause) });
}

function describe(error: unknown): string {
  if (error instanceof S3ServiceException) {
    const status = error.$metadata.httpStatusCode;
    const attempts = error.$metadata.attempts;
    return `${error.name}${status === undefined ? '' : ` (HTTP ${status}${attempts && attempts > 1 ? ` after ${attempts} attempts` : ''})`}: ${error.message}`;
  }
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return `${code !== undefined && !error.message.includes(code) ? `${code}: ` : ''}${error.message}`;
  }
  return String(error);
}

function hintFor(error: unknown): string | undefined {
  const name = error instanceof Error ? error.name : '';
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? '';
  if (name === 'NoSuchBucket') return 'create the bucket, or check the configured bucket name';
  if (['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden'].includes(name)) {
    return 'check the object store credentials and what they are allowed to do';
  }
  if (['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ETIMEDOUT'].includes(code) || name === 'TimeoutError') {
    return 'check that the object store endpoint is right and reachable';
  }
  return undefined;
}
