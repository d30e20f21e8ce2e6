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
import { createImage, diskInfo, FileDisk, isSyncDevice, type BlockDevice, type SyncBlockDevice } from '../src/disk/index.js';
import { commitContext, lvCreate, openLv, pvCreate, vgCreate } from '../src/volume/manager.js';
import type { WriteGate } from '../src/disk/write-gate.js';
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

// Review 7, L8: zeroing gigabytes in one call would hold the event loop (the heartbeat stops, the
// node fences itself half-way). The gated discard is queued in slices; the loop turns between them.
// The gate spends SLOW_ENTER_MS in each write's enter, so the discard takes far longer than the
// turn budget (turn-budget.ts) on any machine: in one call, no timer could run before it ended.
const SLOW_ENTER_MS = 2;
const slowGate: WriteGate = {
  enter() {
    const untilMs = performance.now() + SLOW_ENTER_MS;
    while (performance.now() < untilMs);
  },
  check() {},
  leave() {},
};

/** Discards all of `dev` (written full of 0xaa first) with a 1 ms timer running; checks the loop turned, zeros, and issue order. */
async function longDiscardTurns(t: ExecutionContext, dev: BlockDevice & SyncBlockDevice, readBack: () => Buffer): Promise<void> {
  const sizeBytes = dev.sizeBytes;
  dev.writeSync(Buffer.alloc(sizeBytes, 0xaa), 0);
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 1);
  t.teardown(() => clearInterval(ticker));
  const startMs = performance.now();
  const discarded = dev.discard(0, sizeBytes);
  // Issued after the discard: must land after it, whichever turn the discard's slices run in.
  const after = dev.write(Buffer.alloc(4096, 0xbb), sizeBytes - 4096);
  t.is(ticks, 0, 'nothing turned the loop yet');
  await Promise.all([discarded, after]);
  const tookMs = performance.now() - startMs;
  clearInterval(ticker);
  t.log(`${sizeBytes / MiB} MiB discarded in ${tookMs.toFixed(0)} ms, ${ticks} turns of a 1 ms timer`);
  t.true(ticks > 0, `the loop turned while ${sizeBytes / MiB} MiB were zeroed (${tookMs.toFixed(0)} ms)`);
  const bytes = readBack();
  t.true(bytes.subarray(0, sizeBytes - 4096).every((b) => b === 0), 'the range reads as zeros');
  t.true(bytes.subarray(sizeBytes - 4096).every((b) => b === 0xbb), 'the write issued after the discard landed after it');
}

test.serial('a long gated discard lets the event loop turn between its slices, keeps issue order, and reads as zeros', async (t) => {
  const img = path.join(tempDir(t), 'long.img');
  createImage(img, { sizeBytes: 64 * MiB });
  const dev = FileDisk.open(img, { gate: slowGate });
  t.teardown(() => dev.closeSync());
  await longDiscardTurns(t, dev, () => readFileAt(img, 0, 64 * MiB));
});

test.serial('a long discard through an LV on a gated PV lets the event loop turn too (the LV passes it to the PV piece by piece)', async (t) => {
  const pv = path.join(tempDir(t), 'pv.img');
  createImage(pv, { sizeBytes: 80 * MiB });
  await pvCreate([pv], {});
  await vgCreate([pv], [pv], 'vgd', 8192 /* 4 MiB */, commitContext('test'));
  await lvCreate([pv], 'vgd', 'lv', { size: { kind: 'extents', sign: '', extents: 16 } }, commitContext('test'));
  const lv = await openLv([pv], 'vgd', 'lv', { open: async (spec) => FileDisk.open(spec, { gate: slowGate }) });
  t.teardown(() => lv.close());
  t.true(isSyncDevice(lv), 'the LV over a file PV takes the synchronous path');
  const sync = lv as unknown as BlockDevice & SyncBlockDevice;
  await longDiscardTurns(t, sync, () => {
    const back = Buffer.alloc(sync.sizeBytes);
    sync.readSync(back, 0);
    return back;
  });
});
