// The web UI in a real browser (Debian's chromium through playwright-core) against the real server:
// startServer on a temporary store, real git repos, real machines. One story, in order: log in, add a
// repository (and a secret), run it and watch a step's log stream live, approve a BUTTON, open the
// EXPOSE WEBSITE preview, then a commit with a failing Layerfile and its debug terminal (`ls`).
// Screenshots of the main pages are taken every run; they replace docs/screenshots/ (the README's)
// only with STRATA_SCREENSHOTS=1, else they go to a temporary directory.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build } from 'vite';
import { startServer, type RunningServer } from '../../src/server/compose.js';
import { createGitRepo } from '../helpers/engine.js';
import { requireRoot } from '../helpers/env.js';
import { PERL_HTTP_SERVER } from '../helpers/httpServer.js';
import { temporaryStore } from '../helpers/store.js';
import { exec } from '../../src/util/exec.js';
import { freeLocalPort } from '../../src/util/net.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const keepScreenshots = process.env.STRATA_SCREENSHOTS === '1';
const screenshots = keepScreenshots ? join(root, 'docs/screenshots') : mkdtempSync(join(tmpdir(), 'strata-screenshots-'));
if (!keepScreenshots) process.on('exit', () => rmSync(screenshots, { recursive: true, force: true }));
const PASSWORD = 'correct horse battery staple';


const rootLayerfile = [
  'FROM vm/debian:12',
  'COPY . /app',
  // printed lines with sleeps between: the log must show the first ones while the step still runs
  'RUN seq -f "warm-up line %g" 1 60; for i in 1 2 3 4 5 6 7 8; do echo "tick $i"; sleep 1; done',
  'BUTTON Deploy the preview?',
  'RUN echo "approved, going on"',
  'RUN BACKGROUND perl /app/server.pl 8000 hello-preview',
  'EXPOSE WEBSITE localhost:8000',
  '',
].join('\n');

const failingLayerfile = ['FROM vm/debian:12', 'RUN echo "left for the debugger" > /root/evidence.txt', 'RUN echo "about to fail" && exit 3', ''].join('\n');

/** A full-page screenshot from the top (the sticky top bar would otherwise sit mid-page). */
async function screenshot(page: Page, name: string): Promise<void> {
  await page.evaluate(() => {
    (document.activeElement as HTMLElement | null)?.blur();
    window.scrollTo(0, 0);
  });
  await page.screenshot({ path: join(screenshots, name), fullPage: true });
}

const logText = (page: Page) => page.getByTestId('log').innerText();

/** Approves any BUTTON that waits (a cached rerun may or may not ask again) until the job ends. */
async function waitForJobEnd(page: Page, timeout: number): Promise<string> {
  const deadline = Date.now() + timeout;
  const badge = page.locator('.job-head .badge').first();
  for (;;) {
    const status = await badge.getAttribute('data-status');
    if (status && ['SUCCESS', 'FAILURE', 'ERROR', 'CANCELLED'].includes(status)) return status;
    const approve = page.getByTestId('waiting-buttons').getByRole('button', { name: 'Approve' });
    if (await approve.count()) await approve.first().click().catch(() => {});
    if (Date.now() > deadline) throw new Error(`job still ${status} after ${timeout} ms`);
    await page.waitForTimeout(500);
  }
}

test('the web UI against the real server: runs, live log, button, preview, debug terminal', { timeout: 600_000 }, async (t) => {
  if (!requireRoot(t)) return;
  // Cleanups run last-in first-out, and before the store is removed (registered after this hook).
  const cleanups: (() => Promise<unknown>)[] = [];
  t.after(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => console.error('cleanup failed:', error));
  });
  const store = await temporaryStore(t, 'strata-ui-');

  const uiDir = await mkdtemp(join(tmpdir(), 'strata-ui-dist-'));
  cleanups.push(() => rm(uiDir, { recursive: true, force: true }));
  await build({ configFile: join(root, 'src/ui/vite.config.ts'), logLevel: 'warn', build: { outDir: uiDir, emptyOutDir: true, sourcemap: false } });

  const port = await freeLocalPort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const server: RunningServer = await startServer({
    config: { storeRoot: store, host: '127.0.0.1', port, publicUrl, concurrency: 2, previewIdleMs: 60_000 },
    adminPassword: PASSWORD,
    logger: false,
    uiDir,
    announce: () => {},
  });
  cleanups.push(() => server.close());

  const browser: Browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  cleanups.push(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1440, height: 960 }, baseURL: publicUrl });
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.setDefaultTimeout(30_000);

  const repo = createGitRepo(t, {
    Layerfile: rootLayerfile,
    'server.pl': PERL_HTTP_SERVER,
    'README.md': 'demo\n',
    // a second DAG level, inheriting the root's final state
    'tests/Layerfile': 'FROM ../Layerfile\nRUN echo "integration tests: ok"\n',
  });
  let firstJobUrl = '';
  // The server builds a bare repository that the test pushes to; its post-receive hook calls the
  // webhook, signed with the secret the UI shows once when the repo is added.
  const bare = await mkdtemp(join(tmpdir(), 'strata-ui-bare-'));
  cleanups.push(() => rm(bare, { recursive: true, force: true }));
  execFileSync('git', ['clone', '-q', '--bare', repo.dir, bare]);

  await t.test('log in (a wrong password is refused first)', async () => {
    await page.goto('/');
    await page.getByLabel('Password').fill('wrong');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('.alert-error').waitFor();
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByTestId('user').waitFor();
    assert.equal(await page.getByTestId('user').innerText(), 'admin');
  });

  await t.test('add a local repository; the webhook secret is shown once; set and delete a secret', async () => {
    await page.getByRole('navigation').getByRole('link', { name: 'Repositories' }).click();
    await page.getByLabel('Name').fill('demo');
    await page.getByLabel('Git URL or local path').fill(bare);
    await page.getByRole('button', { name: 'Add repository' }).click();
    await page.getByTestId('webhook-secret').waitFor();
    assert.match(await page.getByTestId('webhook-url').innerText(), /\/api\/webhooks\/demo$/);
    const secret = (await page.getByTestId('webhook-secret').innerText()).trim();
    assert.ok(secret.length >= 16);
    const hook = `#!/bin/sh
while read old new ref; do
  body=$(printf '{"ref":"%s","before":"%s","after":"%s"}' "$ref" "$old" "$new")
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac '${secret}' | sed 's/^.* //')
  curl -fsS -X POST -H 'content-type: application/json' -H 'x-github-event: push' \\
    -H "x-github-delivery: $(cat /proc/sys/kernel/random/uuid)" -H "x-hub-signature-256: sha256=$sig" \\
    --data-binary "$body" '${publicUrl}/api/webhooks/demo' >/dev/null
done
`;
    writeFileSync(join(bare, 'hooks', 'post-receive'), hook, { mode: 0o755 });
    await page.locator('tr[data-repo="demo"]').getByRole('button', { name: 'Secrets' }).click();
    await page.getByLabel('Secret name').fill('DEPLOY_TOKEN');
    await page.getByLabel('Secret value').fill('s3cret');
    await page.getByRole('button', { name: 'Set secret' }).click();
    await page.getByTestId('secrets').getByText('DEPLOY_TOKEN').waitFor();
    await page.getByTestId('secrets').getByRole('button', { name: 'Delete' }).click();
    await page.getByTestId('secrets').getByText('No secrets.').waitFor();
  });

  await t.test('run it: the log streams live, the BUTTON is approved, the run goes on and succeeds', async () => {
    await page.locator('tr[data-repo="demo"]').getByRole('button', { name: 'Run now' }).click();
    await page.waitForURL(/\/jobs\/[^/]+$/);
    firstJobUrl = page.url();
    await page.getByTestId('job-title').getByText('initial').waitFor();
    // while the step is still running, only the first ticks are there
    await page.getByTestId('log').locator('.log-text').getByText('tick 2').waitFor({ timeout: 180_000 });
    const early = await logText(page);
    assert.doesNotMatch(early, /tick 8/, 'the log arrived all at once, not live');
    assert.equal(await page.locator('li.step', { hasText: 'for i in' }).getAttribute('data-status'), 'running');

    // the log follows its tail until the user scrolls up; "Follow" brings it back
    const log = page.getByTestId('log');
    const atBottom = () => log.evaluate((element) => element.scrollHeight - element.scrollTop - element.clientHeight < 24);
    const ticks = async () => (await logText(page)).match(/tick \d/g)?.length ?? 0;
    assert.ok(await log.evaluate((element) => element.scrollHeight > element.clientHeight), 'the log overflows its box');
    assert.ok(await atBottom(), 'the log follows its tail');
    await log.evaluate((element) => (element.scrollTop = 0));
    await page.getByRole('button', { name: 'Follow' }).waitFor();
    const before = await ticks();
    await page.waitForFunction((n) => (document.querySelector('[data-testid="log"]')?.textContent?.match(/tick \d/g)?.length ?? 0) > n, before);
    assert.equal(await log.evaluate((element) => element.scrollTop), 0, 'new output must not pull a reader back down');
    await page.getByRole('button', { name: 'Follow' }).click();
    assert.ok(await atBottom());
    await page.getByTestId('log').locator('.log-text').getByText('tick 8').waitFor();

    await page.getByTestId('waiting-buttons').getByRole('button', { name: 'Approve' }).click({ timeout: 60_000 });
    await page.locator('.button-box.approved').waitFor();
    assert.equal(await page.getByTestId('waiting-buttons').count(), 0);
    await page.getByTestId('log').locator('.log-text').getByText('approved, going on').waitFor({ timeout: 60_000 });
    assert.equal(await waitForJobEnd(page, 120_000), 'SUCCESS');
    assert.match(await page.getByTestId('notes').innerText(), /approved by admin/);

    // the search box highlights matches in the log
    await page.getByLabel('Search log').fill('tick');
    await page.getByTestId('log-match-count').getByText('1 / 8').waitFor();
    assert.equal(await page.locator('mark.log-match').count(), 8);
    await page.getByLabel('Search log').fill('');
    await page.getByTestId('log').evaluate((element) => (element.scrollTop = 0));
    await page.locator('.dag-level-title', { hasText: 'Level 2' }).waitFor();
    await screenshot(page, 'run.png');
  });

  await t.test('the preview link serves the EXPOSE WEBSITE of the finished run', async () => {
    const link = page.locator('a.preview-link').first();
    await link.waitFor();
    const href = await link.getAttribute('href');
    assert.ok(href && href.startsWith(`${publicUrl}/preview/`), href ?? "no href");
    const preview = await context.newPage();
    try {
      const response = await preview.goto(href, { timeout: 150_000 });
      assert.equal(response?.status(), 200);
      assert.match(await preview.locator('body').innerText(), /^hello-preview \//);
    } finally {
      await preview.close();
    }
  });

  await t.test('a git push makes a run appear; its failing runner opens a debug terminal where `ls` shows the machine', async () => {
    await page.goto('/');
    repo.commit('add a failing check', { 'checks/Layerfile': failingLayerfile });
    // Not execFileSync: the hook's curl is answered by this very process.
    const pushed = await exec('git', ['push', '-q', bare, 'main'], { cwd: repo.dir, timeoutMs: 60_000 });
    assert.equal(pushed.exitCode, 0, pushed.stderr);
    // The runs list (it refreshes on its own) shows the pushed commit.
    const row = page.getByTestId('runs').locator('tr[data-job]', { hasText: 'add a failing check' });
    await row.waitFor({ timeout: 30_000 });
    assert.match(await row.innerText(), /push/);
    await row.click();
    await page.waitForURL((url) => url.pathname.startsWith('/jobs/') && url.href !== firstJobUrl);
    assert.equal(await waitForJobEnd(page, 180_000), 'FAILURE');
    await page.locator('[data-runner="checks-layerfile"], .runner-card.runner-FAILURE').first().click();
    await page.getByTestId('log').locator('.log-text').getByText('about to fail').waitFor();
    await page.getByRole('button', { name: /Open debug terminal/ }).click();
    const terminal = page.getByTestId('terminal');
    await terminal.getByText('connected').waitFor({ timeout: 60_000 });
    await terminal.locator('.xterm').click();
    await page.keyboard.type('ls /root; echo done-$((6*7))\n');
    await terminal.locator('.xterm-rows').getByText('done-42').waitFor();
    assert.match(await terminal.locator('.xterm-rows').innerText(), /evidence\.txt/);
    await screenshot(page, 'terminal.png');
  });

  await t.test('the runs list shows both runs, filters by status and search, and charts their durations', async () => {
    await page.getByRole('navigation').getByRole('link', { name: 'Runs' }).click();
    const rows = page.getByTestId('runs').locator('tbody tr');
    await page.getByTestId('runs').getByText('add a failing check').waitFor();
    assert.equal(await rows.count(), 2);
    await page.getByLabel('Status').selectOption('SUCCESS');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="runs"] tbody tr').length === 1);
    assert.match(await rows.first().innerText(), /initial/);
    await page.getByLabel('Status').selectOption('');
    await page.getByLabel('Search runs').fill('failing');
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="runs"] tbody tr').length === 1);
    assert.match(await rows.first().innerText(), /add a failing check/);
    await page.getByLabel('Search runs').fill('');
    await page.getByTestId('duration-chart').locator('canvas').waitFor();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid="runs"] tbody tr').length === 2);
    await screenshot(page, 'runs.png');
  });

  await t.test('retry without CACHE dirs makes a new run of the same commit with that option', async () => {
    await page.getByTestId('runs').locator('tr[data-job]', { hasText: 'add a failing check' }).click();
    await page.waitForURL(/\/jobs\/[^/]+$/);
    const failedUrl = page.url();
    await page.getByRole('button', { name: 'Retry without CACHE dirs' }).click();
    await page.waitForURL((url) => url.pathname.startsWith('/jobs/') && url.href !== failedUrl);
    const id = new URL(page.url()).pathname.split('/').pop() ?? '';
    const answer = (await (await page.request.get(`/api/jobs/${id}`)).json()) as { job: { trigger: string; options: { noCache: boolean; noCacheDirs: boolean }; title: string } };
    assert.deepEqual([answer.job.trigger, answer.job.options, answer.job.title], ['retry', { noCache: false, noCacheDirs: true }, 'add a failing check']);
    assert.equal(await waitForJobEnd(page, 180_000), 'FAILURE', 'the same commit fails the same way');
  });

  await t.test('the workers page shows each worker: busy with its job, idle, offline, revoked, never seen', async () => {
    const { workers } = server.ctx;
    for (const name of ['busy-1', 'idle-1', 'gone-1', 'revoked-1', 'new-1']) await workers.add(name);
    const jobId = new URL(firstJobUrl).pathname.split('/').pop() ?? '';
    await workers.seen('busy-1', { host: 'ci-host-a', running: [jobId] }, Date.now());
    await workers.seen('idle-1', { host: 'ci-host-b', running: [] }, Date.now());
    await workers.seen('gone-1', { host: 'ci-host-c', running: [] }, Date.now() - 5 * 60_000);
    await workers.revoke('revoked-1');
    await page.getByRole('link', { name: 'Workers' }).click();
    await page.waitForURL(/\/workers$/);
    const table = page.getByTestId('workers');
    const stateOf = (name: string) => table.locator(`tr[data-worker="${name}"]`).getByTestId('worker-state').innerText();
    await table.locator('tr[data-worker="busy-1"]').waitFor();
    assert.deepEqual(
      await Promise.all(['busy-1', 'idle-1', 'gone-1', 'revoked-1', 'new-1'].map(stateOf)),
      ['busy', 'idle', 'offline', 'revoked', 'never seen'],
    );
    await table.locator('tr[data-worker="busy-1"]').getByRole('link', { name: jobId }).click();
    await page.waitForURL((url) => url.pathname === `/jobs/${jobId}`);
  });

  await t.test('logging out returns to the login page', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await page.reload();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
  });

  assert.deepEqual(pageErrors, []);
});
