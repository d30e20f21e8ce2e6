// The fence gate and the SCSI-3 PR emulation: PR semantics in-process, and the atomicity of a
// preempt against a separate writer process stopped (SIGSTOP) between its check and its pwrite.

import test from 'ava';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { FenceGate, GATE_LEASE_MS_MAX } from '../src/disk/fence-gate.js';
import { FileDisk } from '../src/disk/file-disk.js';
import { isRunning, powerFence, readProcStat, selfIdentity } from '../src/disk/power-fence.js';
import { gateIntentPath, gateLockPath, LockFile, nodeKey, PersistentReservations, PR_TYPES, sidecarStoreSpec } from '../src/disk/reservations.js';
import { sleepSyncMs } from '../src/disk/sleep.js';
import { DiskError } from '../src/errors.js';
import { clusterTag, initClusterImage, readClusterImage, reservationSpec } from '../src/heartbeat/cluster-image.js';
import { presetTiming } from '../src/timing.js';
import { Fencer } from '../src/heartbeat/fencer.js';
import { REPO_ROOT, spawnChild, tempDir, waitFor, collect, exited } from './helpers/tmp.js';

const GATE_WRITER = path.join(REPO_ROOT, 'dist/test/helpers/gate-writer.js');

async function cluster(t: import('ava').ExecutionContext, nodes = 3): Promise<string> {
  const img = path.join(tempDir(t), 'c.img');
  await initClusterImage(img, { clusterName: 'gate', nodeCount: nodes, timing: presetTiming('local') });
  return img;
}

/** A cluster image (as `cluster`), its header, and its reservation state opened (closed at teardown). */
async function clusterWithReservations(t: import('ava').ExecutionContext): Promise<{ img: string; info: Awaited<ReturnType<typeof readClusterImage>>; pr: PersistentReservations }> {
  const img = await cluster(t);
  const info = await readClusterImage(img);
  const pr = new PersistentReservations(reservationSpec(info));
  t.teardown(() => pr.close());
  return { img, info, pr };
}

/** Stop-and-probe rounds before giving up on catching the writer inside its gate. */
const STOP_TRIES_MAX = 50;

/**
 * Stops the writer (SIGSTOP) until it is caught holding its gate (between check and pwrite): probes
 * the gate lock with a non-blocking exclusive attempt and, when the writer is outside, resumes it
 * briefly and tries again. True once caught inside (the writer is left stopped).
 */
async function stopInsideGate(child: ChildProcess, probe: LockFile): Promise<boolean> {
  for (let i = 0; i < STOP_TRIES_MAX; i++) {
    child.kill('SIGSTOP');
    await waitFor(() => readProcStat(child.pid!)?.state === 'T', 2000, 'writer stopped');
    if (!probe.tryLock('ex')) return true;
    probe.unlock();
    child.kill('SIGCONT');
    await new Promise((r) => setTimeout(r, 7));
  }
  return false;
}

test('PR emulation: register, reserve (WERO), preempt-and-abort, keys and PRgeneration', async (t) => {
  const { img, info, pr } = await clusterWithReservations(t);
  const k0 = nodeKey(0xabcd, 0, 0x11n);
  const k1 = nodeKey(0xabcd, 1, 0x22n);
  t.is(pr.readState().prGeneration, 0);
  t.true(await pr.register(0, k0, 100));
  t.true(await pr.register(1, k1, 100));
  t.is(pr.readState().prGeneration, 2);
  await pr.reserve(0, k0, PR_TYPES.writeExclusiveRegistrantsOnly);
  let s = pr.readState();
  t.is(s.prGeneration, 2, 'reserve does not bump PRgeneration');
  t.is(s.reservationKey, k0);
  t.is(s.reservationType, 5);
  await t.throwsAsync(pr.reserve(2, nodeKey(0xabcd, 2, 1n)), { message: /not registered \(reservation conflict\)/ });
  await t.throwsAsync(pr.preemptAndAbort(0, k0, 0, k0, 100), { message: /cannot preempt its own key/ });
  // Node 1 fences node 0, the reservation holder: the reservation passes to node 1.
  const r = await pr.preemptAndAbort(1, k1, 0, k0, 100);
  t.deepEqual(r, { outcome: 'preempted', prGeneration: 3 });
  s = pr.readState();
  t.is(s.registered[0], 0n);
  t.is(s.preempted[0], k0);
  t.is(s.reservationKey, k1);
  // A preempted node cannot fence anyone.
  await t.throwsAsync(pr.preemptAndAbort(0, k0, 1, k1, 100), { message: /fencer node 0 .* is not registered/ });
  // Absent key: recorded, PRgeneration unchanged.
  const r2 = await pr.preemptAndAbort(1, k1, 2, nodeKey(0xabcd, 2, 5n), 100);
  t.deepEqual(r2, { outcome: 'absent', prGeneration: 3 });
  // The state survives a torn copy: corrupt the newest copy, the older one is still read.
  const before = pr.readState();
  const off = reservationSpec(info).stateOffsetBytes + Number(before.updateSeq % 2n) * 8192;
  const fd = fs.openSync(img, 'r+');
  fs.writeSync(fd, Buffer.alloc(100, 0xff), 0, 100, off + 200);
  fs.closeSync(fd);
  const after = pr.readState();
  t.is(after.updateSeq, before.updateSeq - 1n);
});

/** A plain 1 MiB disk with its reservations in a sidecar, nobody registered. */
function plainDisk(t: import('ava').ExecutionContext): { img: string; pr: PersistentReservations } {
  const img = path.join(tempDir(t), 'plain.img');
  fs.writeFileSync(img, Buffer.alloc(1 << 20));
  const pr = new PersistentReservations(sidecarStoreSpec(img));
  t.teardown(() => pr.close());
  return { img, pr };
}

test('the gate refuses writes of a preempted key and of an unregistered writer under WERO; a sidecar serves a plain disk', async (t) => {
  const { img, pr } = plainDisk(t);
  const k0 = nodeKey(1, 0, 1n);
  const k1 = nodeKey(1, 1, 2n);
  const g0 = new FenceGate(pr.store, 0, k0, 200);
  const g1 = new FenceGate(pr.store, 1, k1, 200);
  const d0 = FileDisk.open(img, { gate: g0 });
  const d1 = FileDisk.open(img, { gate: g1 });
  t.teardown(() => {
    d0.closeSync();
    d1.closeSync();
    g0.close();
    g1.close();
  });
  const sec = Buffer.alloc(512, 1);
  d1.writeSync(sec, 0); // no reservation yet: anyone may write
  await pr.register(0, k0, 100);
  await pr.reserve(0, k0);
  const e = t.throws(() => d1.writeSync(sec, 512), { instanceOf: DiskError });
  t.is(e?.code, 'EFENCED');
  t.regex(e?.message ?? '', /write at offset 512 refused: node 1 .* not registered/);
  d0.writeSync(sec, 1024);
  await pr.register(1, k1, 100);
  // g1 fenced itself at the refusal: a refusal is permanent for that incarnation.
  t.throws(() => d1.writeSync(sec, 512), { message: /fenced itself/ });
  await pr.preemptAndAbort(1, k1, 0, k0, 100);
  t.throws(() => d0.writeSync(sec, 1024), { message: /key 0x[0-9a-f]+ was preempted/ });
  t.true(g0.refusedWrites >= 1);
});

/** Nodes 0 and 1 registered, `reserver` holding the WERO reservation, and node 0's gate. */
async function twoRegistered(t: import('ava').ExecutionContext, reserver: 0 | 1) {
  const { img, info, pr } = await clusterWithReservations(t);
  const k0 = nodeKey(7, 0, 1n);
  const k1 = nodeKey(7, 1, 1n);
  await pr.register(0, k0, 100);
  await pr.register(1, k1, 100);
  await pr.reserve(reserver, reserver === 0 ? k0 : k1);
  const g0 = new FenceGate(pr.store, 0, k0, 200);
  t.teardown(() => g0.close());
  return { img, info, pr, k0, k1, g0 };
}

test('a preempt for the cluster (a takeover: no key of its own on the device) refuses the victim\'s next write, releases its reservation, and is idempotent', async (t) => {
  const { img, pr, k0, g0 } = await twoRegistered(t, 0);
  const d0 = FileDisk.open(img, { gate: g0 });
  t.teardown(() => d0.close());
  const sec = Buffer.alloc(512);
  d0.writeSync(sec, 512);
  const r = await pr.preemptForCluster(0, k0, 200);
  t.is(r?.outcome, 'preempted');
  const s = pr.readState();
  t.is(s.preempted[0], k0);
  t.is(s.registered[0], 0n);
  t.is(s.reservationKey, 0n, 'the victim held the reservation: released, nobody took it');
  t.is(s.reservationType, PR_TYPES.none);
  const e = t.throws(() => d0.writeSync(sec, 512));
  t.regex(e?.message ?? '', /node 0 key .* was preempted \(fenced\)/);
  const again = await pr.preemptForCluster(0, k0, 200);
  t.is(again?.outcome, 'absent');
  t.is(pr.readState().prGeneration, s.prGeneration, 'a second preempt writes nothing');
});

test('a preempt of an absent key leaves another fenced key in the victim\'s preempted slot (review 5, M2): the fenced incarnation stays refused', async (t) => {
  const { img, pr, k0, k1, g0 } = await twoRegistered(t, 0);
  const d0 = FileDisk.open(img, { gate: g0 });
  t.teardown(() => d0.close());
  const sec = Buffer.alloc(512);
  t.is((await pr.preemptForCluster(0, k0, 200))?.outcome, 'preempted');
  const s = pr.readState();
  t.is(s.reservationType, PR_TYPES.none, 'no reservation left: the slot is all that refuses node 0');
  // An older incarnation of node 0, fenced long ago and registered nowhere now: absent. (Its first
  // write comes after: the gate reads the state then, with no reservation and no registration.)
  const older = nodeKey(7, 0, 0x7n);
  t.is((await pr.preemptForCluster(0, older, 200))?.outcome, 'absent');
  t.is((await pr.preemptAndAbort(1, k1, 0, older, 200))?.outcome, 'absent');
  const after = pr.readState();
  t.is(after.preempted[0], k0, 'the slot still names the incarnation fenced last');
  t.is(after.updateSeq, s.updateSeq, 'nothing written');
  const e = t.throws(() => d0.writeSync(sec, 512));
  t.regex(e?.message ?? '', /node 0 key .* was preempted \(fenced\)/);
  // An empty slot still records an absent key (every reader sees that incarnation fenced).
  t.is((await pr.preemptForCluster(2, nodeKey(7, 2, 0x9n), 200))?.outcome, 'absent');
  t.is(pr.readState().preempted[2], nodeKey(7, 2, 0x9n));
});

test('a preempt waits for a writer holding its gate, and gives up (for the power fence) after the bound', async (t) => {
  const { img, pr, k0, k1, g0 } = await twoRegistered(t, 0);
  g0.enter(img, 0); // node 0 is "inside a write"
  const t0 = performance.now();
  t.is(await pr.preemptAndAbort(1, k1, 0, k0, 150), null);
  t.true(performance.now() - t0 >= 140);
  t.is(pr.readState().registered[0], k0, 'nothing changed while the victim held its gate');
  g0.leave();
  t.is((await pr.preemptAndAbort(1, k1, 0, k0, 150))?.outcome, 'preempted');
});

/**
 * A cluster whose node 0 is a registered fencer holding the WERO reservation, and a gate-writer
 * process (test/helpers/gate-writer.ts) writing as node 2 with the given WINDOW_MS argument.
 */
async function fencerAndWriter(t: import('ava').ExecutionContext, windowArg: string) {
  const { img, info, pr } = await clusterWithReservations(t);
  const fencerKey = nodeKey(clusterTag(info), 0, 99n);
  await pr.register(0, fencerKey, 100);
  await pr.reserve(0, fencerKey);
  const child = spawnChild(t, process.execPath, [GATE_WRITER, img, '2', windowArg]);
  const io = collect(child);
  await waitFor(() => /ready ([0-9a-f]+)/.test(io.out()), 10_000, 'writer ready');
  const victimKey = BigInt('0x' + /ready ([0-9a-f]+)/.exec(io.out())![1]);
  const sector = info.regions.get('lockspace')!.payloadOffsetBytes + 2 * 512;
  const readCounter = (): bigint => {
    const b = Buffer.alloc(8);
    const fd = fs.openSync(img, 'r');
    fs.readSync(fd, b, 0, 8, sector);
    fs.closeSync(fd);
    return b.readBigUInt64LE(0);
  };
  /** After a preempt: the writer exits 3, and no write lands after `atPreempt`, the counter at the preempt. */
  const nothingLandsAfter = async (atPreempt: bigint): Promise<void> => {
    const { code } = await exited(child, 5000);
    t.is(code, 3, io.out() + io.err());
    await new Promise((r) => setTimeout(r, 200));
    t.is(readCounter(), atPreempt, 'no write after the preempt landed');
    t.is(BigInt(/fenced (\d+)/.exec(io.out())![1]!), atPreempt, 'the writer saw exactly the writes that landed');
  };
  return { info, pr, fencerKey, child, victimKey, readCounter, nothingLandsAfter };
}

test('atomic fence: a writer process stopped between its check and its pwrite; no write that starts after the preempt lands', async (t) => {
  // The writer sleeps 40 ms inside the gate on every write: a SIGSTOP lands inside it ~all the time.
  const { info, pr, fencerKey, child, victimKey, readCounter, nothingLandsAfter } = await fencerAndWriter(t, '40');
  await waitFor(() => readCounter() > 3n, 5000, 'writes landing');
  // Stop the writer until it is caught holding its gate (between check and pwrite): probe the
  // gate lock with a non-blocking exclusive attempt; a bounded number of tries.
  const probe = new LockFile(gateLockPath(reservationSpec(info).lockDir, 2));
  t.teardown(() => probe.close());
  t.true(await stopInsideGate(child, probe), 'the writer was stopped inside its gate');
  // The preempt cannot complete while the stopped writer holds its gate...
  let resolved = false;
  const preempt = pr.preemptAndAbort(0, fencerKey, 2, victimKey, 5000).finally(() => (resolved = true));
  await new Promise((r) => setTimeout(r, 300));
  const heldUp = !resolved;
  child.kill('SIGCONT');
  const res = await preempt;
  t.is(res?.outcome, 'preempted');
  // ...the write it had checked may land (it started before the preempt), nothing after it.
  await nothingLandsAfter(readCounter());
  t.true(heldUp, 'the preempt waited for the stopped writer');
});

test('gate lease: writes of one event-loop turn take the gate once, a registered key is checked once per lease, and the gate is free at the next turn', async (t) => {
  const { img, info, pr, k0, g0 } = await twoRegistered(t, 1);
  const d0 = FileDisk.open(img, { gate: g0 });
  t.teardown(() => d0.close());
  const probe = new LockFile(gateLockPath(reservationSpec(info).lockDir, 0));
  t.teardown(() => probe.close());
  const sec = Buffer.alloc(512);
  const WRITES = 50;
  const t0 = performance.now();
  for (let i = 0; i < WRITES; i++) d0.writeSync(sec, 512);
  const burstMs = performance.now() - t0;
  // Unless the machine stalled us past the lease bound, one turn's writes share one lease.
  if (burstMs < GATE_LEASE_MS_MAX) t.is(g0.leases, 1);
  else t.true(g0.leases >= 1 && g0.leases <= WRITES);
  t.is(g0.checks, g0.leases, 'one check per lease: the registered key vouches for the rest of it');
  t.false(probe.tryLock('ex'), 'the lease holds the gate within the turn');
  await new Promise((r) => setImmediate(r));
  t.true(probe.tryLock('ex'), 'the lease ended at the next turn');
  probe.unlock();
  // A change of this key's registration is honoured at once, inside the turn: it is made under
  // the gate, so it ends the lease first (here node 0 unregisters itself under node 1's WERO
  // reservation), and the next write's fresh lease checks again.
  d0.writeSync(sec, 512);
  await pr.unregister(0, k0);
  const e = t.throws(() => d0.writeSync(sec, 512));
  t.regex(e?.message ?? '', /node 0 .* not registered/);
});

test('gate lease: at its time bound a lease is renewed while no changer waits (the gate held throughout, no new check), and ended for a changer on the intent lock, which then gets the gate', async (t) => {
  const { img, info, g0 } = await twoRegistered(t, 1);
  const d0 = FileDisk.open(img, { gate: g0 });
  t.teardown(() => d0.close());
  const lockDir = reservationSpec(info).lockDir;
  const probe = new LockFile(gateLockPath(lockDir, 0));
  const intent = new LockFile(gateIntentPath(lockDir, 0));
  t.teardown(() => {
    probe.close();
    intent.close();
  });
  const sec = Buffer.alloc(512);
  // All in one synchronous run: the lease can end only by its time bound.
  d0.writeSync(sec, 512);
  sleepSyncMs(GATE_LEASE_MS_MAX * 2);
  d0.writeSync(sec, 512);
  t.is(g0.leases, 1, 'past its bound with nobody waiting: the same lease');
  t.is(g0.renewals, 1);
  t.is(g0.checks, 1, 'still vouched for: no new check');
  t.false(probe.tryLock('ex'), 'the renewed lease holds the gate');
  // A changer announces itself as withGate does (the intent lock, exclusively) and then waits for the gate.
  t.true(intent.tryLock('ex'));
  sleepSyncMs(GATE_LEASE_MS_MAX * 2);
  t.throws(() => d0.writeSync(sec, 512), { message: /being fenced/ }, 'the next write waits on the intent lock (bounded: 200 ms here)');
  t.is(g0.renewals, 1, 'not renewed with a changer waiting');
  t.true(probe.tryLock('ex'), 'the lease ended: the changer gets the gate');
  probe.unlock();
  intent.unlock();
  d0.writeSync(sec, 512);
  t.is(g0.leases, 2, 'a fresh lease once the changer is gone');
  t.is(g0.checks, 2);
});

test('gate lease: writes in flight across turns are counted; no lease ends (not by age, not by a second write) while any is in flight', async (t) => {
  const { info, g0 } = await twoRegistered(t, 1);
  const probe = new LockFile(gateLockPath(reservationSpec(info).lockDir, 0));
  t.teardown(() => probe.close());
  const heldAfter = async (what: string): Promise<void> => {
    await new Promise((r) => setTimeout(r, GATE_LEASE_MS_MAX * 5));
    t.false(probe.tryLock('ex'), what);
  };
  // Two writes of a device whose writes span turns: enter, (turns pass), enter, (turns pass), leave, leave.
  g0.enter('dev', 0);
  await heldAfter('a write in flight keeps the lease past its turn');
  // The lease is now older than its bound: the second write's entry must not end it under the first.
  g0.enter('dev', 512);
  t.is(g0.leases, 1, 'the second write joined the lease');
  await heldAfter('two writes in flight');
  g0.leave();
  await heldAfter('one write still in flight');
  g0.leave();
  t.true(probe.tryLock('ex'), 'the last leave ends the lease');
  probe.unlock();
  t.throws(() => g0.leave(), { message: /leave without enter/ });
});

test('a write that entered and waited is asked again (check) without entering again: passed while the node is not fenced, refused once it fenced itself; its one leave ends the lease; a self-fence calls each listener once', async (t) => {
  const { info, g0 } = await twoRegistered(t, 1);
  const probe = new LockFile(gateLockPath(reservationSpec(info).lockDir, 0));
  t.teardown(() => probe.close());
  const heard: string[] = [];
  g0.onSelfFence((reason) => heard.push(`early: ${reason}`));
  g0.enter('dev', 0);
  // The write waits across turns (an NBD request queued for room): its lease is held meanwhile.
  await new Promise((r) => setTimeout(r, GATE_LEASE_MS_MAX * 5));
  t.false(probe.tryLock('ex'), 'held while the write waits');
  t.notThrows(() => g0.check('dev', 0));
  const refusedBefore = g0.refusedWrites;
  g0.selfFence('test');
  g0.selfFence('again');
  t.deepEqual(heard, ['early: test'], 'called once, with the first reason');
  g0.onSelfFence((reason) => heard.push(`late: ${reason}`));
  t.deepEqual(heard, ['early: test', 'late: test'], 'a listener added after the self-fence is called at once');
  t.throws(() => g0.check('dev', 0), { instanceOf: DiskError, code: 'EFENCED', message: /dev: write at offset 0 refused: node 0 has fenced itself \(test\)/ });
  t.is(g0.refusedWrites, refusedBefore + 1);
  g0.leave();
  t.true(probe.tryLock('ex'), 'the one leave ended the lease: check entered nothing');
  probe.unlock();
  t.throws(() => g0.leave(), { message: /leave without enter/ });
});

test('vouched lease: a registered writer\'s later writes in a lease skip the check; a preempt waits for the lease, and the first write after it is refused', async (t) => {
  const { pr, k0, k1, g0 } = await twoRegistered(t, 1);
  // Two writes in flight keep one lease across turns (an async device's writes).
  g0.enter('dev', 0);
  g0.enter('dev', 512);
  t.is(g0.checks, 1, 'the second write of the vouched lease made no check');
  let preempted = false;
  const preempt = pr.preemptAndAbort(1, k1, 0, k0, 5000).then((r) => {
    preempted = true;
    return r;
  });
  await new Promise((r) => setTimeout(r, GATE_LEASE_MS_MAX * 20));
  t.false(preempted, 'the preempt waits for the writes of the lease');
  g0.leave();
  g0.leave();
  t.is((await preempt)?.outcome, 'preempted');
  // The next write takes a new lease; a lease is vouched for only by a check made inside it.
  t.throws(() => g0.enter('dev', 1024), { message: /key 0x[0-9a-f]+ was preempted/ });
  t.is(g0.checks, 2);
});

test('vouched lease: the writer unregistering itself waits for its lease (a change of its registration is made under its gate), and its next write is refused', async (t) => {
  const { pr, k0, g0 } = await twoRegistered(t, 1);
  g0.enter('dev', 0);
  g0.enter('dev', 512);
  let done = false;
  const unregister = pr.unregister(0, k0, 5000).then(() => (done = true));
  await new Promise((r) => setTimeout(r, GATE_LEASE_MS_MAX * 20));
  t.false(done, 'the unregister waits for the writes of the vouched lease');
  g0.leave();
  g0.leave();
  await unregister;
  t.is(pr.readState().registered[0], 0n);
  t.throws(() => g0.enter('dev', 1024), { message: /node 0 .* not registered/ });
});

test('PR CLEAR takes every registered node\'s gate: it waits for a vouched lease, then drops every registration and the reservation', async (t) => {
  const { pr, g0 } = await twoRegistered(t, 1);
  g0.enter('dev', 0);
  let done = false;
  const clear = pr.clear(5000).then(() => (done = true));
  await new Promise((r) => setTimeout(r, GATE_LEASE_MS_MAX * 20));
  t.false(done, 'the clear waits for the write of the vouched lease');
  g0.leave();
  await clear;
  const s = pr.readState();
  t.deepEqual([s.registered[0], s.registered[1], s.reservationKey, s.reservationType], [0n, 0n, 0n, PR_TYPES.none]);
});

test('vouched lease: an unregistered writer is checked on every write, so a reservation made inside its lease refuses its next write', async (t) => {
  const { pr } = plainDisk(t);
  const k0 = nodeKey(3, 0, 1n);
  const k1 = nodeKey(3, 1, 1n);
  const g0 = new FenceGate(pr.store, 0, k0, 200);
  t.teardown(() => g0.close());
  // No reservation: node 0 may write unregistered, but nothing vouches for its lease.
  g0.enter('dev', 0);
  g0.enter('dev', 512);
  t.is(g0.checks, 2, 'each write of an unregistered key is checked');
  // Node 1 registers and reserves (neither takes node 0's gate) while node 0's lease is held.
  await pr.register(1, k1, 100);
  await pr.reserve(1, k1);
  t.throws(() => g0.enter('dev', 1024), { message: /node 0 .* not registered/ });
  t.is(g0.leases, 1, 'the refusal came inside the same lease');
  g0.leave();
  g0.leave();
});

test('gate lease: a PR command of the same process on its own gate ends that process\'s lease first instead of waiting for it', async (t) => {
  const { img, pr, k0, g0 } = await twoRegistered(t, 1);
  const d0 = FileDisk.open(img, { gate: g0 });
  t.teardown(() => d0.close());
  const sec = Buffer.alloc(512);
  d0.writeSync(sec, 512); // a lease on gate-0 in this process
  // Node 0 registers again (as the provider does for every device it opens) while it holds the
  // lease, with no time to wait at all: only a lease ended at once lets the command in. (Waiting a
  // turn instead would hold the intent lock meanwhile, and this process's next write would wait
  // for that intent lock synchronously.)
  t.true(await pr.register(0, k0, 0), 'the register got gate-0 at its first attempt');
  d0.writeSync(sec, 512);
  t.is(g0.leases, 2, 'the write after the command took the gate afresh');
});

test('gate lease: a writer writing back to back without ever yielding still lets a preempt in, and nothing it starts afterwards lands', async (t) => {
  const { pr, fencerKey, victimKey, readCounter, nothingLandsAfter } = await fencerAndWriter(t, 'burst');
  await waitFor(() => readCounter() > 1000n, 5000, 'writes landing');
  // The writer never yields, so only the lease's time bound lets go of the gate. The wait here
  // (a loaded machine may deschedule the writer inside a lease) is far above that bound; a gate
  // held for the whole burst would make this null.
  const res = await pr.preemptAndAbort(0, fencerKey, 2, victimKey, 5000);
  t.is(res?.outcome, 'preempted');
  await nothingLandsAfter(readCounter());
});

test('power fence: kills by pid + start time, refuses a stale start time, waits until gone', async (t) => {
  const me = selfIdentity();
  t.true(isRunning(me));
  const child = spawnChild(t, process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
  await waitFor(() => readProcStat(child.pid!) !== null, 5000, 'child started');
  const st = readProcStat(child.pid!)!;
  // A recorded start time that differs means the pid now belongs to someone else: not killed.
  const stranger = { pid: child.pid!, startTicks: st.startTicks + 1n, bootId: me.bootId };
  t.deepEqual((await powerFence(stranger, 1000)).outcome, 'gone');
  t.is(child.exitCode, null);
  t.is(child.signalCode, null);
  const victim = { pid: child.pid!, startTicks: st.startTicks, bootId: me.bootId };
  child.kill('SIGSTOP');
  const r = await powerFence(victim, 2000);
  t.is(r.outcome, 'killed');
  t.false(isRunning(victim));
  t.is((await exited(child, 2000)).signal, 'SIGKILL');
  await t.throwsAsync(powerFence({ ...victim, bootId: Buffer.alloc(16, 1) }, 100), { message: /another machine/ });
});

for (const selfFencedMidway of [false, true]) {
  test(selfFencedMidway
    ? 'a fencer that fences itself while it waits on a victim stopped inside its gate neither kills nor preempts it'
    : 'disk fence of a victim stopped inside its gate escalates to the power fence after the bounded wait, then preempts', async (t) => {
    const { img, info, pr } = await clusterWithReservations(t);
    const tag = clusterTag(info);
    const fencerKey = nodeKey(tag, 0, 1n);
    await pr.register(0, fencerKey, 100);
    const child = spawnChild(t, process.execPath, [GATE_WRITER, img, '2', '40']);
    const io = collect(child);
    await waitFor(() => /ready/.test(io.out()), 10_000, 'writer ready');
    const probe = new LockFile(gateLockPath(reservationSpec(info).lockDir, 2));
    t.teardown(() => probe.close());
    t.true(await stopInsideGate(child, probe), 'the writer was stopped inside its gate');
    const st = readProcStat(child.pid!)!;
    const logs: string[] = [];
    const timing = { ...presetTiming('local'), fenceGateWaitMs: 200 };
    // The fencer itself resumes from a stop past its self-fence deadline while it waits on the gate.
    let selfFenced: string | undefined;
    const fencer = new Fencer({
      selfNodeId: 0,
      selfKey: fencerKey,
      clusterTag: tag,
      reservations: [pr],
      // The writer's key generation is its pid (gate-writer.ts); its identity is read from /proc.
      readNodeRecord: async () => ({ nodeId: 2, generation: BigInt(child.pid!), pid: child.pid!, pidStartTicks: st.startTicks, bootId: selfIdentity().bootId, joinedAtMs: 0, prKey: 0n, name: '', hostname: '' }),
      timing,
      policy: 'disk',
      log: (m) => {
        logs.push(m);
        if (selfFencedMidway && /escalating/.test(m)) selfFenced = 'no heartbeat write has succeeded for 4000 ms';
      },
      selfFencedReason: () => selfFenced,
    });
    if (selfFencedMidway) {
      await t.throwsAsync(fencer.fence(2, BigInt(child.pid!)), { message: /not fencing node 2: this node fenced itself/ });
      t.is(child.signalCode, null, 'the victim was not killed');
      t.not(readProcStat(child.pid!), null, 'the victim is still there');
      t.not(pr.readState().registered[2], 0n, 'the victim was not preempted');
      return;
    }
    const out = await fencer.fence(2, BigInt(child.pid!));
    t.log(out.steps.join(', '));
    t.regex(logs.join('\n'), /stalled inside a write for 200 ms; escalating to the power fence/);
    t.deepEqual(out.steps.map((s) => s.split('(')[0]), ['power:killed', 'preempt:preempted']);
    t.is((await exited(child, 2000)).signal, 'SIGKILL');
    t.is(pr.readState().registered[2], 0n);
  });
}

test('a fencer past its self-fence deadline whose flag is not set yet (resumed before its watchdog ran) asks the clock first: it neither kills nor preempts', async (t) => {
  const { img, info, pr } = await clusterWithReservations(t);
  const tag = clusterTag(info);
  const fencerKey = nodeKey(tag, 0, 1n);
  const victimKey = nodeKey(tag, 2, 7n);
  await pr.register(0, fencerKey, 100);
  await pr.register(2, victimKey, 100);
  const timing = presetTiming('local');
  // The last heartbeat write that succeeded was longer ago than selfFenceMs: the process was stopped.
  const lastOkWriteMs = performance.now() - 2 * timing.selfFenceMs;
  let selfFenced: string | undefined;
  let clockChecks = 0;
  const fencer = new Fencer({
    selfNodeId: 0,
    selfKey: fencerKey,
    clusterTag: tag,
    reservations: [pr],
    readNodeRecord: async () => null,
    timing,
    policy: 'disk',
    log: () => undefined,
    // As the node's heartbeat lease does it: the check of the clock is what sets the flag.
    leaseExpired: () => {
      clockChecks++;
      const late = performance.now() - lastOkWriteMs > timing.selfFenceMs;
      if (late) selfFenced ??= `no heartbeat write has succeeded for ${Math.round(performance.now() - lastOkWriteMs)} ms`;
      return late;
    },
    selfFencedReason: () => selfFenced,
  });
  await t.throwsAsync(fencer.fence(2, 7n), { message: /not fencing node 2: this node fenced itself \(no heartbeat write has succeeded/ });
  t.true(clockChecks > 0, 'the clock was asked');
  t.is(pr.readState().registered[2], victimKey, 'the victim was not preempted');
});
