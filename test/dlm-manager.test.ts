// The lock manager in one process: several Lockspace instances (one per simulated node, each with
// its own device handle) on one image file, and a fake membership the test drives (who is fenced).
// The multi-process proof with the real heartbeat/fencing is test/dlm-multiprocess.test.ts.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { createImage, FileDisk } from '../src/disk/index.js';
import { viewOf } from '../src/disk/view-device.js';
import { Mode } from '../src/dlm/compat-matrix.js';
import { defaultHeader, DlmError, Lockspace, readSnapshot } from '../src/dlm/lock-manager.js';
import { DiskError, FormatError } from '../src/errors.js';
import { bucketOf, lockCellOffset, LOCK_ENTRIES_PER_CELL, lockspaceLayout, lockspaceRegionBytes } from '../src/format/lockspace.js';
import { tempDir } from './helpers/tmp.js';
import { FakeCluster, NODES, REGION_BYTES, REGION_OFFSET, setupLockspaces } from './helpers/fake-lockspaces.js';

const setup = setupLockspaces;

const isCode = (code: string) => (e: unknown) => e instanceof DlmError && e.code === code;

test('EX excludes, PR shares, NL and CR coexist with PW; unlock hands over', async (t) => {
  const { open } = await setup(t);
  const [a, b, c] = [await open(0), await open(1), await open(2)];
  const la = await a.lock('r1', Mode.EX);
  await t.throwsAsync(b.lock('r1', Mode.PR, { noqueue: true }), { instanceOf: DlmError, message: /would block/ });
  const pending = b.lock('r1', Mode.PR, { timeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 50));
  await la.unlock();
  const lb = await pending;
  const lc = await c.lock('r1', Mode.PR, { timeoutMs: 2000 });
  t.is(lb.mode, Mode.PR);
  t.is(lc.mode, Mode.PR);
  await lb.unlock();
  await lc.unlock();
  const pw = await a.lock('r2', Mode.PW);
  const cr = await b.lock('r2', Mode.CR, { noqueue: true });
  const nl = await c.lock('r2', Mode.NL, { noqueue: true });
  await t.throwsAsync(c.lock('r2', Mode.CW, { noqueue: true }), { code: 'EAGAIN' } as never);
  for (const l of [pw, cr, nl]) await l.unlock();
});

test('timeouts and cancellation withdraw the request and name the blocker', async (t) => {
  const { open, img } = await setup(t);
  const [a, b] = [await open(0), await open(1)];
  const la = await a.lock('busy', Mode.EX);
  const t0 = performance.now();
  const err = await t.throwsAsync(b.lock('busy', Mode.PR, { timeoutMs: 200 }));
  t.true(isCode('ETIMEDOUT')(err), String(err));
  t.regex(err!.message, /node 0 holds EX/);
  t.true(performance.now() - t0 < 1500);
  const ac = new AbortController();
  const p = b.lock('busy', Mode.EX, { timeoutMs: 5000, signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  t.true(isCode('ECANCELED')(await t.throwsAsync(p)));
  const disk = FileDisk.open(img, { guard: 'none', readOnly: true });
  const snap = await readSnapshot(viewOf(disk, REGION_OFFSET, REGION_BYTES));
  disk.closeSync();
  t.deepEqual(snap.locks.map((l) => [l.nodeId, l.state]), [[0, 'granted']], 'withdrawn requests leave no record');
  await la.unlock();
});

test('FIFO: queued new requests are granted in arrival order, even a compatible one behind an incompatible one', async (t) => {
  const { open } = await setup(t);
  const [a, b, c, d] = [await open(0), await open(1), await open(2), await open(3)];
  const order: string[] = [];
  const la = await a.lock('q', Mode.PR);
  const pb = b.lock('q', Mode.EX, { timeoutMs: 5000 }).then((l) => (order.push('b-EX'), l));
  await new Promise((r) => setTimeout(r, 30));
  // PR is compatible with a's PR, but b's EX is queued ahead of it: it must wait (strict FIFO).
  const pc = c.lock('q', Mode.PR, { timeoutMs: 5000 }).then((l) => (order.push('c-PR'), l));
  await new Promise((r) => setTimeout(r, 30));
  const pd = d.lock('q', Mode.CR, { timeoutMs: 5000 }).then((l) => (order.push('d-CR'), l));
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(order, []);
  await la.unlock();
  const lb = await pb;
  await new Promise((r) => setTimeout(r, 50));
  t.deepEqual(order, ['b-EX']);
  await lb.unlock();
  const [lc, ld] = await Promise.all([pc, pd]);
  t.deepEqual(order, ['b-EX', 'c-PR', 'd-CR']);
  await lc.unlock();
  await ld.unlock();
});

test('conversions go ahead of new requests; down-conversions are immediate', async (t) => {
  const { open } = await setup(t);
  const [a, b, c] = [await open(0), await open(1), await open(2)];
  const la = await a.lock('conv', Mode.PR);
  const lb = await b.lock('conv', Mode.PR);
  const order: string[] = [];
  const pc = c.lock('conv', Mode.EX, { timeoutMs: 5000 }).then((l) => (order.push('c-new-EX'), l));
  await new Promise((r) => setTimeout(r, 30));
  const pa = la.convert(Mode.EX, { timeoutMs: 5000 }).then(() => order.push('a-convert-EX'));
  await new Promise((r) => setTimeout(r, 30));
  await lb.unlock();
  await pa;
  t.deepEqual(order, ['a-convert-EX']);
  await la.convert(Mode.NL); // down: immediate
  t.is(la.mode, Mode.NL);
  const lc = await pc;
  t.deepEqual(order, ['a-convert-EX', 'c-new-EX']);
  await lc.unlock();
  await la.unlock();
});

test('conversion deadlock is reported (EDEADLK), not hung in; the survivor converts', async (t) => {
  const { open } = await setup(t);
  const [a, b] = [await open(0), await open(1)];
  const la = await a.lock('dl', Mode.PR);
  const lb = await b.lock('dl', Mode.PR);
  const pa = la.convert(Mode.EX, { timeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 30));
  const err = await t.throwsAsync(lb.convert(Mode.EX, { timeoutMs: 5000 }));
  t.true(isCode('EDEADLK')(err), String(err));
  t.is(lb.mode, Mode.PR, 'the cancelled conversion keeps its granted mode');
  await lb.unlock();
  await pa;
  t.is(la.mode, Mode.EX);
  await la.unlock();
});

test('value block: written by PW/EX at down-convert or unlock, read on grant, invalid after its writer was fenced', async (t) => {
  const { open, cluster } = await setup(t);
  const [a, b, c] = [await open(0), await open(1), await open(2)];
  const la = await a.lock('lvb', Mode.EX);
  t.true(la.lvbValid);
  t.true(la.lvb.equals(Buffer.alloc(32)));
  await la.convert(Mode.PR, { lvb: Buffer.from('first value') });
  const lb = await b.lock('lvb', Mode.CR);
  t.is(lb.lvb.subarray(0, 11).toString(), 'first value');
  t.true(lb.lvbValid);
  await lb.unlock({ lvb: Buffer.from('ignored: CR cannot write') });
  await la.convert(Mode.EX);
  await la.unlock({ lvb: Buffer.from('second value') });
  const lc = await c.lock('lvb', Mode.PW);
  t.is(lc.lvb.subarray(0, 12).toString(), 'second value');
  // c dies holding PW: until it is fenced its lock still counts, afterwards the value is invalid.
  await t.throwsAsync(b.lock('lvb', Mode.PR, { timeoutMs: 150 }), { code: 'ETIMEDOUT' } as never);
  cluster.fence(2, 3000n);
  const lb2 = await b.lock('lvb', Mode.PR, { timeoutMs: 2000 });
  t.false(lb2.lvbValid);
  await lb2.unlock();
  const la2 = await a.lock('lvb', Mode.EX);
  t.false(la2.lvbValid);
  await la2.unlock({ lvb: Buffer.from('third value') });
  const lb3 = await b.lock('lvb', Mode.PR);
  t.true(lb3.lvbValid);
  t.is(lb3.lvb.subarray(0, 11).toString(), 'third value');
  await lb3.unlock();
  // IVVALBLK
  const la3 = await a.lock('lvb', Mode.EX);
  await la3.unlock({ invalidateLvb: true });
  const lb4 = await b.lock('lvb', Mode.PR);
  t.false(lb4.lvbValid);
  await lb4.unlock();
});

test('a dead node keeps its locks until fenced; rejoining with a new generation starts clean and invalidates its PW/EX value blocks', async (t) => {
  const { open, cluster } = await setup(t);
  const [a, b] = [await open(0, 11n), await open(1)];
  const la = await a.lock('rj', Mode.EX);
  await la.convert(Mode.EX);
  // a "crashes" (we simply stop using the instance; its records stay on disk)
  await t.throwsAsync(b.lock('rj', Mode.PR, { timeoutMs: 100 }), { code: 'ETIMEDOUT' } as never);
  cluster.fence(0, 11n);
  const a2 = await open(0, 12n); // the same node, new incarnation: its old records are cleared
  const snap = await a2.snapshot();
  t.deepEqual(snap.locks.filter((l) => l.nodeId === 0), []);
  t.true(snap.lvbs.some((v) => v.nodeId === 0 && v.invalidSeq !== null), 'the old EX hold became a persisted invalidation');
  const lb = await b.lock('rj', Mode.PR, { timeoutMs: 1000 });
  t.false(lb.lvbValid);
  await lb.unlock();
});

test('blocking notification tells the holder which mode is blocked, once per mode', async (t) => {
  const { open } = await setup(t);
  const [a, b, c] = [await open(0), await open(1), await open(2)];
  const basts: Mode[] = [];
  const la = await a.lock('bast', Mode.EX, { bast: (m) => basts.push(m) });
  const pb = b.lock('bast', Mode.PR, { timeoutMs: 5000 });
  for (let i = 0; i < 100 && basts.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(basts, [Mode.PR]);
  const pc = c.lock('bast', Mode.PR, { timeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(basts, [Mode.PR], 'no repeat for the same mode');
  await la.convert(Mode.PR); // compatible now: both are granted
  const [lb, lc] = await Promise.all([pb, pc]);
  await la.unlock();
  await lb.unlock();
  await lc.unlock();
});

test('a NOQUEUE request that would block writes nothing (no claim a holder could take as a blocking notice)', async (t) => {
  const { open, img, cluster } = await setup(t);
  const a = await open(0);
  const disk = FileDisk.open(img, { guard: 'none' });
  t.teardown(() => disk.close());
  const view = viewOf(disk, REGION_OFFSET, REGION_BYTES);
  let writes = 0;
  // Counts node 1's writes to the lockspace: a claim on disk is what a holder's pump sees as a waiter.
  const counted = new Proxy(view, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      const f = v as (...args: unknown[]) => unknown;
      return (...args: unknown[]) => {
        if (prop === 'write' || prop === 'writeSync') writes++;
        return f.apply(target, args);
      };
    },
  });
  const b = await Lockspace.open(counted, { membership: cluster.member(1, 2000n), watchPath: img });
  t.teardown(() => b.close());
  const basts: Mode[] = [];
  const la = await a.lock('nq', Mode.EX, { bast: (m) => basts.push(m) });
  const before = writes;
  for (let i = 0; i < 5; i++) await t.throwsAsync(b.lock('nq', Mode.EX, { noqueue: true }), { code: 'EAGAIN' } as never);
  t.is(writes - before, 0, 'a NOQUEUE request that cannot be granted writes no record');
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(basts, [], 'the holder got no blocking notice');
  await la.unlock();
  const lb = await b.lock('nq', Mode.EX, { noqueue: true });
  t.true(writes - before > 0, 'a grantable NOQUEUE request does write');
  await lb.unlock();
});

test('a corrupt record of another node is never trusted: the request times out naming the sector', async (t) => {
  const { open, img } = await setup(t);
  const a = await open(0);
  const layout = lockspaceLayout(defaultHeader(REGION_BYTES, 512, NODES));
  const off = REGION_OFFSET + lockCellOffset(layout, bucketOf(layout.header, Buffer.from('x')), 1);
  const fd = fs.openSync(img, 'r+');
  const junk = Buffer.alloc(512, 0x5a);
  fs.writeSync(fd, junk, 0, 512, off);
  const err = await t.throwsAsync(a.lock('x', Mode.EX, { timeoutMs: 300 }));
  t.true(isCode('ETIMEDOUT')(err), String(err));
  t.regex(err!.message, /checksum mismatch/);
  // Repaired (here: the sector is blank again) -> the next request goes through.
  fs.writeSync(fd, Buffer.alloc(512), 0, 512, off);
  fs.closeSync(fd);
  const l = await a.lock('x', Mode.EX, { timeoutMs: 1000 });
  await l.unlock();
  t.pass();
});

test('names, modes and table limits are checked', async (t) => {
  const { open } = await setup(t);
  const a = await open(0);
  await t.throwsAsync(a.lock('', Mode.EX), { code: 'EINVAL' } as never);
  await t.throwsAsync(a.lock('x'.repeat(65), Mode.EX), { code: 'EINVAL' } as never);
  await t.throwsAsync(a.lock('ok', 9 as Mode), { code: 'EINVAL' } as never);
  // The overflow rule: a resource's entries live in its bucket's row or the next one, five per
  // cell; names of one bucket fill both of this node's cells, then the next one is refused.
  const header = a.layout.header;
  const target = bucketOf(header, Buffer.from('r0'));
  const same: string[] = [];
  for (let i = 0; same.length < 2 * LOCK_ENTRIES_PER_CELL + 1; i++) if (bucketOf(header, Buffer.from(`r${i}`)) === target) same.push(`r${i}`);
  const held = [];
  for (const name of same.slice(0, 2 * LOCK_ENTRIES_PER_CELL)) held.push(await a.lock(name, Mode.NL));
  t.deepEqual(new Set(held.map((l) => l.row)), new Set([target, target + 1]), 'the bucket row first, then the overflow row');
  const err = await t.throwsAsync(a.lock(same.at(-1)!, Mode.NL), { code: 'ENOSPC' } as never);
  t.regex(err!.message, new RegExp(`rows ${target} and ${target + 1}`));
  // Another node's cells of the same rows are its own: it is not affected.
  const b = await open(1);
  (await b.lock(same.at(-1)!, Mode.NL)).unlock();
  for (const l of held) await l.unlock();
  t.true(new FormatError('x') instanceof Error);
});

test('value entries: a PW/EX grant reserves the entry its release writes; with the window full it is refused, not its release', async (t) => {
  const { open } = await setup(t);
  const a = await open(0);
  const header = a.layout.header;
  const target = bucketOf(header, Buffer.from('v0'));
  const same: string[] = [];
  for (let i = 0; same.length < 2 * a.layout.lvbEntriesPerCell + 1; i++) if (bucketOf(header, Buffer.from(`v${i}`)) === target) same.push(`v${i}`);
  // Fill both value cells of the window with values of their own.
  for (const name of same.slice(0, -1)) await (await a.lock(name, Mode.EX)).unlock({ lvb: Buffer.from(name) });
  const last = same.at(-1)!;
  const err = await t.throwsAsync(a.lock(last, Mode.EX, { timeoutMs: 1000 }), { code: 'ENOSPC' } as never);
  t.regex(err!.message, /value cells/);
  const pr = await a.lock(last, Mode.PR); // modes that never write a value need no entry
  await pr.unlock();
  // Another node supersedes one of ours: that entry may then be reused.
  const b = await open(1);
  await (await b.lock(same[0]!, Mode.EX)).unlock({ lvb: Buffer.from('newer') });
  const ex = await a.lock(last, Mode.EX);
  await ex.unlock({ lvb: Buffer.from('fits') });
  t.is((await b.lock(last, Mode.PR)).lvb.subarray(0, 4).toString(), 'fits');
});

test.serial('capacity: one node holds 4096 locks with value blocks; a lock elsewhere still reads only its window', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'big.img');
  const regionBytes = lockspaceRegionBytes(512, NODES, 4096);
  createImage(img, { sizeBytes: regionBytes, sectorSizeBytes: 512 });
  const cluster = new FakeCluster();
  const disks = [FileDisk.open(img, { guard: 'none' }), FileDisk.open(img, { guard: 'none' })];
  const a = await Lockspace.open(viewOf(disks[0]!, 0, regionBytes), { membership: cluster.member(0, 1n) });
  const b = await Lockspace.open(viewOf(disks[1]!, 0, regionBytes), { membership: cluster.member(1, 2n) });
  t.teardown(async () => {
    await a.close();
    await b.close();
    for (const d of disks) d.closeSync();
  });
  t.is(a.layout.header.locksPerNode, 4096);
  const held = [];
  for (let i = 0; i < 4096; i++) {
    const l = await a.lock(`lock-${i}`, Mode.EX);
    await l.convert(Mode.PR, { lvb: Buffer.from(`v${i}`) }); // writes the value block
    held.push(l);
  }
  t.is(held.length, 4096);
  const reads = b.stats.windowReads;
  const other = await b.lock('elsewhere', Mode.EX);
  await other.unlock();
  t.true(b.stats.windowReads - reads <= 3, `a lock on a free resource read ${b.stats.windowReads - reads} windows`);
  const pr = await b.lock('lock-4095', Mode.PR);
  t.is(pr.lvb.subarray(0, 5).toString(), 'v4095', 'value blocks of all 4096 resources are kept');
  await pr.unlock();
  const snap = await readSnapshot(viewOf(disks[1]!, 0, regionBytes));
  t.is(snap.locks.length, 4096);
  t.is(snap.lvbs.length, 4096);
});

test('a fenced node: its writes are refused, waiting requests fail with EFENCED and held locks are marked lost', async (t) => {
  const { open, img } = await setup(t);
  const a = await open(0);
  const held = await a.lock('f1', Mode.EX);
  // node 1's device refuses writes once "fenced", as the fence gate does (DiskError EFENCED).
  const disk = FileDisk.open(img, { guard: 'none' });
  t.teardown(() => disk.closeSync());
  let fenced = false;
  const view = viewOf(disk, REGION_OFFSET, REGION_BYTES);
  const refuse = (off: number) => new DiskError('EFENCED', `${view.name}: write at offset ${off} refused: node 1 was preempted`, { device: view.name, offsetBytes: off });
  // Both forms, as FileDisk's gate does: the lock manager writes through the synchronous form
  // where it is fit (src/dlm/in-call-io.ts).
  const gated = Object.assign(Object.create(view) as typeof view, {
    write: async (buf: Buffer, off: number) => {
      if (fenced) throw refuse(off);
      return view.write(buf, off);
    },
    writeSync: (buf: Buffer, off: number) => {
      if (fenced) throw refuse(off);
      view.writeSync(buf, off);
    },
  });
  const cluster = new FakeCluster();
  const b = await Lockspace.open(gated, { membership: cluster.member(1, 2000n) });
  const mine = await b.lock('f2', Mode.PR);
  const waiting = b.lock('f1', Mode.EX, { timeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 50));
  fenced = true;
  await held.unlock(); // node 1's next step must write, and is refused
  const err = await t.throwsAsync(waiting);
  t.is((err as DlmError).code, 'EFENCED', String(err));
  t.truthy(mine.lost);
  await t.throwsAsync(mine.unlock(), { code: 'EFENCED' } as never);
});

test('a conversion that is compatible on arrival is granted in place, ahead of a queued conversion (DLM without QUECVT)', async (t) => {
  const { open } = await setup(t);
  const [a, b, c] = [await open(0), await open(1), await open(2)];
  const la = await a.lock('inplace', Mode.PR);
  const lb = await b.lock('inplace', Mode.CR);
  const lc = await c.lock('inplace', Mode.NL);
  const pb = lb.convert(Mode.PW, { timeoutMs: 5000 }); // queued: a's PR blocks PW
  await new Promise((r) => setTimeout(r, 50));
  await lc.convert(Mode.CR, { timeoutMs: 1000 }); // CR fits beside PR, CR and the claimed PW
  t.is(lc.mode, Mode.CR);
  t.is(lb.mode, Mode.CR, 'the queued conversion is still waiting');
  await la.unlock();
  await pb;
  t.is(lb.mode, Mode.PW);
  await lb.unlock();
  await lc.unlock();
});

/**
 * A 64-lock lockspace on one image file in a fresh directory; `open(n, hintDir)` opens it as node n
 * (key n+1) through a handle of its own. Everything opened is closed at teardown.
 */
function sharedLockspace(t: ExecutionContext, file: string): { dir: string; open: (nodeId: number, hintDir: string | undefined) => Promise<Lockspace> } {
  const dir = tempDir(t);
  const img = path.join(dir, file);
  const regionBytes = lockspaceRegionBytes(512, NODES, 64);
  createImage(img, { sizeBytes: regionBytes, sectorSizeBytes: 512 });
  const cluster = new FakeCluster();
  const disks: FileDisk[] = [];
  const opened: Lockspace[] = [];
  t.teardown(async () => {
    for (const ls of opened) await ls.close();
    for (const d of disks) d.closeSync();
  });
  const open = async (nodeId: number, hintDir: string | undefined): Promise<Lockspace> => {
    const d = FileDisk.open(img, { guard: 'none' });
    disks.push(d);
    const ls = await Lockspace.open(viewOf(d, 0, regionBytes), { membership: cluster.member(nodeId, BigInt(nodeId + 1)), hintDir });
    opened.push(ls);
    return ls;
  };
  return { dir, open };
}

test('wake-ups along a queue: a grant wakes only the next request, which claims while the lock is held; the rest of the queue sleeps', async (t) => {
  const { dir, open } = sharedLockspace(t, 'q.img');
  const hints = path.join(dir, 'hints');
  const ls: Lockspace[] = [];
  for (let n = 0; n < 4; n++) ls.push(await open(n, hints));
  const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const claimOf = async (node: number) => (await ls[0]!.snapshot()).locks.find((l) => l.nodeId === node && l.resource.toString() === 'q')?.claim;
  const h0 = await ls[0]!.lock('q', Mode.EX);
  // Queue 1, 2, 3 in that order (each past its doorway before the next arrives).
  const p1 = ls[1]!.lock('q', Mode.EX, { timeoutMs: 5000 });
  await settle(100);
  const p2 = ls[2]!.lock('q', Mode.EX, { timeoutMs: 5000 });
  await settle(100);
  const p3 = ls[3]!.lock('q', Mode.EX, { timeoutMs: 5000 });
  await settle(300);
  t.false(await claimOf(2), 'the second request waits without a claim while the first is queued');
  // Node 0 read nothing of the queue since its grant: its release wakes the row (all three).
  await h0.unlock();
  const h1 = await p1;
  await settle(200);
  const w3 = ls[3]!.wakeups;
  const sent1 = ls[1]!.hintsSent;
  t.true(sent1 >= 1, 'the grant of node 1 sent a hint');
  t.true(await claimOf(2), 'woken by node 1\'s grant, node 2 claimed while node 1 holds');
  // Node 1's release: its deciding read saw the queue (2 then 3), so it wakes node 2 only.
  await h1.unlock();
  const h2 = await p2;
  await settle(200);
  t.is(ls[3]!.wakeups, w3 + 1, 'node 3 was woken once, by node 2\'s grant, not by node 1\'s grant or release');
  t.true(await claimOf(3), 'and claimed while node 2 holds');
  await h2.unlock();
  await (await p3).unlock();
});

test('wake-ups: a release hints only the waiters of its resource; with every hint lost a waiter still gets the lock within the poll bound', async (t) => {
  const { dir, open } = sharedLockspace(t, 'h.img');
  const hints = path.join(dir, 'hints');
  // Hints on: the waiter on 'a' is woken by the holder's release; a waiter on 'b' is not touched.
  const a0 = await open(0, hints);
  const a1 = await open(1, hints);
  const a2 = await open(2, hints);
  const held = await a0.lock('a', Mode.EX);
  const heldB = await a0.lock('b', Mode.EX);
  const waiting = a1.lock('a', Mode.EX, { timeoutMs: 5000 });
  const other = a2.lock('b', Mode.EX, { timeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 300)); // both waiters past their doorway, watching
  const wakeupsOther = a2.wakeups;
  await held.unlock();
  await (await waiting).unlock();
  t.true(a0.hintsSent >= 1, 'the release touched the hint of its row');
  const rowsA = [bucketOf(a0.layout.header, Buffer.from('a')), bucketOf(a0.layout.header, Buffer.from('a')) + 1];
  const rowsB = [bucketOf(a0.layout.header, Buffer.from('b')), bucketOf(a0.layout.header, Buffer.from('b')) + 1];
  if (!rowsA.some((r) => rowsB.includes(r))) t.is(a2.wakeups, wakeupsOther, 'the waiter of another resource was not woken');
  await heldB.unlock();
  await (await other).unlock();

  // Every hint lost (no hint directory, no watch): the waiter polls, at least every pollMaxMs.
  const POLL_MAX_MS = 50;
  const p3 = await open(3, undefined);
  const h = await a0.lock('lost', Mode.EX); // the holder's hint goes nowhere: p3 watches nothing
  const w = p3.lock('lost', Mode.EX, { timeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 400)); // the waiter's backoff has reached its bound
  const releasedAt = performance.now();
  await h.unlock();
  await (await w).unlock();
  const waitedMs = performance.now() - releasedAt;
  t.log(`granted ${waitedMs.toFixed(1)} ms after the release with no hint (bound ${POLL_MAX_MS} ms + one read)`);
  // The bound plus slack for a loaded machine's timer lag; an unbounded wait would run to 5 s.
  t.true(waitedMs < POLL_MAX_MS + 250, `${waitedMs} ms`);
});
