// An LV over local files does its reads and writes inside the call (its synchronous form: issue 18's
// cost per I/O), but never while a fault rule could block the thread in it: a node's heartbeat runs
// on that thread, and a latency or stall rule in the synchronous form sleeps. The verdict is cached
// per LV and must move with every rule change (src/disk/device.ts syncFitEpoch). In-process, over a
// real PV image with a FaultDevice per PV, as a node's provider stacks them; and the same through a
// LockedLv (its own synchronous path).

import test from 'ava';
import path from 'node:path';
import { createImage, FaultDevice, FileDisk, isSyncFit, type BlockDevice } from '../src/disk/index.js';
import { Mode } from '../src/dlm/compat-matrix.js';
import { LockedLv } from '../src/volume/locked-lv.js';
import { commitContext, lvCreate, openLv, pvCreate, vgCreate, withSession } from '../src/volume/manager.js';
import { fakeLockspace } from './helpers/fake-lockspaces.js';
import { tempDir } from './helpers/tmp.js';

const MiB = 1024 * 1024;
/** The injected latency: a call that slept it would take at least this long. */
const LATENCY_MS = 300;
/** A call that returns well below LATENCY_MS did not sleep in it. */
const CALL_BOUND_MS = 100;

/** A VG on one PV image with a 1-extent LV, opened over a FaultDevice (returned) on the PV. */
async function lvOverFaults(t: import('ava').ExecutionContext) {
  const pv = path.join(tempDir(t), 'pv.img');
  createImage(pv, { sizeBytes: 64 * MiB });
  await pvCreate([pv], {});
  await vgCreate([pv], [pv], 'vgf', 8192, commitContext('test'));
  await lvCreate([pv], 'vgf', 'lv', { size: { kind: 'extents', sign: '', extents: 1 } }, commitContext('test'));
  const faults: FaultDevice[] = [];
  const lv = await openLv([pv], 'vgf', 'lv', {
    guard: 'none',
    open: async (spec) => {
      const f = new FaultDevice(FileDisk.open(spec, { guard: 'none' }));
      faults.push(f);
      return f;
    },
  });
  t.teardown(() => lv.close());
  // The LV is the VG's first: its one linear segment starts at the PV's first extent, pe_start.
  const peStartBytes = await withSession([pv], { readOnly: true, guard: 'none' }, async (s) => s.vg('vgf').vg.pvs[0]!.peStartSectors * 512);
  return { lv, fault: faults[0]!, peStartBytes };
}

/**
 * Reads through `dev` under a latency rule: the call returns at once (the thread is not put to
 * sleep: a timer set before it fires before the read completes), and the read completes after the
 * latency.
 */
async function readIsNotBlocking(t: import('ava').ExecutionContext, dev: BlockDevice): Promise<void> {
  let timerFired = false;
  setTimeout(() => (timerFired = true), 5);
  const t0 = performance.now();
  const p = dev.read(Buffer.alloc(4096), 0);
  const callMs = performance.now() - t0;
  t.true(callMs < CALL_BOUND_MS, `the read's call held the thread for ${callMs.toFixed(0)} ms (the latency rule slept in the synchronous form)`);
  await p;
  t.true(performance.now() - t0 >= LATENCY_MS - 10, 'the latency rule applied');
  t.true(timerFired, 'the event loop turned while the read waited');
}

test('an LV over local files is synchronous; a fault rule makes its promise form leave the thread free, and clearing it brings the synchronous path back', async (t) => {
  const { lv, fault, peStartBytes } = await lvOverFaults(t);
  t.true(isSyncFit(lv), 'no rule: the synchronous form is fit');
  const buf = Buffer.alloc(4096, 0x5a);
  await lv.write(buf, 0);
  fault.inject({ action: 'latency', latencyMs: LATENCY_MS, op: 'read' });
  t.false(isSyncFit(lv), 'a rule on a PV makes the LV unfit at once (the cached verdict moved)');
  await readIsNotBlocking(t, lv);
  fault.clear();
  t.true(isSyncFit(lv), 'cleared: fit again');
  // Inside the call: the write has landed before the promise is even looked at.
  void lv.write(Buffer.alloc(4096, 0xa5), 4096);
  const back = Buffer.alloc(4096);
  fault.readSync(back, peStartBytes + 4096);
  t.is(back[0], 0xa5, 'the write ran inside the call');
});

test('a LockedLv over such an LV takes the promise form while a fault rule is installed, the thread staying free, and the synchronous form again once it is cleared', async (t) => {
  const { lv, fault, peStartBytes } = await lvOverFaults(t);
  const { ls } = fakeLockspace([]);
  const dev = await LockedLv.open(ls, 'vgf', async () => lv, { mode: Mode.EX, lockTimeoutMs: 1000 });
  t.teardown(() => dev.close());
  await dev.write(Buffer.alloc(4096, 1), 0);
  fault.inject({ action: 'latency', latencyMs: LATENCY_MS, op: 'read' });
  await readIsNotBlocking(t, dev);
  fault.clear();
  void dev.write(Buffer.alloc(4096, 0xa5), 8192);
  const back = Buffer.alloc(4096);
  fault.readSync(back, peStartBytes + 8192);
  t.is(back[0], 0xa5, 'no rule: the write ran inside the call');
});

// A loop of awaited in-call I/O must still let the event loop turn (src/disk/turn-budget.ts): a
// node's heartbeat and self-fence watchdog are timers on this thread. Without the budget the
// longest gap between a 2 ms interval's callbacks is the whole loop.
/** How long each loop of awaited I/O runs. */
const LOOP_MS = 1500;
/** The longest gap allowed: SYNC_RUN_BUDGET_MS plus a wide margin for a loaded 2-core machine, still half the loop. */
const GAP_BOUND_MS = 750;

async function longestTimerGapMs(dev: BlockDevice): Promise<number> {
  let last = performance.now();
  let longest = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 2);
  const buf = Buffer.alloc(4096, 0x33);
  const t0 = performance.now();
  try {
    for (let i = 0; performance.now() - t0 < LOOP_MS; i++) {
      const off = (i % 256) * 4096;
      await dev.write(buf, off);
      await dev.read(buf, off);
    }
  } finally {
    clearInterval(ticker);
  }
  return Math.max(longest, performance.now() - last);
}

test.serial(`a loop of awaited in-call I/O lets timers run at least every ${GAP_BOUND_MS} ms: on a file disk, an LV and a LockedLv`, async (t) => {
  const { lv } = await lvOverFaults(t);
  const { ls } = fakeLockspace([]);
  const locked = await LockedLv.open(ls, 'vgf', async () => lv, { mode: Mode.EX, lockTimeoutMs: 1000 });
  t.teardown(() => locked.close());
  const file = path.join(tempDir(t), 'plain.img');
  createImage(file, { sizeBytes: 4 * MiB });
  const disk = FileDisk.open(file, { guard: 'none' });
  t.teardown(() => disk.close());
  for (const [what, dev] of [['file disk', disk], ['LV', lv], ['LockedLv', locked]] as const) {
    const gapMs = await longestTimerGapMs(dev);
    t.log(`${what}: longest gap between timer callbacks ${gapMs.toFixed(1)} ms over a ${LOOP_MS} ms loop`);
    t.true(gapMs < GAP_BOUND_MS, `${what}: the loop held the event loop for ${gapMs.toFixed(0)} ms`);
  }
});
