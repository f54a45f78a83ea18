import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { colorsFor, wantsColor } from '../../src/cli/reporters/colors.js';
import { TerminalReporter } from '../../src/cli/reporters/terminal.js';

test('colour only on a TTY, whatever CI says; NO_COLOR and FORCE_COLOR win', () => {
  assert.equal(wantsColor({ isTTY: false }, { CI: 'true' }), false);
  assert.equal(wantsColor({ isTTY: true }, {}), true);
  assert.equal(wantsColor({ isTTY: true }, { NO_COLOR: '1' }), false);
  assert.equal(wantsColor({ isTTY: false }, { FORCE_COLOR: '1' }), true);
  assert.equal(wantsColor({ isTTY: true }, { FORCE_COLOR: '0' }), true);
  assert.equal(wantsColor({ isTTY: false }, { FORCE_COLOR: '0' }), false);
  assert.equal(colorsFor({ isTTY: false }, { CI: '1' }).red('x'), 'x');
  assert.equal(colorsFor({ isTTY: false }, { FORCE_COLOR: '1' }).red('x'), '\u001b[31mx\u001b[39m');
});

test('the plain reporter writes no escape codes to a pipe even with CI set', () => {
  const saved = { CI: process.env.CI, FORCE_COLOR: process.env.FORCE_COLOR, NO_COLOR: process.env.NO_COLOR };
  process.env.CI = 'true';
  delete process.env.FORCE_COLOR;
  delete process.env.NO_COLOR;
  try {
    const stream = new PassThrough() as unknown as NodeJS.WriteStream;
    let text = '';
    (stream as unknown as PassThrough).on('data', (d: Buffer) => (text += d.toString()));
    const reporter = new TerminalReporter({ stream, plain: true });
    reporter.onRunStart({ runId: 'run-1', repo: '/repo', runners: [], commit: 'abc', tree: 'def' });
    assert.match(text, /strata run run-1/);
    assert.doesNotMatch(text, /\u001b\[/);
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
});
