// The in-call fast path of a cluster-locked LV and of a node's gated writes (issue 18: the
// cluster-locked LV at ≥ 0.95 of the unlocked one). Each I/O is decided by plain field reads
// (LockedLv.inCall; the heartbeat leases' leaseValidUntilNs), so each condition those reads stand
// for is checked here to turn an I/O away from the PV: no quorum, a lock-out in progress, a lost
// LV lock, a request past the end, a closed device, a heartbeat lease past its time. In-process,
// over a real PV image (an LV mapped by sanbox's own LVM code), reading the PV file directly to see
// what landed.

import test, { type ExecutionContext } from 'ava';
import path from 'node:path';
import { createImage } from '../src/disk/index.js';
import type { QuorumHold } from '../src/disk/quorum-hold.js';
import { Mode } from '../src/dlm/compat-matrix.js';
import type { Lockspace } from '../src/dlm/lock-manager.js';
import { DeviceProvider } from '../src/node/provider.js';
import { monoNowNs, MONO_NS_NEVER, type WriteLease } from '../src/disk/write-lease.js';
import { presetTiming } from '../src/timing.js';
import { LockedLv, LvRangeError } from '../src/volume/locked-lv.js';
import { commitContext, lvCreate, openLv, pvCreate, vgCreate, withSession } from '../src/volume/manager.js';
import { readFileAt, tempDir } from './helpers/tmp.js';
import { deferred, ticks } from './helpers/deferred.js';

const MiB = 1024 * 1024;
const BLOCK = 4096;

/** A VG on one PV image with a 1-extent LV over plain FileDisks (synchronous: the in-call path). */
async function pvWithLv(t: ExecutionContext): Promise<{ pv: string; peStartBytes: number }> {
  const pv = path.join(tempDir(t), 'pv.img');
  createImage(pv, { sizeBytes: 64 * MiB });
  await pvCreate([pv], {});
  await vgCreate([pv], [pv], 'vgq', 8192, commitContext('test'));
  await lvCreate([pv], 'vgq', 'lv', { size: { kind: 'extents', sign: '', extents: 1 } }, commitContext('test'));
  // The LV is the VG's first: its one linear segment starts at pe_start.
  const peStartBytes = await withSession([pv], { readOnly: true, guard: 'none' }, async (s) => s.vg('vgq').vg.pvs[0]!.peStartSectors * 512);
  return { pv, peStartBytes };
}

/**
 * A lock service that grants the LV lock at once and keeps it (`lvLock`: the test sets `lost`),
 * and grants a VG lock asked after the first when `vgGate` lets it (a lock-out's re-take waits there).
 */
function lockService(vgGate: Promise<void>): { ls: Lockspace; bast: () => void; lvLock: () => { lost: string | undefined } } {
  let lvBast: (() => void) | undefined;
  let lv: { lost: string | undefined; released: boolean; unlock: () => Promise<void> } | undefined;
  let vgLocks = 0;
  const ls = {
    lock: async (resource: string, _mode: Mode, o: { bast?: () => void }) => {
      if (resource.endsWith('VGLK')) {
        if (vgLocks++ > 0) await vgGate;
        return { lost: undefined, released: false, unlock: async () => undefined };
      }
      lvBast = o.bast;
      lv = { lost: undefined, released: false, unlock: async () => undefined };
      return lv;
    },
  };
  return { ls: ls as unknown as Lockspace, bast: () => lvBast!(), lvLock: () => lv! };
}

async function lockedOver(t: ExecutionContext, o: { hold?: QuorumHold; vgGate?: Promise<void> } = {}) {
  const { pv, peStartBytes } = await pvWithLv(t);
  const svc = lockService(o.vgGate ?? Promise.resolve());
  const dev = await LockedLv.open(svc.ls, 'vgq', () => openLv([pv], 'vgq', 'lv', { guard: 'none' }), {
    mode: Mode.EX,
    lockTimeoutMs: 1000,
    ...(o.hold !== undefined ? { hold: o.hold } : {}),
  });
  t.teardown(() => dev.close());
  const onPv = (offsetBytes: number): number => readFileAt(pv, peStartBytes + offsetBytes, 1)[0]!;
  return { dev, svc, pv, onPv };
}

test('without quorum a read and a write reach nothing until the hold admits them; a refusal of the hold fails them', async (t) => {
  const admitted = deferred();
  const refusal = new Error('no quorum for too long');
  let refuse = false;
  const hold = {
    passing: false,
    admit: () => {
      if (refuse) throw refusal;
      return admitted.promise;
    },
  };
  const { dev, onPv } = await lockedOver(t, { hold: hold as unknown as QuorumHold });
  let wrote = false;
  const w = dev.write(Buffer.alloc(BLOCK, 0xa5), 0).then(() => (wrote = true));
  const back = Buffer.alloc(BLOCK);
  const r = dev.read(back, BLOCK);
  await ticks();
  t.is(onPv(0), 0, 'the write reached the PV without quorum');
  t.false(wrote);
  hold.passing = true;
  admitted.resolve();
  await Promise.all([w, r]);
  t.is(onPv(0), 0xa5, 'admitted: the write landed');
  hold.passing = false;
  refuse = true;
  await t.throwsAsync(dev.write(Buffer.alloc(BLOCK, 0x5a), 2 * BLOCK), { is: refusal });
  t.is(onPv(2 * BLOCK), 0, 'a refused write reached the PV');
});

test('a write issued during a lock-out waits for the layout to be re-read and the lock re-taken, then lands', async (t) => {
  const vgGate = deferred();
  const { dev, svc, onPv } = await lockedOver(t, { vgGate: vgGate.promise });
  // Teardowns run last-registered first: a failed assertion below must not leave close() waiting on the lock-out.
  t.teardown(() => vgGate.resolve());
  await dev.write(Buffer.alloc(BLOCK, 1), 0);
  svc.bast();
  // From the bast on, the device is paused (synchronously): no I/O goes through the old layout.
  let wrote = false;
  const w = dev.write(Buffer.alloc(BLOCK, 0xa5), BLOCK).then(() => (wrote = true));
  await ticks();
  t.is(onPv(BLOCK), 0, 'a write went through while the LV was let go');
  t.false(wrote);
  vgGate.resolve();
  await w;
  t.is(onPv(BLOCK), 0xa5, 'resumed: the write landed');
  t.is(dev.pauses.length, 1);
});

test('a lost LV lock, a request past the end and a closed device: each fails and nothing reaches the PV', async (t) => {
  const { dev, svc, onPv } = await lockedOver(t);
  const size = dev.sizeBytes;
  // The LockedLv's own refusal (naming the layout's generation), not only the LV's range check below it.
  await t.throwsAsync(dev.write(Buffer.alloc(BLOCK, 0xa5), size), { instanceOf: LvRangeError });
  await t.throwsAsync(dev.write(Buffer.alloc(2 * BLOCK, 0xa5), size - BLOCK), { instanceOf: LvRangeError });
  t.is(onPv(size - BLOCK), 0, 'the part inside the LV of a write past its end landed');
  await t.throwsAsync(dev.read(Buffer.alloc(BLOCK), -BLOCK), { instanceOf: LvRangeError });
  svc.lvLock().lost = 'node fenced';
  await t.throwsAsync(dev.write(Buffer.alloc(BLOCK, 0xa5), 0), { code: 'EFENCED' });
  await t.throwsAsync(dev.read(Buffer.alloc(BLOCK), 0), { code: 'EFENCED' });
  t.is(onPv(0), 0, 'a write under a lost lock landed');
  svc.lvLock().lost = undefined;
  await dev.close();
  await t.throwsAsync(dev.write(Buffer.alloc(BLOCK, 0xa5), 0), { code: 'ECLOSED' });
  t.is(onPv(0), 0, 'a write through a closed device landed');
});

test("a node's write is refused once a heartbeat lease is past its time, and a lease is asked only then", async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'disk.img');
  createImage(img, { sizeBytes: 4 * MiB });
  const provider = new DeviceProvider({ nodeId: 1, key: 0x1234n, timing: presetTiming('local') });
  t.teardown(() => provider.close());
  const dev = await provider.open(img);
  let asked = 0;
  let expired = false;
  const lease: WriteLease & { leaseValidUntilNs: bigint } = {
    leaseValidUntilNs: MONO_NS_NEVER,
    leaseExpired: () => {
      asked++;
      if (expired) provider.selfFence('heartbeat lease past its time');
      return expired;
    },
  };
  const remove = provider.addLease(lease);
  await dev.write(Buffer.alloc(BLOCK, 1), 0);
  t.is(asked, 0, 'a lease inside its time is not asked');
  // Past its time but the deadline not passed (a heartbeat that is merely late): asked, the write lands.
  lease.leaseValidUntilNs = monoNowNs() - 1n;
  await dev.write(Buffer.alloc(BLOCK, 2), 0);
  t.is(asked, 1);
  t.is(readFileAt(img, 0, 1)[0], 2);
  expired = true;
  await t.throwsAsync(dev.write(Buffer.alloc(BLOCK, 3), 0), { code: 'EFENCED' });
  t.is(readFileAt(img, 0, 1)[0], 2, 'the write past the lease landed');
  remove();
  await dev.close();
});
