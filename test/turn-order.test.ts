// The turn budget (src/disk/turn-budget.ts) defers I/O once a run of in-call I/O has held the event
// loop too long; it must never reorder it (review 4 finding 2). The scenario: the loop is held
// past SYNC_RUN_BUDGET_MS, an op is deferred, and a callback of a later phase of the same loop turn
// (setImmediate) issues a second op on the same sector. Before the fix the ticker's timer ran first
// in the next timers phase and cleared the starved flag, the second op ran inside its call, and the
// deferred first op landed last: the older bytes stayed on disk.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { createImage, deferredPending, FileDisk, SYNC_RUN_BUDGET_MS, type BlockDevice } from '../src/disk/index.js';
import { SyncLvDevice } from '../src/volume/lv-device.js';
import { commitContext, lvCreate, openLv, pvCreate, vgCreate } from '../src/volume/manager.js';
import { readFileAt, tempDir } from './helpers/tmp.js';

const MiB = 1024 * 1024;
const SECTOR_BYTES = 512;
/**
 * Bound on holding the loop with in-call reads until one is deferred: the budget plus a wide margin
 * (the clock is read every few asks, and a loaded machine may deschedule the loop meanwhile).
 */
const HOLD_BOUND_MS = SYNC_RUN_BUDGET_MS * 100;
/** Where the holding reads go (away from the sector under test). */
const HOLD_READ_OFFSET_BYTES = 64 * 1024;

function image(t: ExecutionContext, sizeBytes = 4 * MiB): string {
  const file = path.join(tempDir(t), 'd.img');
  createImage(file, { sizeBytes });
  return file;
}

function openDisk(t: ExecutionContext, file: string): FileDisk {
  const disk = FileDisk.open(file, { guard: 'none' });
  t.teardown(() => disk.close());
  return disk;
}

/**
 * From a timers-phase callback (as after any timer), holds the loop with in-call reads of `holder`
 * until the budget defers one, then issues `first` (deferred by then; `firstDeferred` checks that from the
 * file), and `later` from a setImmediate of the same turn. Resolves when both are done.
 */
async function firstThenLater(t: ExecutionContext, holder: BlockDevice, first: () => Promise<void>, later: () => Promise<void>, firstLanded: () => boolean): Promise<void> {
  await holder.read(Buffer.alloc(SECTOR_BYTES), HOLD_READ_OFFSET_BYTES); // starts the budget's ticker
  await new Promise((resolve) => setTimeout(resolve, 20));
  const scratch = Buffer.alloc(SECTOR_BYTES);
  const t0 = performance.now();
  while (!deferredPending() && performance.now() - t0 < HOLD_BOUND_MS) void holder.read(scratch, HOLD_READ_OFFSET_BYTES);
  t.true(deferredPending(), `a read was deferred within ${HOLD_BOUND_MS} ms of holding the loop`);
  const p1 = first();
  t.false(firstLanded(), 'the first op was deferred (the scenario needs it)');
  const p2 = new Promise<void>((resolve, reject) => setImmediate(() => later().then(resolve, reject)));
  await Promise.all([p1, p2]);
}

test.serial('a deferred write and a later write of the same sector land in issue order (file disk)', async (t) => {
  const file = image(t);
  const disk = openDisk(t, file);
  await firstThenLater(
    t,
    disk,
    () => disk.write(Buffer.alloc(SECTOR_BYTES, 1), 0),
    () => disk.write(Buffer.alloc(SECTOR_BYTES, 2), 0),
    () => readFileAt(file, 0, 1)[0] === 1,
  );
  t.is(readFileAt(file, 0, 1)[0], 2, 'the later write is what is on disk');
});

test.serial('order holds across two handles of one image: the deferred queue is one per process', async (t) => {
  const file = image(t);
  const a = openDisk(t, file);
  const b = openDisk(t, file);
  await firstThenLater(
    t,
    a,
    () => a.write(Buffer.alloc(SECTOR_BYTES, 1), 0),
    () => b.write(Buffer.alloc(SECTOR_BYTES, 2), 0),
    () => readFileAt(file, 0, 1)[0] === 1,
  );
  t.is(readFileAt(file, 0, 1)[0], 2, 'the later write, through the other handle, is what is on disk');
});

test.serial('a discard issued after a deferred write discards it', async (t) => {
  const file = image(t);
  const disk = openDisk(t, file);
  await firstThenLater(
    t,
    disk,
    () => disk.write(Buffer.alloc(SECTOR_BYTES, 1), 0),
    () => disk.discard(0, SECTOR_BYTES),
    () => readFileAt(file, 0, 1)[0] === 1,
  );
  t.is(readFileAt(file, 0, 1)[0], 0, 'the discard ran after the write');
});

test.serial('a flush issued after a deferred write starts its fdatasync after the write', async (t) => {
  const file = image(t);
  const disk = openDisk(t, file);
  // What the file holds when FileDisk issues the flush's fdatasync (looked up on the fs module at
  // call time): the write issued before the flush must be there, or the flush does not cover it.
  const fdatasync = fs.fdatasync;
  let atFdatasync: number | undefined;
  t.teardown(() => void (fs.fdatasync = fdatasync));
  fs.fdatasync = ((fd: number, cb: fs.NoParamCallback) => {
    atFdatasync ??= readFileAt(file, 0, 1)[0];
    fdatasync(fd, cb);
  }) as typeof fs.fdatasync;
  await firstThenLater(
    t,
    disk,
    () => disk.write(Buffer.alloc(SECTOR_BYTES, 1), 0),
    () => disk.flush(),
    () => readFileAt(file, 0, 1)[0] === 1,
  );
  fs.fdatasync = fdatasync;
  t.is(atFdatasync, 1, 'the write was on the file when the flush began');
});

test.serial('close waits for a write still in the deferred queue: it lands instead of failing ECLOSED', async (t) => {
  const file = image(t);
  const disk = openDisk(t, file);
  // Close in the same turn as the deferred write (firstThenLater's later op may run after the queue).
  await firstThenLater(
    t,
    disk,
    () => Promise.all([disk.write(Buffer.alloc(SECTOR_BYTES, 1), 0), disk.close()]).then(() => undefined),
    () => Promise.resolve(),
    () => readFileAt(file, 0, 1)[0] === 1,
  );
  t.is(readFileAt(file, 0, 1)[0], 1, 'the write issued before close is on disk');
});

test.serial('a deferred LV write is not passed by a later write of the same sector', async (t) => {
  const pv = image(t, 64 * MiB);
  await pvCreate([pv], {});
  await vgCreate([pv], [pv], 'vgo', 8192, commitContext('test'));
  await lvCreate([pv], 'vgo', 'lv', { size: { kind: 'extents', sign: '', extents: 1 } }, commitContext('test'));
  const lv = await openLv([pv], 'vgo', 'lv', { guard: 'none' });
  t.teardown(() => lv.close());
  if (!(lv instanceof SyncLvDevice)) return t.fail('an LV over a local file has the synchronous form');
  const peek = Buffer.alloc(SECTOR_BYTES);
  await firstThenLater(
    t,
    lv,
    () => lv.write(Buffer.alloc(SECTOR_BYTES, 1), 0),
    () => lv.write(Buffer.alloc(SECTOR_BYTES, 2), 0),
    () => (lv.readSync(peek, 0), peek[0] === 1),
  );
  lv.readSync(peek, 0);
  t.is(peek[0], 2, 'the later write is what the LV holds');
});
