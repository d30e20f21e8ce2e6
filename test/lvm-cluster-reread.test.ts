// The VG seqno in the VG lock's value block, deterministically (lvm2.md §7.6): a report that
// scanned before its VG lock and finds a newer seqno in the value block reads the VG again (and so
// sees the change another node committed in between); a change whose devices show an older seqno
// than the value block says stops, nothing written. Real Lockspace instances (one per simulated
// node) on one image, a real cluster image for the device list, real PV images; the multi-process
// proof is test/lvm-cluster.test.ts.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { createImage } from '../src/disk/index.js';
import type { Mode } from '../src/dlm/compat-matrix.js';
import type { LockOptions } from '../src/dlm/lock-manager.js';
import { initClusterImage } from '../src/heartbeat/cluster-image.js';
import { LOCAL_TIMING } from '../src/timing.js';
import type { LvmCluster } from '../src/volume/lvm-cluster.js';
import { vgLockResource, withVgLock, type HeldLock, type LockService } from '../src/volume/lvm-locks.js';
import { commitContext, lvCreate, pvCreate, vgCreate, vgModify, withReportSession } from '../src/volume/manager.js';
import { setupLockspaces } from './helpers/fake-lockspaces.js';
import { ownLockDir, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 1024 * 1024;

async function twoNodes(t: import('ava').ExecutionContext): Promise<{ dir: string; pvs: string[]; a: LvmCluster; b: LvmCluster; lsB: LockService }> {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await initClusterImage(img, { nodeCount: 4, clusterName: 'rr', timing: LOCAL_TIMING });
  const pvs = ['a.img', 'b.img'].map((n) => path.join(dir, n));
  for (const p of pvs) createImage(p, { sizeBytes: 32 * MiB, sectorSizeBytes: 512 });
  const { open } = await setupLockspaces(t);
  const [lsA, lsB] = [await open(0), await open(1)];
  const base = { clusterName: 'rr', image: img, lockTimeoutMs: 5000, timing: LOCAL_TIMING };
  return { dir, pvs, a: { ...base, locks: lsA, nodeId: 0 }, b: { ...base, locks: lsB, nodeId: 1 }, lsB };
}

/** B's lock service, which runs `before` once just before B's first request for `resource`. */
function interposed(ls: LockService, resource: string, before: () => Promise<void>): LockService {
  let done = false;
  return {
    nodeId: ls.nodeId,
    snapshot: ls.snapshot?.bind(ls),
    async lock(r: string, mode: Mode, opts?: LockOptions): Promise<HeldLock> {
      if (r === resource && !done) {
        done = true;
        await before();
      }
      return ls.lock(r, mode, opts);
    },
  };
}

test('a report that scanned before another node committed sees the newer seqno in the VG lock and reads the VG again', async (t) => {
  const { pvs, a, b, lsB } = await twoNodes(t);
  const ctx = commitContext('test');
  await pvCreate(pvs, {}, a);
  await vgCreate(pvs, pvs, 'vgr', 8192, { ...ctx, cluster: a });
  // Shared by its metadata, so the report takes its VG lock: lock_type dlm, as a shared container.
  await lvCreate(pvs, 'vgr', 'first', { size: { kind: 'extents', sign: '', extents: 1 } }, { ...ctx, cluster: a });
  // Node A commits lv "second" after B's scan and before B's VG lock is granted.
  const bSees = interposed(lsB, vgLockResource('vgr'), () => lvCreate(pvs, 'vgr', 'second', { size: { kind: 'extents', sign: '', extents: 1 } }, { ...ctx, cluster: a }).then(() => undefined));
  // The report's VG lock is taken only for shared or private VGs: make it one (as vgchange --container shared writes it).
  await vgModify(pvs, 'vgr', { ...ctx, cluster: a }, (vg) => {
    vg.lockType = 'dlm';
    vg.lockArgs = '1.0.0:rr';
  });
  const names = await withReportSession([], { ...b, locks: bSees }, async (s) => s.vg('vgr').vg.lvs.map((l) => l.name));
  t.deepEqual(names, ['first', 'second'], 'the report read the VG again under its lock');
});

test('a change whose devices show an older seqno than the VG lock\'s value stops in one line, nothing written', async (t) => {
  const { pvs, a, b } = await twoNodes(t);
  const ctx = commitContext('test');
  await pvCreate(pvs, {}, a);
  await vgCreate(pvs, pvs, 'vgs', 8192, { ...ctx, cluster: a });
  // A value block ahead of every metadata area (as if a PV holding the newest metadata were out of reach).
  await withVgLock(a.locks, 'vgs', 'ex', async (h) => h.committed(99));
  const before = pvs.map((p) => fs.readFileSync(p));
  const err = await t.throwsAsync(lvCreate(pvs, 'vgs', 'x', { size: { kind: 'extents', sign: '', extents: 1 } }, { ...ctx, cluster: b }));
  t.regex(err!.message, /^volume group vgs: its VG lock says seqno 99 was committed, but the devices node 1 can reach show seqno 1: a PV of it is missing from the cluster's device list and from --devices; nothing was changed$/);
  t.true(pvs.every((p, i) => fs.readFileSync(p).equals(before[i]!)), 'nothing written');
});
