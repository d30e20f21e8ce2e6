// Review finding: a fence preempted the victim's key only on the devices the FENCER had open, so on
// a PV only the victim had open (its private container's) the one guard was the victim's heartbeat
// lease, which bounds when a write starts, not when it lands. Now the fencer also preempts on every
// device of the cluster's device list it does not have open (src/heartbeat/fencer.ts preemptListed).
//
// Separate OS processes on the same images: nodes 0 and 2 run with the disk fence only; node 1 is
// a command joined as node 1 (`lvcreate … --cluster C --node 1`) on its private VG, whose PV no
// survivor opens. The command stops itself inside its first write to the PV, after its gate's
// check and its lease check, keeping its gate (SANBOX_PAUSE_AT=lease-checked: a pwrite blocked in
// the kernel). Nodes 0 and 2 declare it dead and fence it. Checked: the fence waited for that
// write's gate on the PV and, the write never finishing, escalated to the power fence (the command
// is SIGKILLed, the fence log names the preempt on the PV); after SIGCONT the PV's bytes are
// exactly what they were before the command ran. Without preemptListed the fence completes on the
// cluster image alone, the command resumes and its metadata write lands on the PV (checked once by
// reverting the fix: the bytes differ).

import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { clusterInit, isEvent, spawnNode, type NodeProc } from './helpers/heartbeat-nodes.js';
import { pausedCommand } from './helpers/paused-command.js';
import { sanboxCli } from './helpers/lvm-real.js';
import { exited, ownLockDir, tempDir } from './helpers/tmp.js';
import { PAUSE_AT_DEVICE_ENV } from '../src/disk/pause-point.js';
import { nodeKey, PersistentReservations, sidecarStoreSpec } from '../src/disk/reservations.js';
import { Fencer } from '../src/heartbeat/fencer.js';
import { presetTiming } from '../src/timing.js';

ownLockDir(test);

const MiB = 2 ** 20;
/** Bound on the survivors seeing each other, and on the stopped command being declared dead and fenced (5 s dead time, a 500 ms gate wait, the power fence). */
const UP_MS = 20_000;
const FENCED_MS = 30_000;
const EXIT_MS = 15_000;

const sha = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

async function ok(t: ExecutionContext, args: string[]): Promise<void> {
  const r = await sanboxCli(t, args, { SANBOX_DEVICES: '' });
  t.is(r.code, 0, `sanbox ${args.join(' ')}: ${r.stderr}`);
}

/** The fence log line of `n` about node 1. */
const fenceLine = (n: NodeProc): string => n.lines.find((l) => /^node 1 fenced/.test(l.msg ?? ''))?.msg ?? '';

test('a write stopped inside its gate on a PV only the victim opened: the fence preempts there and waits for it; the write never lands', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'fenceall', '--dead-threshold', '50']);
  const pv = path.join(dir, 'pv0.img');
  fs.writeFileSync(pv, '');
  fs.truncateSync(pv, 32 * MiB);
  const as1 = ['--cluster', img, '--node', '1'];
  // Listed in the cluster image by the commands (they hold the global lock): the survivors never open it.
  await ok(t, ['pvcreate', pv, ...as1]);
  await ok(t, ['vgcreate', '--container', 'private', '--owner', '1', '-s', '1m', 'vgfa', pv, ...as1]);
  await ok(t, ['lvcreate', '-n', 'lv0', '-L', '4M', 'vgfa', ...as1]);

  const survivors = [0, 2].map((n) => spawnNode(t, img, n, ['--fence', 'disk']));
  await survivors[0]!.waitLine(isEvent('up', 2), UP_MS, 'node 2 up');
  const before = sha(pv);
  const stalled = await pausedCommand(t, ['lvcreate', '-n', 'lv1', '-L', '4M', 'vgfa', ...as1], 'lease-checked', { [PAUSE_AT_DEVICE_ENV]: path.basename(pv), SANBOX_DEVICES: '' });
  t.regex(stalled.err(), /stops inside its write to .*pv0\.img/, 'stopped inside a write to the PV');
  await Promise.all(survivors.map((n) => n.waitLine(isEvent('fenced', 1), FENCED_MS, `node ${n.nodeId} to fence node 1`)));
  // One survivor's fence did the work (the other found it done, or raced it and waited too).
  const lines = survivors.map(fenceLine);
  t.log(lines.join('\n'));
  t.true(
    lines.some((l) => new RegExp(`preempt:(preempted|absent)\\(${pv.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, key`).test(l)),
    `a fence preempted node 1 on the PV: ${lines.join(' | ')}`,
  );
  t.true(lines.some((l) => /power:killed/.test(l)), `the fence escalated to the power fence (the write held its gate): ${lines.join(' | ')}`);
  stalled.child.kill('SIGCONT');
  const r = await exited(stalled.child, EXIT_MS);
  t.is(r.signal, 'SIGKILL', `the stalled command was killed by the fence: ${JSON.stringify(r)} ${stalled.err()}`);
  t.is(sha(pv), before, "the PV's bytes are what they were before the command: its write did not land");
});

/** PVs listed besides the image in the cost measurement (a cluster of a few private containers), and rounds of each variant. */
const LISTED_PVS = 4;
const ROUNDS = 15;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

test('the listed devices: preempted where the victim registered, a missing one logged and skipped, one never opened or without the victim key left alone; the cost per fence measured', async (t) => {
  const dir = tempDir(t);
  const timing = presetTiming('local');
  const tag = 0x4242;
  const file = (name: string): string => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, '');
    fs.truncateSync(p, MiB);
    return p;
  };
  const image = new PersistentReservations(sidecarStoreSpec(file('c.img')));
  const pvs = Array.from({ length: LISTED_PVS }, (_, i) => new PersistentReservations(sidecarStoreSpec(file(`pv${i}.img`))));
  const neverOpened = file('fresh.img');
  // Another node's PV: its state exists, the victim never registered there.
  const othersOnly = new PersistentReservations(sidecarStoreSpec(file('other.img')));
  await othersOnly.register(1, nodeKey(tag, 1, 1n), timing.fenceGateWaitMs);
  const missing = path.join(dir, 'gone.img');
  t.teardown(() => [image, othersOnly, ...pvs].forEach((pr) => pr.close()));
  const fencerKey = nodeKey(tag, 0, 1n);
  await image.register(0, fencerKey, timing.fenceGateWaitMs);
  const logs: string[] = [];
  const fencer = (listed: boolean): Fencer =>
    new Fencer({
      selfNodeId: 0,
      selfKey: fencerKey,
      clusterTag: tag,
      reservations: [image],
      ...(listed ? { clusterDevices: async () => [...pvs.map((p) => p.spec.deviceName), othersOnly.spec.deviceName, neverOpened, missing, 'nbd://localhost/x'] } : {}),
      readNodeRecord: async () => null,
      timing,
      policy: 'disk',
      log: (m) => logs.push(m),
    });
  const variants = { imageOnly: fencer(false), listed: fencer(true) };
  const ms: Record<keyof typeof variants, number[]> = { imageOnly: [], listed: [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const name of ['imageOnly', 'listed'] as const) {
      // A new incarnation of node 2 each time, registered everywhere a node's provider would have it.
      const generation = BigInt(2 * round + (name === 'listed' ? 2 : 1));
      const key = nodeKey(tag, 2, generation);
      for (const pr of [image, ...pvs]) t.true(await pr.register(2, key, timing.fenceGateWaitMs));
      const out = await variants[name].fence(2, generation);
      ms[name].push(out.durationMs);
      t.is(image.readState().preempted[2], key);
      for (const pr of pvs) t.is(pr.readState().registered[2] === 0n, name === 'listed', `${pr.spec.deviceName}: preempted only by the listing fencer`);
      if (name === 'listed' && round === 0) {
        t.log(out.steps.join(', '));
        t.deepEqual(out.steps.map((s) => s.split('(')[0]), ['preempt:preempted', ...pvs.map(() => 'preempt:preempted'), 'preempt:missing']);
        t.regex(logs.join('\n'), /listed device .*gone\.img is missing/);
        t.false(fs.existsSync(sidecarStoreSpec(neverOpened).statePath), 'no reservation state made for a device nobody opened');
        t.is(othersOnly.readState().preempted[2], 0n, 'nothing written where the victim was not registered');
      }
      // The victim's next incarnation registers afresh (the test's; a node's provider unregisters at close).
      for (const pr of pvs) if (pr.readState().registered[2] === key) await pr.unregister(2, key);
    }
  }
  t.log(`fence duration, median of ${ROUNDS}: image only ${median(ms.imageOnly).toFixed(2)} ms; image + ${LISTED_PVS} listed PVs ${median(ms.listed).toFixed(2)} ms`);
});
