// Review 7, L4: a discard through a fence gate must not be able to land after the node is fenced.
// A hole punch is a child process (util-linux fallocate: Node has no fallocate(2)) that no fence
// stops or waits for, so a gated device never spawns one: it zeroes the written parts of the range
// with gated writes in its own process (file-disk.ts discardSync).
//
// fallocate is replaced through PATH by a stub that records each call and then runs the real one:
// an ungated device's discard goes through it (so the stub is in effect), a node's never does.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { createImage, diskInfo, FileDisk } from '../src/disk/index.js';
import { DeviceProvider } from '../src/node/provider.js';
import { presetTiming } from '../src/timing.js';
import { readFileAt, tempDir } from './helpers/tmp.js';

const MiB = 1024 * 1024;
const REAL_FALLOCATE = '/usr/bin/fallocate';

/** A PATH directory whose `fallocate` appends its arguments to the returned log, then runs the real one. */
function fallocateStub(t: ExecutionContext): string {
  const dir = tempDir(t);
  const log = path.join(dir, 'calls.log');
  fs.writeFileSync(log, '');
  const stub = path.join(dir, 'fallocate');
  fs.writeFileSync(stub, `#!/bin/sh\necho "$*" >> '${log}'\nexec ${REAL_FALLOCATE} "$@"\n`, { mode: 0o755 });
  const before = process.env.PATH;
  process.env.PATH = `${dir}:${before ?? ''}`;
  t.teardown(() => {
    process.env.PATH = before;
  });
  return log;
}

const calls = (log: string): string[] => fs.readFileSync(log, 'utf8').split('\n').filter((l) => l !== '');

// Serial: the tests change PATH for this process.
test.serial('a discard through a fence gate never spawns fallocate: the written parts read as zeros, holes stay holes, and a fenced node is refused', async (t) => {
  t.true(fs.existsSync(REAL_FALLOCATE), `${REAL_FALLOCATE} (util-linux) is needed to run this test`);
  const log = fallocateStub(t);
  const dir = tempDir(t);

  // Without a gate (a standalone tool's open), a long discard is punched, through the stub.
  const plain = path.join(dir, 'plain.img');
  createImage(plain, { sizeBytes: 8 * MiB });
  const dev = FileDisk.open(plain);
  dev.writeSync(Buffer.alloc(4 * MiB, 0xaa), 0);
  dev.discardSync(0, 2 * MiB);
  dev.closeSync();
  t.is(calls(log).length, 1, 'the ungated discard punched through the stub (the stub is in effect)');

  // A node's device: gated (its FenceGate and heartbeat leases).
  const img = path.join(dir, 'node.img');
  createImage(img, { sizeBytes: 8 * MiB });
  const provider = new DeviceProvider({ nodeId: 1, key: 0x1234n, timing: presetTiming('local') });
  t.teardown(() => provider.close());
  const node = await provider.open(img);
  await node.write(Buffer.alloc(3 * MiB, 0xaa), MiB); // [1, 4) MiB written, [0, 1) and [4, 8) holes
  await node.flush();
  const allocated = diskInfo(img).allocatedBytes;
  await node.discard(0, 8 * MiB);
  t.is(calls(log).length, 1, 'no fallocate child for a gated discard');
  t.true(readFileAt(img, 0, 8 * MiB).every((b) => b === 0), 'the range reads as zeros');
  await node.flush();
  t.true(diskInfo(img).allocatedBytes <= allocated, `the holes were not written (${diskInfo(img).allocatedBytes} > ${allocated} bytes allocated)`);

  await node.write(Buffer.alloc(MiB, 0xbb), 0);
  provider.selfFence('test');
  await t.throwsAsync(node.discard(0, 2 * MiB), { code: 'EFENCED' });
  await t.throwsAsync(node.discard(4 * MiB, 4 * MiB), { code: 'EFENCED', message: /refused/ }, 'refused where there is nothing to zero too');
  t.true(readFileAt(img, 0, MiB).every((b) => b === 0xbb), 'the fenced discard changed nothing');
  t.is(calls(log).length, 1);
});
