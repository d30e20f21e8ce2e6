// Issue 18: a `sanbox ctl C N lvm …` client is a process of its own, not in node N's command group;
// stalled, it outlived N's fence and kept the host's VG flock (lvm2's local file locking,
// src/volume/vg-lock.ts), so every later command on this host waited for it. Now the client tells
// N who it is before it takes anything (src/node/clients.ts), N records it in its node record, and
// a fence of N ends it: a fencer on this machine once its fence is in place (src/heartbeat/fencer.ts),
// and N itself when it finds it has been fenced (src/node/node.ts). Separate OS processes on one
// cluster image and one PV; the client `sanbox ctl C 1 lvm lvreduce` stopped at its commit point
// (SANBOX_PAUSE_AT=vg-commit) holding the VG flock:
//   1. nodes 0, 1, 2 with `--fence power`; node 1 stopped (SIGSTOP) and power-fenced by its peers;
//   2. the same with `--fence disk`: node 1 lives on (stopped), its key preempted, and the fence
//      kills its client after the preempt; node 1, resumed, exits as fenced;
//   3. node 1 alone (no fencer anywhere, as on a host whose peers are elsewhere), stopped past its
//      self-fence deadline and resumed: it finds itself fenced and kills its client itself.
// Checked: the node record names the client while it runs; the fence's steps (or node 1's log)
// name its kill; the client is gone (SIGKILL), nobody holds the flock, and the next LVM change on
// this host (the same lock directory) succeeds without waiting for the flock; the VG is that
// change only, the real pvck/vgck clean. Without the fix the client survives and the next change
// waits for the flock until it fails (VG_LOCK_WAIT_MS).

import test, { type ExecutionContext } from 'ava';
import path from 'node:path';
import { lockHolders } from '../src/disk/in-use-guard.js';
import { openDevice } from '../src/disk/open.js';
import { readClusterImage, readNodeRecords, reservationSpec } from '../src/heartbeat/cluster-image.js';
import { gateLockPath } from '../src/disk/reservations.js';
import type { NodeRecord } from '../src/format/node-record.js';
import { lockDir, vgLockName } from '../src/volume/vg-lock.js';
import { VG_LOCK_WAIT_MS } from '../src/timing.js';
import { isEvent, spawnNode, type NodeProc } from './helpers/heartbeat-nodes.js';
import { lvSizeBytes, makeLab, MiB, realToolsClean, vgSeqno, type Lab } from './helpers/lv-lab.js';
import { sanboxCli } from './helpers/lvm-real.js';
import { pausedCommand, type PausedCommand } from './helpers/paused-command.js';
import { stopOutsideGate } from './helpers/stop-outside-gate.js';
import { exited, ownLockDir, waitForAsync } from './helpers/tmp.js';

ownLockDir(test);

/** Bound on the nodes seeing each other, and on a stalled node being declared dead and fenced (the lab's 5 s dead time, with room). */
const UP_MS = 20_000;
const FENCED_MS = 30_000;
/** Bound on the killed client being reaped once its node is fenced. */
const EXIT_MS = 10_000;

async function nodeRecord(image: string, nodeId: number): Promise<NodeRecord | null> {
  const info = await readClusterImage(image);
  const dev = await openDevice(image, { readOnly: true, guard: 'none' });
  try {
    return (await readNodeRecords(dev, info))[nodeId] ?? null;
  } finally {
    await dev.close();
  }
}

/** lv1 8 MiB (node 1's client tries to shrink it to 4), lv2 4 MiB (the next change grows it to 6), in a 3-node cluster. */
function lab(t: ExecutionContext): Promise<Lab> {
  return makeLab(t, 1, 24, [['-n', 'lv1', '-L', '8m'], ['-n', 'lv2', '-L', '4m']], 3);
}

/** Nodes 0, 1 and 2 with fence policy `fence`, up and seeing each other. */
async function threeNodes(t: ExecutionContext, l: Lab, fence: 'power' | 'disk'): Promise<NodeProc[]> {
  const nodes = [0, 1, 2].map((n) => spawnNode(t, l.cluster, n, ['--fence', fence]));
  await Promise.all([1, 2].map((p) => nodes[0]!.waitLine(isEvent('up', p), UP_MS, `node ${p} up`)));
  return nodes;
}

/** `ctl C 1 lvm lvreduce` stopped at its commit point: it holds the host's VG flock, and node 1's record names it. */
async function stalledClient(t: ExecutionContext, l: Lab): Promise<{ stalled: PausedCommand; pid: number; flock: string }> {
  const stalled = await pausedCommand(t, ['ctl', l.cluster, '1', 'lvm', 'lvreduce', '-y', '-L', '4m', `${l.vg}/lv1`, '--devices', l.pvs.join(',')], 'vg-commit');
  const pid = stalled.child.pid!;
  const flock = path.join(lockDir(), vgLockName(l.vg));
  t.deepEqual(lockHolders(flock), [pid], 'the stalled client holds the VG flock');
  t.deepEqual((await nodeRecord(l.cluster, 1))?.clients?.map((c) => c.pid), [pid], "node 1's record names its client");
  return { stalled, pid, flock };
}

/**
 * Nodes 0 and 2 fenced node 1 and one of them killed its client (the fence sends the SIGKILL, and
 * that fencer logs the client's end after the fence: review 7 M1): their fences' steps.
 */
async function clientKilledByFence(t: ExecutionContext, nodes: NodeProc[], pid: number): Promise<string[]> {
  const fences = await Promise.all([0, 2].map((n) => nodes[n]!.waitLine((x) => /^node 1 fenced/.test(x.msg ?? ''), FENCED_MS, `node ${n} to fence node 1`)));
  const steps = fences.map((f) => f.msg ?? '');
  t.log(steps.join('\n'));
  const killer = [0, 2].filter((_, i) => steps[i]!.includes(`client:sigkill(pid ${pid})`));
  t.true(killer.length > 0, `a fence killed the client: ${steps.join(' | ')}`);
  t.false(steps.some((s) => s.includes('client:survived')), 'no client survived a fence');
  const end = await nodes[killer[0]!]!.waitLine((x) => (x.msg ?? '').startsWith(`after fencing node 1: its client pid ${pid}`), EXIT_MS, `node ${killer[0]!} to see the client end`);
  t.is(end.msg, `after fencing node 1: its client pid ${pid} killed`);
  return steps;
}

/**
 * The client is gone (SIGKILL) and the flock free; the next change on this host (node 2 grows lv2
 * to 6 MiB, with the same lock directory) does not wait for the flock; the VG is that change only.
 */
async function nextChangeProceeds(t: ExecutionContext, l: Lab, c: { stalled: PausedCommand; flock: string }, seqnoBefore: number): Promise<void> {
  t.is((await exited(c.stalled.child, EXIT_MS)).signal, 'SIGKILL', 'the client was killed');
  t.deepEqual(lockHolders(c.flock), [], 'nobody holds the VG flock');
  const t0 = Date.now();
  const r = await sanboxCli(t, ['ctl', l.cluster, '2', 'lvm', 'lvextend', '-L', '6m', `${l.vg}/lv2`, '--devices', l.pvs.join(',')]);
  const tookMs = Date.now() - t0;
  t.is(r.code, 0, `the next lvextend: ${r.stderr}`);
  t.true(tookMs < VG_LOCK_WAIT_MS, `the next lvextend took ${tookMs} ms, below the flock wait of ${VG_LOCK_WAIT_MS} ms`);
  t.log(`the next lvextend on this host took ${tookMs} ms`);
  t.is(await vgSeqno(l), seqnoBefore + 1, 'one commit: the next change');
  t.is(await lvSizeBytes(l, 'lv1'), 8 * MiB, "node 1's reduce did not land");
  t.is(await lvSizeBytes(l, 'lv2'), 6 * MiB, 'the next extend did');
  await realToolsClean(t, l);
}

test.serial('a ctl lvm client stalled holding the VG flock dies with its node\'s power fence; the flock is free and the next command on this host proceeds', async (t) => {
  const l = await lab(t);
  const nodes = await threeNodes(t, l, 'power');
  const seqnoBefore = await vgSeqno(l);
  const c = await stalledClient(t, l);
  nodes[1]!.child.kill('SIGSTOP');
  await clientKilledByFence(t, nodes, c.pid);
  t.is((await exited(nodes[1]!.child, EXIT_MS)).signal, 'SIGKILL', 'node 1 was killed');
  await nextChangeProceeds(t, l, c, seqnoBefore);
  // The node lets go of its client once the client's connection has closed (after the command exited).
  await waitForAsync(async () => (await nodeRecord(l.cluster, 2))?.clients?.length === 0, EXIT_MS, "node 2's record to let go of its client");
});

test.serial('a ctl lvm client stalled holding the VG flock is killed by its node\'s disk fence once the node is preempted; the node lives on, and exits as fenced when it resumes', async (t) => {
  const l = await lab(t);
  const nodes = await threeNodes(t, l, 'disk');
  const seqnoBefore = await vgSeqno(l);
  const c = await stalledClient(t, l);
  // Not inside its gate on the image: that node's disk fence escalates to the power fence (fencer.ts preempt).
  t.true(await stopOutsideGate(nodes[1]!.child.pid!, gateLockPath(reservationSpec(await readClusterImage(l.cluster)).lockDir, 1)), 'node 1 stopped outside its fence gate');
  const steps = await clientKilledByFence(t, nodes, c.pid);
  // Either fencer may be the one that preempts, and either the one that kills: each kills after its preempt.
  t.false(steps.some((s) => /power:/.test(s)), `a disk fence only: ${steps.join(' | ')}`);
  t.true(steps.some((s) => /preempt:preempted/.test(s)), `node 1's key was preempted: ${steps.join(' | ')}`);
  t.true(steps.every((s) => /preempt:\w+\(.*client:(sigkill|gone)/.test(s)), `each fence ended the client after its preempt: ${steps.join(' | ')}`);
  t.is(nodes[1]!.child.exitCode, null, 'node 1 lives on (stopped)');
  await nextChangeProceeds(t, l, c, seqnoBefore);
  nodes[1]!.child.kill('SIGCONT');
  t.is((await exited(nodes[1]!.child, EXIT_MS)).code, 3, 'node 1, resumed, exits as fenced');
});

test.serial('a node that finds itself fenced kills its own stalled ctl lvm client (no fencer on this host); the flock is free and the next command proceeds', async (t) => {
  const l = await lab(t);
  const node1 = spawnNode(t, l.cluster, 1, ['--fence', 'disk']);
  await node1.waitLine((x) => /^ready after/.test(x.msg ?? ''), UP_MS, 'node 1 ready');
  const seqnoBefore = await vgSeqno(l);
  const c = await stalledClient(t, l);
  // Stopped past its self-fence deadline: resumed, its lease has run out and it fences itself.
  const { timing } = await readClusterImage(l.cluster);
  node1.child.kill('SIGSTOP');
  await new Promise((r) => setTimeout(r, timing.selfFenceMs + timing.intervalMs));
  node1.child.kill('SIGCONT');
  const killed = await node1.waitLine((x) => (x.msg ?? '').startsWith('node 1 fenced itself: its client'), FENCED_MS, 'node 1 to end its client');
  t.log(killed.msg);
  t.is(killed.msg, `node 1 fenced itself: its client pid ${c.pid} killed`);
  t.is((await exited(node1.child, EXIT_MS)).code, 3, 'node 1 exits as fenced');
  // Nodes 0 and 2 join, find node 1 stale and fence it (a quorum of two; its client is gone
  // already), which frees the VG lock node 1 held; then node 2 makes the next change.
  const peers = [0, 2].map((n) => spawnNode(t, l.cluster, n, ['--fence', 'disk']));
  const steps = await Promise.all(peers.map(async (p) => (await p.waitLine((x) => /^node 1 fenced/.test(x.msg ?? ''), FENCED_MS, `node ${p.nodeId} to fence node 1`)).msg ?? ''));
  t.log(steps.join('\n'));
  t.false(steps.some((x) => x.includes('client:sigkill')), `node 1 had killed its client before: ${steps.join(' | ')}`);
  await nextChangeProceeds(t, l, c, seqnoBefore);
});
