// A node writes one lock cell per row for all its locks in that row, and one value cell per row
// for their value blocks. Two operations of one node on locks sharing a row must not lose each
// other's update (review 4 finding 1): each cell written must hold every entry's current state.
// Before the fix each write was built from a copy of the row taken before an earlier write of the
// row had been stored back; the last to land won, on disk and in memory.

import test, { type ExecutionContext } from 'ava';
import { Mode, modeName } from '../src/dlm/compat-matrix.js';
import { FaultDevice, FileDisk } from '../src/disk/index.js';
import { viewOf } from '../src/disk/view-device.js';
import { Lockspace, POLL_MAX_MS, readSnapshot } from '../src/dlm/lock-manager.js';
import { bucketOf, lockCellOffset, lvbCellOffset } from '../src/format/lockspace.js';
import { FAULT_CONTROL_POLL_MS } from '../src/timing.js';
import { REGION_BYTES, REGION_OFFSET, setupLockspaces } from './helpers/fake-lockspaces.js';
import { waitFor, waitForAsync } from './helpers/tmp.js';

/** Bound on a request that must be granted (the lock is free). */
const LOCK_TIMEOUT_MS = 3000;
/** Long enough for a stalled write to be issued, and for a released one to run. */
const STALL_SETTLE_MS = 100;
/** Names tried to find two resources of one bucket (the bucket count is far smaller). */
const NAMES_TRIED_MAX = 100_000;

/** Two resource names in one bucket: in an otherwise empty lockspace both take row `bucket`. */
function sameBucketPair(ls: Lockspace): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; i < NAMES_TRIED_MAX; i++) {
    const name = `res${i}`;
    const bucket = bucketOf(ls.layout.header, Buffer.from(name));
    const other = seen.get(bucket);
    if (other !== undefined) return [other, name];
    seen.set(bucket, name);
  }
  throw new Error(`no two of ${NAMES_TRIED_MAX} names share a bucket`);
}

/** `count` resource names of one bucket (res0's). */
function bucketNames(ls: Lockspace, count: number): string[] {
  const bucket = bucketOf(ls.layout.header, Buffer.from('res0'));
  const names: string[] = [];
  for (let i = 0; names.length < count && i < NAMES_TRIED_MAX; i++) if (bucketOf(ls.layout.header, Buffer.from(`res${i}`)) === bucket) names.push(`res${i}`);
  if (names.length < count) throw new Error(`fewer than ${count} of ${NAMES_TRIED_MAX} names share a bucket`);
  return names;
}

async function diskSnapshot(img: string) {
  const disk = FileDisk.open(img, { guard: 'none', readOnly: true });
  try {
    return await readSnapshot(viewOf(disk, REGION_OFFSET, REGION_BYTES));
  } finally {
    disk.closeSync();
  }
}

/** What another node gets when it asks for `resource` in EX at once: 'granted' or the error's code. */
async function exAtOnce(ls: Lockspace, resource: string): Promise<string> {
  try {
    const l = await ls.lock(resource, Mode.EX, { noqueue: true, timeoutMs: LOCK_TIMEOUT_MS });
    await l.unlock();
    return 'granted';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

async function twoNodes(t: ExecutionContext) {
  const { open, img } = await setupLockspaces(t);
  const a = await open(0);
  const b = await open(1);
  const [r1, r2] = sameBucketPair(a);
  return { a, b, r1, r2, img };
}

// PR: the releases write only the lock cell; EX: they also release their value reservations.
for (const mode of [Mode.PR, Mode.EX]) {
  test(`two unlocks of ${modeName(mode)} locks in one row at once: both entries leave the disk, another node gets both`, async (t) => {
    const { a, b, r1, r2, img } = await twoNodes(t);
    const l1 = await a.lock(r1, mode);
    const l2 = await a.lock(r2, mode);
    t.is(l1.row, l2.row, 'the two locks share a row (the scenario needs it)');
    await Promise.all([l1.unlock(), l2.unlock()]);
    const snap = await diskSnapshot(img);
    t.deepEqual(
      snap.locks.map((l) => `node ${l.nodeId} ${l.state}`),
      [],
      'no entry of node 0 is left on disk',
    );
    t.is(await exAtOnce(b, r1), 'granted');
    t.is(await exAtOnce(b, r2), 'granted');
  });
}

for (const mode of [Mode.PR, Mode.EX]) {
  test(`an unlock of ${modeName(mode)} and a lock in one row at once: the grant is on disk (another node is refused), the release too`, async (t) => {
    const { a, b, r1, r2 } = await twoNodes(t);
    const l1 = await a.lock(r1, mode);
    const [, l2] = await Promise.all([l1.unlock(), a.lock(r2, Mode.EX, { timeoutMs: LOCK_TIMEOUT_MS })]);
    t.is(l1.row, l2.row, 'the two locks share a row (the scenario needs it)');
    t.is(await exAtOnce(b, r2), 'EAGAIN', "node 0's grant of r2 is on disk");
    t.is(await exAtOnce(b, r1), 'granted', "node 0's release of r1 is on disk");
    await l2.unlock();
    t.is(await exAtOnce(b, r2), 'granted');
  });
}

test('two releases writing value blocks of one value row at once: another node reads both values', async (t) => {
  const { a, b, r1, r2, img } = await twoNodes(t);
  const l1 = await a.lock(r1, Mode.EX);
  const l2 = await a.lock(r2, Mode.EX);
  await Promise.all([l1.unlock({ lvb: Buffer.from('value one') }), l2.unlock({ lvb: Buffer.from('value two') })]);
  const snap = await diskSnapshot(img);
  t.deepEqual(
    snap.lvbs.filter((v) => v.nodeId === 0).map((v) => v.value.subarray(0, 9).toString()).sort(),
    ['value one', 'value two'],
    "node 0's value cell holds both values",
  );
  for (const [r, want] of [
    [r1, 'value one'],
    [r2, 'value two'],
  ] as const) {
    const l = await b.lock(r, Mode.PR, { timeoutMs: LOCK_TIMEOUT_MS });
    t.true(l.lvbValid, `${r}'s value block is valid`);
    t.is(l.lvb.subarray(0, want.length).toString(), want, `node 1 reads ${r}'s value`);
    await l.unlock();
  }
});

test('many operations on one row at once (locks, unlocks, value writes, conversions) leave memory and disk agreeing', async (t) => {
  const { a, b, img } = await twoNodes(t);
  const names = bucketNames(a, 6);
  const held = await Promise.all(names.slice(0, 3).map((n) => a.lock(n, Mode.EX)));
  // At once: three releases with values, three new locks, in one row (and its overflow row).
  const [, , , ...taken] = await Promise.all([
    held[0]!.unlock({ lvb: Buffer.from('v0') }),
    held[1]!.unlock(),
    held[2]!.convert(Mode.PR, { lvb: Buffer.from('v2') }),
    ...names.slice(3).map((n) => a.lock(n, Mode.EX, { timeoutMs: LOCK_TIMEOUT_MS })),
  ]);
  const snap = await diskSnapshot(img);
  const onDisk = snap.locks
    .filter((l) => l.nodeId === 0)
    .map((l) => `${l.resource.toString()} ${l.state} ${l.grantedMode}`)
    .sort();
  t.deepEqual(onDisk, [`${names[2]} granted ${Mode.PR}`, ...names.slice(3).map((n) => `${n} granted ${Mode.EX}`)].sort());
  t.is(await exAtOnce(b, names[0]!), 'granted');
  t.is(await exAtOnce(b, names[1]!), 'granted');
  for (const n of names.slice(2)) t.is(await exAtOnce(b, n), 'EAGAIN', `${n} is held by node 0`);
  for (const l of [held[2]!, ...taken]) await l.unlock();
  for (const n of names) t.is(await exAtOnce(b, n), 'granted', `${n} is free again`);
});

/** Node 0 on a FaultDevice over the region: its writes can be failed or stalled. */
async function nodeZeroOnFaults(t: ExecutionContext) {
  const { open, img, cluster } = await setupLockspaces(t);
  const disk = FileDisk.open(img, { guard: 'none' });
  const fault = new FaultDevice(viewOf(disk, REGION_OFFSET, REGION_BYTES));
  const a = await Lockspace.open(fault, { membership: cluster.member(0, 1000n), watchPath: img });
  t.teardown(async () => {
    await a.close().catch(() => undefined);
    disk.closeSync();
  });
  return { a, fault, img, open };
}

/** nodeZeroOnFaults, node 1 plain, and r1 and r2 of one bucket. */
async function faultyNodeZero(t: ExecutionContext) {
  const { a, fault, img, open } = await nodeZeroOnFaults(t);
  const b = await open(1);
  const [r1, r2] = sameBucketPair(a);
  /**
   * A fault on node 0's cell at `offsetBytes`, once, on the cell's (afterOps+1)-th write from now:
   * 'eio' fails before any I/O, 'torn' lets the whole cell land and reports an error.
   */
  const failOnce = (action: 'eio' | 'torn', offsetBytes: number, afterOps = 0) =>
    fault.inject({ op: 'write', action, tornSectors: a.layout.sectorSizeBytes / fault.sectorSizeBytes, offsetBytes, lengthBytes: a.layout.sectorSizeBytes, afterOps, count: 1 });
  return { a, b, img, r1, r2, fault, failOnce };
}

/** Who holds `resource` granted on disk, as "node N MODE". */
async function grantedOnDisk(img: string, resource: string): Promise<string[]> {
  const snap = await diskSnapshot(img);
  return snap.locks
    .filter((l) => l.resource.toString() === resource && l.state === 'granted')
    .map((l) => `node ${l.nodeId} ${modeName(l.grantedMode as Mode)}`)
    .sort();
}

const RELEASE_UNKNOWN = /release outcome unknown/;

// Review 5 finding H2: a release write whose outcome is unknown (any error: it may have landed) must
// leave memory, and so the row's next write, with the state that grants less: released.
test('a release write that fails before any I/O: memory lets go anyway, the row\'s next write carries the release and ends the lost lock; a retried unlock resolves', async (t) => {
  const { a, b, r1, r2, failOnce } = await faultyNodeZero(t);
  const l1 = await a.lock(r1, Mode.PR);
  const l2 = await a.lock(r2, Mode.PR);
  t.is(l1.row, l2.row, 'the two locks share a row (the scenario needs it)');
  failOnce('eio', lockCellOffset(a.layout, l1.row, 0));
  const [u1, u2] = await Promise.allSettled([l1.unlock(), l2.unlock()]);
  t.is(u1.status, 'rejected', 'the first unlock saw the injected error');
  t.is(u2.status, 'fulfilled');
  t.regex(l1.lost ?? '', RELEASE_UNKNOWN, 'r1 is lost, not held');
  t.is(await exAtOnce(b, r1), 'granted', "r2's write carried r1's release");
  t.is(await exAtOnce(b, r2), 'granted', 'r2 was released');
  t.deepEqual(a.heldLocks(), [], "r2's write landed, so r1's release is done: node 0 no longer lists it");
  await l1.unlock();
  t.deepEqual(a.heldLocks(), [], 'the retried unlock resolves');
  t.is(await exAtOnce(b, r1), 'granted');
});

// Review 6 finding H1: a row whose last write failed may still show, on disk, a lock memory let go
// of. Callers do not retry a failed unlock (withVgLock), and a clean close is not a fence, so the
// node itself must write the row again.
/** Bound on the rewrite of a row whose write failed: its backoff reaches pollMaxMs, plus a write. */
const ROW_REPAIR_BOUND_MS = 4 * POLL_MAX_MS + LOCK_TIMEOUT_MS;

test('a release write that fails before any I/O, never retried: node 0 writes the row again and node 1 is granted', async (t) => {
  const { a, b, r1, failOnce } = await faultyNodeZero(t);
  const l1 = await a.lock(r1, Mode.EX);
  failOnce('eio', lockCellOffset(a.layout, l1.row, 0));
  await t.throwsAsync(l1.unlock(), { message: /injected/ });
  t.regex(l1.lost ?? '', RELEASE_UNKNOWN);
  await waitForAsync(async () => (await exAtOnce(b, r1)) === 'granted', ROW_REPAIR_BOUND_MS, "node 0's row to be rewritten without r1");
  t.deepEqual(a.heldLocks(), [], 'the lost lock was dropped once its row was written');
  await l1.unlock();
});

test('a release write that fails, then a clean close (the fault gone): close writes the row, node 1 is granted', async (t) => {
  const { a, b, img, r1, fault } = await faultyNodeZero(t);
  const l1 = await a.lock(r1, Mode.EX);
  // Every write of the row fails (so no rewrite lands before close) until the rule goes.
  const rule = fault.inject({ op: 'write', action: 'eio', offsetBytes: lockCellOffset(a.layout, l1.row, 0), lengthBytes: a.layout.sectorSizeBytes });
  await t.throwsAsync(l1.unlock(), { message: /injected/ });
  t.deepEqual(await grantedOnDisk(img, r1), ['node 0 EX'], 'the failed release left the disk as it was');
  fault.release(rule);
  await a.close();
  t.deepEqual(await grantedOnDisk(img, r1), [], "close cleared node 0's row");
  t.is(await exAtOnce(b, r1), 'granted');
});

test('a withdrawal write that fails after a doorway that landed: node 0 writes the row again, its entry leaves the disk', async (t) => {
  const { a, b, img, r1, failOnce } = await faultyNodeZero(t);
  const off = lockCellOffset(a.layout, bucketOf(a.layout.header, Buffer.from(r1)), 0);
  // The doorway lands and reports an error; the withdrawal (the cell's next write) fails before any I/O.
  failOnce('torn', off);
  failOnce('eio', off, 1);
  await t.throwsAsync(a.lock(r1, Mode.EX, { timeoutMs: LOCK_TIMEOUT_MS }), { message: /torn write injected/ });
  t.deepEqual(a.heldLocks(), [], 'node 0 holds nothing');
  await waitForAsync(async () => (await diskSnapshot(img)).locks.length === 0, ROW_REPAIR_BOUND_MS, "node 0's row to be rewritten without the doorway");
  t.is(await exAtOnce(b, r1), 'granted');
});

for (const [op, label] of [['unlock', 'an unlock'], ['down-conversion', 'a down-conversion']] as const) {
  test(`${label} write that lands and reports an error (torn whole cell): the row's next write does not put the lock back; no two incompatible holders on disk`, async (t) => {
    const { a, b, img, r1, r2, failOnce } = await faultyNodeZero(t);
    const l1 = await a.lock(r1, Mode.EX);
    const l2 = await a.lock(r2, Mode.PR);
    t.is(l1.row, l2.row, 'the two locks share a row (the scenario needs it)');
    failOnce('torn', lockCellOffset(a.layout, l1.row, 0));
    const failed = op === 'unlock' ? l1.unlock() : l1.convert(Mode.PR);
    await t.throwsAsync(failed, { message: /torn write injected/ });
    t.regex(l1.lost ?? '', RELEASE_UNKNOWN);
    // The write landed: node 1 is granted what node 0 let go of.
    const otherMode = op === 'unlock' ? Mode.EX : Mode.PR;
    const other = await b.lock(r1, otherMode, { noqueue: true, timeoutMs: LOCK_TIMEOUT_MS });
    // Node 0's next write of the row (another lock's release) is built from its memory.
    await l2.unlock();
    const want = op === 'unlock' ? ['node 1 EX'] : ['node 0 PR', 'node 1 PR'];
    t.deepEqual(await grantedOnDisk(img, r1), want, "node 0's row write did not re-assert its EX");
    await l1.unlock();
    t.deepEqual(await grantedOnDisk(img, r1), [`node 1 ${modeName(otherMode)}`], "the retried unlock removed node 0's entry");
    t.deepEqual(a.heldLocks(), []);
    await other.unlock();
  });
}

test('a doorway write that lands and reports an error: the request fails, not taken, and its entry does not stay on disk', async (t) => {
  const { a, b, img, r1, failOnce } = await faultyNodeZero(t);
  failOnce('torn', lockCellOffset(a.layout, bucketOf(a.layout.header, Buffer.from(r1)), 0));
  await t.throwsAsync(a.lock(r1, Mode.EX, { timeoutMs: LOCK_TIMEOUT_MS }), { message: /torn write injected/ });
  t.deepEqual(a.heldLocks(), [], 'node 0 holds nothing');
  t.deepEqual((await diskSnapshot(img)).locks, [], "the withdrawal rewrote node 0's row without the landed doorway");
  t.is(await exAtOnce(b, r1), 'granted');
});

test('EX grants whose writes fail give their value reservations back: more of them than the window has value entries, then a grant', async (t) => {
  const { a, failOnce } = await faultyNodeZero(t);
  const entriesInWindow = 2 * a.layout.lvbEntriesPerCell;
  const names = bucketNames(a, entriesInWindow + 1);
  const row = bucketOf(a.layout.header, Buffer.from(names[0]!));
  for (const n of names.slice(0, entriesInWindow)) {
    // The doorway write lands; the grant write (the cell's next) fails.
    failOnce('eio', lockCellOffset(a.layout, row, 0), 1);
    await t.throwsAsync(a.lock(n, Mode.EX, { timeoutMs: LOCK_TIMEOUT_MS }), { message: /injected/ }, `${n}'s grant write failed`);
  }
  const l = await a.lock(names[entriesInWindow]!, Mode.EX, { timeoutMs: LOCK_TIMEOUT_MS });
  t.deepEqual(a.heldLocks(), [l], 'granted: no value entry was kept by the failed grants');
  await l.unlock();
});

for (const retry of ['another value of the row', 'a retried unlock without a value'] as const) {
  test(`a value write that lands and reports an error: the lock stays held; after ${retry}, the value reads as invalid`, async (t) => {
    const { a, b, r1, r2, failOnce } = await faultyNodeZero(t);
    const l1 = await a.lock(r1, Mode.EX);
    const l2 = await a.lock(r2, Mode.EX);
    // Both value entries were reserved at grant in the first row of their shared bucket.
    failOnce('torn', lvbCellOffset(a.layout, l1.bucket, 0));
    await t.throwsAsync(l1.unlock({ lvb: Buffer.from('value one') }), { message: /torn write injected/ });
    t.is(l1.lost, undefined, 'the lock cell was not written: r1 is still held');
    t.is(await exAtOnce(b, r1), 'EAGAIN');
    if (retry === 'another value of the row') {
      // Node 0's next write of that value cell (r2's value) is built from its memory; then r1 goes.
      await l2.unlock({ lvb: Buffer.from('value two') });
      await l1.unlock();
    } else {
      // Read before any other write of the value cell: the retried release itself invalidates.
      await l1.unlock();
    }
    const read1 = await b.lock(r1, Mode.PR, { timeoutMs: LOCK_TIMEOUT_MS });
    t.false(read1.lvbValid, "r1's value is invalid: its write's outcome was unknown, so nobody may trust what it protects");
    await read1.unlock();
    if (retry === 'a retried unlock without a value') await l2.unlock({ lvb: Buffer.from('value two') });
    const read2 = await b.lock(r2, Mode.PR, { timeoutMs: LOCK_TIMEOUT_MS });
    t.true(read2.lvbValid);
    t.is(read2.lvb.subarray(0, 9).toString(), 'value two');
    await read2.unlock();
  });
}

test('close waits for a lock-cell write in flight and clears its row; none lands after close', async (t) => {
  const { a, fault, img } = await nodeZeroOnFaults(t);
  const r = 'closing-res';
  const row = bucketOf(a.layout.header, Buffer.from(r));
  const stall = fault.inject({ op: 'write', action: 'stall', offsetBytes: lockCellOffset(a.layout, row, 0), lengthBytes: a.layout.sectorSizeBytes });
  const writesBefore = a.stats.writes;
  const request = a.lock(r, Mode.EX, { timeoutMs: LOCK_TIMEOUT_MS }).then(
    () => 'granted',
    (err: { code?: string }) => err.code,
  );
  await waitFor(() => a.stats.writes > writesBefore, LOCK_TIMEOUT_MS, 'the doorway write to be issued (and stalled)');
  const closed = a.close();
  setTimeout(() => fault.release(stall), STALL_SETTLE_MS);
  await closed;
  t.not(await request, 'granted');
  // Whatever was in flight has landed or been refused; wait out the stall rule's poll before judging.
  await new Promise((resolve) => setTimeout(resolve, STALL_SETTLE_MS + FAULT_CONTROL_POLL_MS));
  const snap = await diskSnapshot(img);
  t.deepEqual(
    snap.locks.filter((l) => l.nodeId === 0).map((l) => `${l.resource.toString()} ${l.state}`),
    [],
    'no entry of node 0 is on disk after close',
  );
});

test('close waits for a value write in flight before it clears the lock cells (review 5 L1)', async (t) => {
  const { a, fault, img } = await nodeZeroOnFaults(t);
  const l = await a.lock('closing-value', Mode.EX);
  const stall = fault.inject({ op: 'write', action: 'stall', offsetBytes: lvbCellOffset(a.layout, l.bucket, 0), lengthBytes: a.layout.sectorSizeBytes });
  const writesBefore = a.stats.writes;
  const release = l.unlock({ lvb: Buffer.from('last value') }).then(
    () => 'released',
    (err: { code?: string }) => err.code,
  );
  await waitFor(() => a.stats.writes > writesBefore, LOCK_TIMEOUT_MS, 'the value write to be issued (and stalled)');
  let closed = false;
  const closing = a.close().then(() => void (closed = true));
  await new Promise((resolve) => setTimeout(resolve, STALL_SETTLE_MS));
  t.false(closed, 'close waits while the value write is stalled');
  t.deepEqual(await grantedOnDisk(img, 'closing-value'), ['node 0 EX'], 'the lock cell still holds the lock');
  fault.release(stall);
  await closing;
  t.log('the unlock:', await release);
  const snap = await diskSnapshot(img);
  t.deepEqual(snap.locks, [], 'close cleared the lock cell');
  t.deepEqual(
    snap.lvbs.map((v) => v.value.subarray(0, 10).toString()),
    ['last value'],
    'the value landed before the lock went',
  );
});
