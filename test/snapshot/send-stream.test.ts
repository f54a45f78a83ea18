// The send-stream parser and replay on hand-made streams (no root): the orphan-name dance btrfs uses
// for new inodes, and entries tracked through a directory that moves afterwards.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { changesFromSendCommands, parseSendStream, type SendCommand } from '../../src/snapshot/send-stream.js';

function tlv(type: number, value: string): Buffer {
  const data = Buffer.from(value, 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt16LE(type, 0);
  head.writeUInt16LE(data.length, 2);
  return Buffer.concat([head, data]);
}

function command(cmd: number, attributes: Buffer[]): Buffer {
  const payload = Buffer.concat(attributes);
  const head = Buffer.alloc(10);
  head.writeUInt32LE(payload.length, 0);
  head.writeUInt16LE(cmd, 4);
  return Buffer.concat([head, payload]);
}

function stream(...commands: Buffer[]): Buffer {
  const version = Buffer.alloc(4);
  version.writeUInt32LE(1, 0);
  return Buffer.concat([Buffer.from('btrfs-stream\0', 'latin1'), version, ...commands]);
}

const PATH = 15;
const PATH_TO = 16;

test('parses commands and their path attributes, stopping at END', () => {
  const parsed = parseSendStream(
    stream(
      command(2, [tlv(PATH, 'snap'), tlv(1, 'uuid-bytes')]),
      command(3, [tlv(PATH, 'o257-7-0'), tlv(3, '12345678')]),
      command(9, [tlv(PATH, 'o257-7-0'), tlv(PATH_TO, 'dir/new file')]),
      command(21, []),
      command(3, [tlv(PATH, 'after-end')]),
    ),
  );
  assert.deepEqual(parsed, [
    { cmd: 2, path: 'snap' },
    { cmd: 3, path: 'o257-7-0' },
    { cmd: 9, path: 'o257-7-0', pathTo: 'dir/new file' },
    { cmd: 21 },
  ]);
});

test('rejects what is not a send stream, and truncated streams', () => {
  assert.throws(() => parseSendStream(Buffer.from('hello world, not a stream')), /not a btrfs send stream/);
  const whole = stream(command(3, [tlv(PATH, 'a-long-path-name')]));
  assert.throws(() => parseSendStream(whole.subarray(0, whole.length - 3)), /truncated/);
});

test('replays orphans, renames and moves into changed paths of A and B', async () => {
  const commands: SendCommand[] = [
    { cmd: 4, path: 'o300-1-0' }, // new directory, orphan name
    { cmd: 3, path: 'o300-1-0/file' }, // created inside it before it is placed
    { cmd: 9, path: 'o300-1-0', pathTo: 'newdir' },
    { cmd: 9, path: 'old', pathTo: 'moved' }, // existing directory moved ...
    { cmd: 9, path: 'moved/x', pathTo: 'moved/y' }, // ... then a child of it renamed
    { cmd: 22, path: 'kept' }, // data changed in place
    { cmd: 20, path: 'somedir' }, // directory timestamps only: not reported
    { cmd: 18, path: 'otherdir' }, // directory mode: reported
    { cmd: 11, path: 'gone' },
    { cmd: 21 },
  ];
  const directories = new Set(['newdir', 'moved', 'somedir', 'otherdir']);
  const changes = await changesFromSendCommands(commands, {
    isDirectoryInTarget: async (path) => directories.has(path),
    descendants: async (side, path) => (side === 'from' ? [`${path}/x`, `${path}/z`] : [`${path}/y`, `${path}/z`]),
  });
  assert.deepEqual(
    changes.map((c) => `${c.change}:${c.path}`),
    [
      'deleted:/gone',
      'modified:/kept',
      'added:/moved',
      'added:/moved/y',
      'added:/moved/z',
      'added:/newdir',
      'added:/newdir/file',
      'deleted:/old',
      'deleted:/old/x',
      'deleted:/old/z',
      'modified:/otherdir',
    ],
  );
});
