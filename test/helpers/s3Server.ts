// A throwaway S3-compatible server for tests: s3rver (npm) in a child process, listening on a free
// 127.0.0.1 port, keeping its objects in a temporary directory; stopped and deleted after the test.
//
// Why a child process: s3rver 3.7 makes ListObjectsV2 continuation tokens with DES, which Node >= 17's
// OpenSSL 3 only has with --openssl-legacy-provider (without it every truncated listing answers 500).
// The child also exits on its own when this process goes away (it watches its stdin).
//
// s3rver has no AbortMultipartUpload (it answers 405); the child adds what S3 does: the upload's parts
// are deleted, 204, or 404 NoSuchUpload for an unknown upload. Nothing else is changed.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

export interface TestS3Server {
  endpoint: string;
  region: string;
  bucket: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Ids of multipart uploads begun and neither completed nor aborted (their parts are still stored). */
  pendingUploads(): Promise<string[]>;
}

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const bucket = 'strata-test';

// Runs in the child (CommonJS, resolved from the repository's node_modules). Prints {"port":N} when listening.
const childScript = `
const S3rver = require('s3rver');
const fs = require('node:fs/promises');
const path = require('node:path');
const [directory, bucket] = process.argv.slice(1);
const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory, configureBuckets: [{ name: bucket }] });
const noSuchUpload = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>';
server.middleware.unshift(async (ctx, next) => {
  const match = ctx.method === 'DELETE' && typeof ctx.query.uploadId === 'string' && /^\\/([^/]+)\\/./.exec(ctx.path);
  if (!match) return next();
  const uploadDir = path.join(directory, match[1], '._S3rver_uploads', path.basename(ctx.query.uploadId));
  const existed = await fs.stat(uploadDir).then(() => true, () => false);
  await fs.rm(uploadDir, { recursive: true, force: true });
  if (existed) ctx.status = 204;
  else { ctx.status = 404; ctx.type = 'application/xml'; ctx.body = noSuchUpload; }
});
server.run().then(({ port }) => process.stdout.write(JSON.stringify({ port }) + '\\n'), (error) => { console.error(error); process.exit(1); });
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

/** Starts a server with one empty bucket; it is stopped and its directory deleted after the test. */
export async function startS3Server(t: TestContext): Promise<TestS3Server> {
  const directory = await mkdtemp(join(tmpdir(), 'strata-s3-'));
  let child: ChildProcess | undefined;
  t.after(async () => {
    if (child) await stopChild(child);
    await rm(directory, { recursive: true, force: true });
  });
  child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', childScript, directory, bucket], {
    cwd: repoRoot,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const port = await listeningPort(child);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    bucket,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }, // s3rver's fixed account
    pendingUploads: () => readdir(join(directory, bucket, '._S3rver_uploads')).catch(() => []),
  };
}

function listeningPort(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`s3rver did not start within 15 s: ${stderr}`)), 15_000);
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const line = stdout.split('\n')[0];
      if (stdout.includes('\n') && line) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { port: number }).port);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with ${code} before listening: ${stderr}`));
    });
  });
}

/** Asks the child to exit (its stdin closes), and kills it if it has not within 5 s. */
async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.stdin?.end();
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}
