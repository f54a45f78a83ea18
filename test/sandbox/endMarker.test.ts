import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EndMarkerScanner } from '../../src/sandbox/runc/endMarker.js';

function scan(chunks: string[], marker = '\x1eEND\x1e'): { forwarded: string; ended: boolean; pieces: string[] } {
  const pieces: string[] = [];
  const scanner = new EndMarkerScanner(Buffer.from(marker), (d) => pieces.push(d.toString()));
  for (const chunk of chunks) scanner.push(Buffer.from(chunk));
  const ended = scanner.ended;
  scanner.finish();
  return { forwarded: pieces.join(''), ended, pieces };
}

test('end marker: output before it is forwarded, the marker and anything after it are not', () => {
  assert.deepEqual(scan(['hello\n', 'world\n\x1eEND\x1e', 'daemon\n']), { forwarded: 'hello\nworld\n', ended: true, pieces: ['hello\n', 'world\n'] });
  assert.equal(scan(['\x1eEND\x1etrailing']).forwarded, '');
});

test('end marker: split across chunks, even byte by byte', () => {
  const text = 'abc\x1eEND\x1exyz';
  const bytes = [...text];
  const result = scan(bytes);
  assert.equal(result.forwarded, 'abc');
  assert.equal(result.ended, true);
  assert.equal(scan(['ab\x1eE', 'ND\x1e', 'zz']).forwarded, 'ab');
});

test('end marker: a partial marker that turns out not to be one is forwarded; held bytes come out at the end', () => {
  const result = scan(['a\x1eEN', 'Dx b']);
  assert.equal(result.forwarded, 'a\x1eENDx b');
  assert.equal(result.ended, false);
  // The stream closed with a possible marker start held back: finish() forwards it.
  const held = scan(['tail\x1eE']);
  assert.deepEqual(held.pieces, ['tail', '\x1eE']);
  assert.equal(held.ended, false);
});
