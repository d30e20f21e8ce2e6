// LockedLv.flush goes through the same admission as reads and writes (review finding 7): held while
// the node has no quorum, and counted in flight, so a lock-out's drain waits for it before the LV
// lock is let go (a layout change must not commit under a flush of the old layout's PVs).
// In-process, with a lock service and an LV that record what is done to them.

import test from 'ava';
import type { QuorumHold } from '../src/disk/quorum-hold.js';
import { Mode } from '../src/dlm/compat-matrix.js';
import type { LvDevice } from '../src/volume/lv-device.js';
import { LockedLv } from '../src/volume/locked-lv.js';
import { fakeLockspace } from './helpers/fake-lockspaces.js';
import { deferred, ticks, type Deferred } from './helpers/deferred.js';

/** An LV whose flush finishes when the test says so. */
function fakeLv(log: string[], flushDone: Deferred): LvDevice {
  let generation = 1;
  const lv = {
    name: 'vg/lv',
    sectorSizeBytes: 512,
    readOnly: false,
    sizeBytes: 1 << 20,
    lvId: 'abcdefghijklmnopqrstuvwxyz012345',
    get generation() {
      return generation;
    },
    flush: async () => {
      log.push('flush start');
      await flushDone.promise;
      log.push('flush end');
    },
    refresh: async () => {
      generation++;
      return generation;
    },
    close: async () => undefined,
  };
  return lv as unknown as LvDevice;
}

test('a lock-out waits for a flush in flight before it lets the LV lock go', async (t) => {
  const log: string[] = [];
  const flushDone = deferred();
  const { ls, bast } = fakeLockspace(log);
  const dev = await LockedLv.open(ls, 'vg', async () => fakeLv(log, flushDone), { mode: Mode.PR, lockTimeoutMs: 1000 });
  const f = dev.flush();
  await ticks();
  t.deepEqual(log.filter((l) => l.startsWith('flush')), ['flush start']);
  bast()!();
  await ticks();
  t.false(log.includes('unlock lv'), `the LV lock was let go under a flush in flight: ${log.join(', ')}`);
  flushDone.resolve();
  await f;
  await ticks();
  t.true(log.indexOf('flush end') < log.indexOf('unlock lv'), log.join(', '));
  await dev.close();
});

test('a flush waits for quorum like a write: nothing reaches the LV until the hold admits it', async (t) => {
  const log: string[] = [];
  const flushDone = deferred();
  flushDone.resolve();
  const admitted = deferred();
  const hold = { passing: false, admit: () => admitted.promise } as unknown as QuorumHold;
  const { ls } = fakeLockspace(log);
  const dev = await LockedLv.open(ls, 'vg', async () => fakeLv(log, flushDone), { mode: Mode.PR, lockTimeoutMs: 1000, hold });
  let done = false;
  const f = dev.flush().then(() => (done = true));
  await ticks();
  t.false(log.includes('flush start'), 'flushed without quorum');
  t.false(done);
  (hold as unknown as { passing: boolean }).passing = true;
  admitted.resolve();
  await f;
  t.true(log.includes('flush end'));
  await dev.close();
});
