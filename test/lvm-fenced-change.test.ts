// Issue 18, review finding (HIGH): a layout change run as node N must write its PVs only through
// node N's fence gate, so a change that stalls and outlives N's fence commits nothing. Separate OS
// processes on the same images, nodes with the disk fence only (no kill: the stalled process stays
// alive and resumes, the hard case):
//   1. through running node 1 (`sanbox ctl C 1 lvm lvreduce …`): the command process stops itself
//      at the commit point (SANBOX_PAUSE_AT=vg-commit, src/disk/pause-point.ts), holding the VG
//      lock and the LV's lock through node 1; node 1 is stopped too (SIGSTOP), declared dead and
//      fenced by nodes 0 and 2, which release its locks;
//   2. joined as node 1 (`sanbox lvreduce --cluster C --node 1`, node 1 not running): the command
//      is node 1's incarnation itself; it stops at the commit point and is fenced the same way.
// Then node 2 makes its own layout change (lvextend of another LV) and succeeds, and the stalled
// process resumes. In 1. the command resumes first, before the fence, so its commit write waits in
// node 1's socket; the disk fence kills the command (node 1's client, src/node/clients.ts: so it
// does not keep this host's VG flock), and node 1, resumed, meets the queued write and refuses it
// (its gate: its lease had run out; node 1 is stopped outside its gate, so its fence stays a disk
// fence), as its log says. In 2. the stalled command fails with one line saying node 1 was fenced
// (EFENCED, exit status 3). Checked in both: the VG holds node 2's change and not node 1's
// (sanbox's reading of the PVs, and the real `lvs`), one seqno past the start; the real `pvck` and
// `vgck` are clean.
// 3. Through running node 1 when node 1 is gone and its slot says fenced (lvm-node.ts
//    fencedMeanwhile's second case; the first, N's gate refusing the write, is 1. here and
//    container-failover): `sanbox lvextend --cluster C --node 1` stops itself once connected to
//    node 1 (SANBOX_PAUSE_AT=node-connected), before it registers as node 1's client; node 1 is
//    stopped and power-fenced (killed, its key recorded) by node 0; the command resumes, finds the
//    connection closed, and says in one line that node 1 was fenced (EFENCED, exit status 3); the
//    VG is as before (nothing of the change landed), and the real tools find it clean.

import test, { type ExecutionContext } from 'ava';
import { isEvent, spawnNode, type NodeProc } from './helpers/heartbeat-nodes.js';
import { lvSizeBytes, makeLab, MiB, realToolsClean, vgSeqno, type Lab } from './helpers/lv-lab.js';
import { lvmReport, sanboxCli } from './helpers/lvm-real.js';
import { exited, ownLockDir, tempDir } from './helpers/tmp.js';
import { gateLockPath } from '../src/disk/reservations.js';
import { readClusterImage, reservationSpec } from '../src/heartbeat/cluster-image.js';
import { errorLines, pausedCommand, type PausedCommand } from './helpers/paused-command.js';
import { LOCK_DIR_ENV } from '../src/volume/vg-lock.js';
import { stopOutsideGate } from './helpers/stop-outside-gate.js';

ownLockDir(test);

/** Bound on the nodes seeing each other, and on a stalled node being declared dead and fenced (the lab's 5 s dead time, with room). */
const UP_MS = 20_000;
const FENCED_MS = 30_000;
/** Bound on the stalled command exiting once resumed. */
const EXIT_MS = 30_000;
/** Time a resumed command is given to send its commit write (one request line on a local socket). */
const COMMIT_SENT_MS = 300;

/** lv1 8 MiB (node 1 tries to shrink it to 4), lv2 4 MiB (node 2 grows it to 6); the rest of the 24 MiB PV free. */
function lab(t: ExecutionContext): Promise<Lab> {
  return makeLab(t, 1, 24, [['-n', 'lv1', '-L', '8m'], ['-n', 'lv2', '-L', '4m']], 3);
}

/** Nodes 0 and 2 declared node 1 dead and fenced it; returns the steps of their fences (their log lines). */
async function fencedByPeers(nodes: NodeProc[]): Promise<string[]> {
  await Promise.all(nodes.map((n) => n.waitLine(isEvent('fenced', 1), FENCED_MS, `node ${n.nodeId} to fence node 1`)));
  return nodes.flatMap((n) => n.lines.filter((l) => /^node 1 fenced/.test(l.msg ?? '')).map((l) => l.msg!));
}

/**
 * Node 2 grows lv2 by 2 MiB (through its control channel: the VG lock node 1 held was released by
 * the fence), as from another host: its own host-local lock directory (SANBOX_LOCK_DIR), since in
 * 2. the stalled process (node 1 itself, which a disk fence does not kill) still holds this host's
 * VG flock (lvm2's local file locking, src/volume/vg-lock.ts).
 */
async function node2Change(t: ExecutionContext, l: Lab): Promise<void> {
  const r = await sanboxCli(t, ['ctl', l.cluster, '2', 'lvm', 'lvextend', '-L', '6m', `${l.vg}/lv2`, '--devices', l.pvs.join(',')], { [LOCK_DIR_ENV]: tempDir(t) });
  t.is(r.code, 0, `node 2's lvextend: ${r.stderr}`);
}

/** The stalled command failed in one line naming the fence; the VG is node 2's change only, as sanbox and the real tools read it. */
async function onlyNode2Changed(t: ExecutionContext, l: Lab, stalled: PausedCommand, seqnoBefore: number, fenceSteps: string[] = []): Promise<void> {
  const r = await exited(stalled.child, EXIT_MS);
  if (fenceSteps.some((s) => s.includes(`client:sigkill(pid ${stalled.child.pid})`))) {
    // A fence of node 1 kills node 1's clients (src/node/clients.ts): nothing to resume.
    t.is(r.signal, 'SIGKILL', `the client was killed with its node: ${JSON.stringify(r)}`);
  } else {
    const lines = errorLines(stalled);
    t.is(r.code, 3, `the stalled change exits as fenced: ${stalled.err()}`);
    t.is(lines.length, 1, `one line: ${stalled.err()}`);
    t.regex(lines[0] ?? '', /node 1 (was fenced|has fenced itself)|refused: node 1/, 'the line says node 1 was fenced');
  }
  t.is(await vgSeqno(l), seqnoBefore + 1, "one commit: node 2's");
  t.is(await lvSizeBytes(l, 'lv1'), 8 * MiB, "node 1's reduce did not land");
  t.is(await lvSizeBytes(l, 'lv2'), 6 * MiB, "node 2's extend did");
  const loops = await realToolsClean(t, l);
  const rows = await lvmReport(t, 'lvs', loops, ['lv_name', 'lv_size'], [l.vg]);
  t.deepEqual(Object.fromEntries(rows.map((x) => [x.lv_name, Number(x.lv_size)])), { lv1: 8 * MiB, lv2: 6 * MiB }, 'the real lvs');
}

test.serial('a change through running node 1, stalled at its commit point past node 1\'s fence, commits nothing', async (t) => {
  const l = await lab(t);
  const nodes = [0, 1, 2].map((n) => spawnNode(t, l.cluster, n, ['--fence', 'disk']));
  await Promise.all([1, 2].map((p) => nodes[0]!.waitLine(isEvent('up', p), UP_MS, `node ${p} up`)));
  const seqnoBefore = await vgSeqno(l);
  const stalled = await pausedCommand(t, ['ctl', l.cluster, '1', 'lvm', 'lvreduce', '-y', '-L', '4m', `${l.vg}/lv1`, '--devices', l.pvs.join(',')], 'vg-commit');
  // Stopped outside its fence gate on the image (not inside a heartbeat write): else the fencers
  // escalate to the power fence, the command dies with node 1 (or fails on the killed connection),
  // and the path under test, node 1's gate and lease refusing the command's write, is not taken.
  t.true(await stopOutsideGate(nodes[1]!.child.pid!, gateLockPath(reservationSpec(await readClusterImage(l.cluster)).lockDir, 1)), 'node 1 stopped outside its fence gate');
  // The command resumes before the fence: its commit write waits in node 1's socket until node 1
  // runs again; the disk fence then kills the command (node 1's client), not the write queued.
  stalled.child.kill('SIGCONT');
  await new Promise((r) => setTimeout(r, COMMIT_SENT_MS));
  const fenceSteps = await fencedByPeers([nodes[0]!, nodes[2]!]);
  t.false(fenceSteps.some((x) => /power:/.test(x)), `a disk fence only: ${fenceSteps.join('; ')}`);
  t.true(fenceSteps.some((x) => x.includes(`client:sigkill(pid ${stalled.child.pid})`)), `the disk fence killed node 1's client: ${fenceSteps.join('; ')}`);
  await node2Change(t, l);
  nodes[1]!.child.kill('SIGCONT');
  await onlyNode2Changed(t, l, stalled, seqnoBefore, fenceSteps);
  // Which path refused the queued commit write: node 1's gate (its lease had run out), as node 1 says.
  const refusal = await nodes[1]!.waitLine((x) => /^a command's write through node 1: refused: .*write at offset \d+ refused: /.test(x.msg ?? ''), EXIT_MS, 'node 1 to refuse the queued commit write');
  t.log(refusal.msg);
  const n1 = await exited(nodes[1]!.child, EXIT_MS);
  t.is(n1.code, 3, `node 1 fenced itself when it resumed: ${JSON.stringify(n1)}`);
});

test.serial('a change joined as node 1, stalled at its commit point past its fence, commits nothing', async (t) => {
  const l = await lab(t);
  const nodes = [0, 2].map((n) => spawnNode(t, l.cluster, n, ['--fence', 'disk']));
  await nodes[0]!.waitLine(isEvent('up', 2), UP_MS, 'node 2 up');
  const seqnoBefore = await vgSeqno(l);
  const stalled = await pausedCommand(t, ['lvreduce', '-y', '-L', '4m', `${l.vg}/lv1`, '--devices', l.pvs.join(','), '--cluster', l.cluster, '--node', '1'], 'vg-commit');
  await fencedByPeers(nodes);
  await node2Change(t, l);
  stalled.child.kill('SIGCONT');
  await onlyNode2Changed(t, l, stalled, seqnoBefore);
});

test.serial('a change through running node 1 that finds node 1 gone and its slot fenced says so in one line, and changes nothing', async (t) => {
  const l = await makeLab(t, 1, 24, [['-n', 'lv1', '-L', '8m']], 2);
  const nodes = [0, 1].map((n) => spawnNode(t, l.cluster, n, ['--fence', 'power']));
  t.teardown(() => void nodes[1]!.child.kill('SIGCONT'));
  await nodes[0]!.waitLine(isEvent('up', 1), UP_MS, 'node 1 up');
  const seqnoBefore = await vgSeqno(l);
  // Why the pause point and not a stop at a natural moment: a command that registered as node 1's
  // client is killed by node 1's fence (src/node/clients.ts; 1. above, ctl-client-fence), one that
  // starts after node 1 is gone joins as node 1 itself (its slot lock is free: 2. above), and one
  // running while node 1 is killed sees the connection close at the kill, before the fencer records
  // the fence on the image (fencer.ts: kill, then markFenced), so its reading of the slot races the
  // record. Stopped between its connect and its registration, the command resumes after the fence
  // is recorded: the path under test, node 1 gone and its slot fenced, is taken every time.
  const stalled = await pausedCommand(t, ['lvextend', '-L', '12m', `${l.vg}/lv1`, '--devices', l.pvs.join(','), '--cluster', l.cluster, '--node', '1'], 'node-connected');
  nodes[1]!.child.kill('SIGSTOP');
  const fence = await nodes[0]!.waitLine((x) => /^node 1 fenced/.test(x.msg ?? ''), FENCED_MS, 'node 0 to fence node 1');
  t.log(fence.msg);
  t.regex(fence.msg ?? '', /power:killed/, `node 1 was power-fenced: ${fence.msg}`);
  t.false((fence.msg ?? '').includes(`client:sigkill(pid ${stalled.child.pid})`), 'the command was not node 1\'s client yet: the fence did not kill it');
  t.is((await exited(nodes[1]!.child, EXIT_MS)).signal, 'SIGKILL', 'node 1 is gone');
  stalled.child.kill('SIGCONT');
  const r = await exited(stalled.child, EXIT_MS);
  const lines = errorLines(stalled);
  t.log(lines.join('\n'));
  t.is(r.code, 3, `the change exits as fenced: ${stalled.err()}`);
  t.is(lines.length, 1, `one line: ${stalled.err()}`);
  t.regex(lines[0] ?? '', /^sanbox: node 1 was fenced while the command ran; its fence gate refused what the command had not written by then: check the VG with vgs \(.*its slot says fenced/, 'the line says node 1 was fenced, and why');
  t.is(await vgSeqno(l), seqnoBefore, 'no commit');
  t.is(await lvSizeBytes(l, 'lv1'), 8 * MiB, 'the extend did not land');
  const loops = await realToolsClean(t, l);
  const rows = await lvmReport(t, 'lvs', loops, ['lv_name', 'lv_size'], [l.vg]);
  t.deepEqual(Object.fromEntries(rows.map((x) => [x.lv_name, Number(x.lv_size)])), { lv1: 8 * MiB }, 'the real lvs');
});
