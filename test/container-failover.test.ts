// Ownership failover of a private container (issue 18 item 5), with separate OS processes on one
// cluster image of 3 nodes: node 0 a `sanbox node`, node 2 a real node doing I/O through its
// provider (test/helpers/volume-io-node.ts), the container changes made by `sanbox vgchange`
// processes, the result judged by the real `vgs`/`vgck`/`pvck` on a loop device.
//
//   owner 2 alive: node 0 taking it is refused naming node 2; node 2 hands it over (its consent);
//   owner 0 alive: node 2 cannot open its LV, and taking it is refused naming node 0;
//   node 0 (a real node too, every node fencing with --fence disk: preempt, no kill) writes vgf/lv
//   in a loop and is stopped (SIGSTOP): node 2, alone with the stalled node 0 (the two-node
//   tie-break gives the lower node 0 the quorum), cannot fence it, so the takeover is refused
//   "not fenced yet" with the heartbeat age and the dead time, and nothing is written;
//   node 1 starts: node 2 has quorum, fences node 0 (on the devices the survivors have open: not
//   node 0's PV), and the takeover goes through, preempting node 0's key on the PV itself: the real
//   vgs shows system ID flab-node2, vgck and pvck are clean; node 0 resumed (SIGCONT) gets its next
//   write refused (EFENCED) and not one byte of the PV changes after the takeover; node 2 writes
//   through the LV.

import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { answered, spawnIoNode, type IoNode } from './helpers/io-node.js';
import { defaultLockDir, gateLockPath, PersistentReservations, sidecarStoreSpec } from '../src/disk/reservations.js';
import type { ReservationState } from '../src/format/reservations.js';
import { clusterInit, isEvent, spawnNode, statusJson } from './helpers/heartbeat-nodes.js';
import { errorLines, pausedCommand } from './helpers/paused-command.js';
import { attachLoop, lvm, lvmAsHost, warnings } from './helpers/lvm-real.js';
import { LOCK_DIR_ENV } from '../src/volume/vg-lock.js';
import { stopOutsideGate } from './helpers/stop-outside-gate.js';
import { exited, ownLockDir, runSanbox, tempDir, waitForAsync } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 1024 * 1024;
const JOIN_BOUND_MS = 20_000;
/** Bound on the cluster image showing node 0 dead (local preset: 2 s) or fenced after node 1 joins. */
const STATE_BOUND_MS = 15_000;

/** Where node 0 loops its writes in vgf/lv: clear of the blocks node 2 checks (0 and 4096). */
const LOOP_OFFSET_BYTES = 65536;

const sha256 = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

async function sanbox(t: ExecutionContext, args: string[], pv: string): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return runSanbox(t, args, { env: { SANBOX_DEVICES: pv } });
}

async function ok(t: ExecutionContext, args: string[], pv: string): Promise<void> {
  const r = await sanbox(t, args, pv);
  t.is(r.code, 0, `sanbox ${args.join(' ')}: ${r.stderr}`);
}

/** A refused change: exit 1, one line matching `re`, the PV image byte for byte as before. */
async function refused(t: ExecutionContext, args: string[], pv: string, re: RegExp): Promise<string> {
  const before = sha256(pv);
  const r = await sanbox(t, args, pv);
  t.is(r.code, 1, `sanbox ${args.join(' ')} must be refused: ${r.stdout}${r.stderr}`);
  t.regex(r.stderr, re);
  t.is(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  t.is(sha256(pv), before, 'nothing written');
  return r.stderr.trim();
}

/** `vgchange VG --owner OWNER` made as node NODE of the cluster IMG. */
const ownerChange = (vg: string, img: string, owner: string, node: number): string[] => ['vgchange', vg, '--owner', owner, '--node', String(node), '--cluster', img];

/** The VG's system ID as the real vgs shows it to a host with system ID `host` (undefined: foreign there); vgck and pvck clean. */
/** A cluster image of `nodes` nodes and one 64 MiB PV holding VG vgf, made a private container owned by `owner`. */
async function privateVgLab(t: ExecutionContext, clusterName: string, owner: number, withLv: boolean, nodes = 3): Promise<{ img: string; pv: string }> {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', String(nodes), '--name', clusterName]);
  const pv = path.join(dir, 'pv.img');
  fs.writeFileSync(pv, '');
  fs.truncateSync(pv, 64 * MiB);
  await ok(t, ['pvcreate', pv], pv);
  await ok(t, ['vgcreate', 'vgf', pv], pv);
  if (withLv) await ok(t, ['lvcreate', '-n', 'lv', '-L', '8M', 'vgf'], pv);
  await ok(t, ['vgchange', 'vgf', '--container', 'private', '--owner', String(owner), '--cluster', img], pv);
  return { img, pv };
}

async function realSystemId(t: ExecutionContext, loop: string, host: string): Promise<string | undefined> {
  const r = await lvmAsHost('vgs', [loop], host, ['--reportformat', 'json', '-o', 'vg_name,vg_systemid']);
  t.is(r.code, 0, r.stderr);
  const rows = (JSON.parse(r.stdout) as { report: { vg: Record<string, string>[] }[] }).report[0]!.vg;
  const systemId = rows.find((x) => x.vg_name === 'vgf')?.vg_systemid;
  if (systemId === undefined) return undefined;
  const ck = await lvmAsHost('vgck', [loop], host, ['vgf']);
  t.is(ck.code, 0, `vgck as ${host}: ${ck.stderr}`);
  t.deepEqual(warnings(ck.stderr), []);
  const p = await lvm('pvck', [loop], [loop]);
  t.is(p.code, 0, `pvck: ${p.stderr}`);
  return systemId;
}

test('private takeover: refused while the owner lives (unless it consents) and before its fence; done after it, and the new owner writes', async (t) => {
  const { img, pv } = await privateVgLab(t, 'flab', 2, true);
  const loop = await attachLoop(t, pv);
  const change = (owner: string, node: number): string[] => ownerChange('vgf', img, owner, node);

  // Node 0 runs as on another host: its own host-local lock directory (the in-use guards of its
  // LVs), so a takeover on this host is not held up by node 0's open LV; what stops node 0 is the fence.
  const otherHost = tempDir(t);
  const w0 = spawnIoNode(t, img, 0, [pv], { fence: 'disk', env: { [LOCK_DIR_ENV]: otherHost } });
  const w = spawnIoNode(t, img, 2, [pv], { fence: 'disk' });
  await w.wait((e) => e.ev === 'quorum' && (e.up ?? []).includes(0), JOIN_BOUND_MS, 'node 2 to see node 0 up');
  w.send('open a vgf/lv');
  t.is((await answered(w, 'open:a', 10_000)).ev, 'done', 'the owner opens its LV');
  w.send('write 1 a 0');
  t.is((await answered(w, '1', 5000)).ev, 'done');

  // A live owner's container is not taken without its consent.
  t.log(await refused(t, change('self', 0), pv, /^sanbox: volume group vgf: its owner node 2 is alive \(last heartbeat \d+\.\d s ago\): a takeover without its consent is refused; make the change as node 2 \(--node 2\)/));
  // Its consent: the change made as the owner — refused while it still has the LV open, done once it let go.
  t.log(await refused(t, change('0', 2), pv, /^sanbox: vgf\/lv: device busy: logical volume in use by another process/));
  w.send('close a');
  t.is((await answered(w, 'close:a', 5000)).ev, 'done');
  await ok(t, change('0', 2), pv);
  t.is(await realSystemId(t, loop, 'flab-node0'), 'flab-node0');

  // Node 2 no longer owns it: it may not open the LV, nor take it from live node 0.
  w.send('open b vgf/lv');
  const notOwner = await answered(w, 'open:b', 10_000);
  t.is(notOwner.ev, 'failed');
  t.regex(notOwner.msg ?? '', /volume group vgf is a private container owned by node 0: node 2 may not use it/);
  t.log(await refused(t, change('self', 2), pv, /^sanbox: volume group vgf: its owner node 0 is alive .*make the change as node 0/));

  // The owner writes its LV, then stalls (SIGSTOP). Node 2 alone with stalled node 0 has no quorum
  // (the two-node tie-break keeps the lower node): it cannot fence node 0, so the takeover waits.
  w0.send('open v vgf/lv');
  t.is((await answered(w0, 'open:v', 10_000)).ev, 'done', 'the new owner opens its LV');
  w0.send(`loop v ${LOOP_OFFSET_BYTES}`);
  t.is((await answered(w0, 'loop:v', 5000)).ev, 'done', 'the owner writes');
  t.true(await stopOutsideGate(w0.pid, gateLockPath(defaultLockDir(pv), 0), (sig) => w0.signal(sig)), 'node 0 stopped outside its fence gate on the PV');
  await waitForAsync(async () => (await statusJson(t, img)).slots[0]!.state === 'dead', STATE_BOUND_MS, 'cluster status to show node 0 dead');
  const notYet = await refused(t, change('self', 2), pv, /^sanbox: volume group vgf: its owner node 0 is not fenced yet: last heartbeat \d+\.\d s ago, dead after 2\.0 s; a node with quorum must fence it/);
  t.log(notYet);
  t.is(await realSystemId(t, loop, 'flab-node0'), 'flab-node0', 'the metadata still names node 0');

  // A third node brings quorum; node 2 fences node 0; now the takeover goes through.
  spawnNode(t, img, 1, ['--fence', 'disk']);
  await w.wait((e) => e.ev === 'log' && /^node 0 fenced/.test(e.msg ?? ''), STATE_BOUND_MS, 'node 2 to fence node 0');
  t.is((await statusJson(t, img)).slots[0]!.state, 'fenced');
  await ok(t, change('self', 2), pv);
  // Made through running node 2: node 2 preempted node 0's key on the PV, with its own key, under its fence.
  const preempt = await w.wait((e) => e.ev === 'log' && /^preempt of node 0's key 0x[0-9a-f]+ on .*pv\.img for a command through node 2: (preempted|absent)/.test(e.msg ?? ''), 5000, "node 2's log of the takeover's preempt");
  t.log(preempt.msg);
  t.is(await realSystemId(t, loop, 'flab-node2'), 'flab-node2', 'the real vgs names the new owner');
  t.is(await realSystemId(t, loop, 'flab-node0'), undefined, 'to the old owner the VG is foreign now');

  // The stalled old owner resumes: its next write is refused, and nothing it writes lands.
  const afterTakeover = sha256(pv);
  w0.signal('SIGCONT');
  const stopped = await w0.wait((e) => e.ev === 'failed' && e.id === 'loop:v', STATE_BOUND_MS, "the old owner's write loop to fail");
  t.is(stopped.code, 'EFENCED', stopped.msg);
  t.log(`old owner resumed: ${stopped.msg}`);
  t.is(sha256(pv), afterTakeover, 'no write of the old owner landed after the takeover');

  // The new owner does I/O.
  w.send('open c vgf/lv');
  t.is((await answered(w, 'open:c', 10_000)).ev, 'done');
  w.send('write 7 c 4096');
  t.is((await answered(w, '7', 5000)).ev, 'done');
  w.send('read 8 c 0');
  t.is((await answered(w, '8', 5000)).byte, 1, 'what the first owner wrote is there');
  w.send('read 9 c 4096');
  t.is((await answered(w, '9', 5000)).byte, 7);
});

test('a container change on a VG another node is changing waits for its VG lock, then fails in one line naming the VG and the node; nothing written', async (t) => {
  const { img, pv } = await privateVgLab(t, 'blab', 1, false);
  const n1 = spawnNode(t, img, 1);
  await n1.waitLine((l) => /^ready/.test(l.msg ?? ''), JOIN_BOUND_MS, 'node 1 ready');
  // Node 1 is in the middle of a change of vgf: it holds the VG lock exclusively (lvmlockd's VGLK).
  const held = await runSanbox(t, ['ctl', img, '1', 'lock', 'lvm_vgf:VGLK', '--mode', 'EX']);
  t.is(held.code, 0, held.stderr);
  const t0 = Date.now();
  const msg = await refused(t, ownerChange('vgf', img, '0', 2), pv, /^sanbox: volume group vgf is being changed by node 1: its VG lock lvm_vgf:VGLK is held EX; node 2 did not get it exclusive within \d+ ms/);
  t.log(`${msg} (after ${Date.now() - t0} ms)`);
});

/** The PV's reservation state (its sidecar file, where a node's provider keeps it). */
function reservationsOf(pv: string): ReservationState {
  const pr = new PersistentReservations(sidecarStoreSpec(pv));
  try {
    return pr.readState();
  } finally {
    pr.close();
  }
}

/** Bound on a stopped command exiting once resumed. */
const EXIT_MS = 30_000;

test('a takeover through running node N: N preempts the fenced owner\'s key; through a fenced N it fails with exit status 3, nothing written', async (t) => {
  // Four nodes: the owner 3 dies; 0, 1 and 2 fence it; then 2 is stopped and 0 and 1 (two of the
  // three left, a quorum) fence 2 while a takeover through it waits at its preempt.
  const { img, pv } = await privateVgLab(t, 'tlab', 3, true, 4);
  const loop = await attachLoop(t, pv);
  const nodes = [0, 1, 2].map((n) => spawnNode(t, img, n, ['--fence', 'disk']));
  const owner = spawnIoNode(t, img, 3, [pv], { fence: 'disk' });
  await owner.wait((e) => e.ev === 'quorum' && [0, 1, 2].every((n) => (e.up ?? []).includes(n)), JOIN_BOUND_MS, 'node 3 to see nodes 0-2 up');
  owner.send('open v vgf/lv');
  t.is((await answered(owner, 'open:v', 10_000)).ev, 'done', 'the owner opens its LV');
  owner.send('write 1 v 0');
  t.is((await answered(owner, '1', 5000)).ev, 'done');
  // The owner dies with its key registered on the PV (and the reservation its); the PV is in no
  // device list of the cluster, so the fence of node 3 does not reach it: the takeover must.
  owner.kill();
  await Promise.all(nodes.map((n) => n.waitLine(isEvent('fenced', 3), STATE_BOUND_MS, `node ${n.nodeId} to fence node 3`)));
  const ownerKey = reservationsOf(pv).registered[3]!;
  t.not(ownerKey, 0n, "node 3's key is registered on the PV");

  // Through node 2, stopped at the preempt; node 2 is stopped and fenced meanwhile.
  const stalled = await pausedCommand(t, ['ctl', img, '2', 'lvm', 'vgchange', 'vgf', '--owner', 'self'], 'takeover-preempt', { SANBOX_DEVICES: pv });
  const pvBefore = sha256(pv);
  const stateBefore = fs.readFileSync(sidecarStoreSpec(pv).statePath);
  nodes[2]!.child.kill('SIGSTOP');
  await Promise.all([0, 1].map((n) => nodes[n]!.waitLine(isEvent('fenced', 2), STATE_BOUND_MS, `node ${n} to fence node 2`)));
  const fenceSteps = [0, 1].flatMap((n) => nodes[n]!.lines.filter((l) => /^node 2 fenced/.test(l.msg ?? '')).map((l) => l.msg!));
  // The command first: its preempt waits in node 2's socket until node 2 runs again, past its lease.
  stalled.child.kill('SIGCONT');
  await new Promise((r) => setTimeout(r, 300));
  nodes[2]!.child.kill('SIGCONT');
  const r = await exited(stalled.child, EXIT_MS);
  if (fenceSteps.some((x) => x.includes(`client:sigkill(pid ${stalled.child.pid})`))) {
    // The disk fence escalated to the power fence (node 2 stopped inside a gate lease), which kills its clients too.
    t.is(r.signal, 'SIGKILL', `killed with its node: ${JSON.stringify(r)}`);
  } else {
    const lines = errorLines(stalled);
    t.is(r.code, 3, `the takeover through fenced node 2 exits as fenced: ${stalled.err()}`);
    t.is(lines.length, 1, `one line: ${stalled.err()}`);
    t.regex(lines[0] ?? '', /node 2 (was fenced|has fenced itself|has been fenced|is past its self-fence deadline)/);
    t.log(lines[0]);
  }
  t.is(sha256(pv), pvBefore, 'the PV is as it was');
  t.deepEqual(fs.readFileSync(sidecarStoreSpec(pv).statePath), stateBefore, "the PV's reservation state is as it was: node 3's key not preempted");
  t.is(await realSystemId(t, loop, 'tlab-node3'), 'tlab-node3', 'the metadata still names node 3');

  // Through node 1, alive: the takeover goes through, and the preempt is node 1's.
  const ok1 = await sanbox(t, ['ctl', img, '1', 'lvm', 'vgchange', 'vgf', '--owner', 'self'], pv);
  t.is(ok1.code, 0, ok1.stderr);
  const logged = await nodes[1]!.waitLine((l) => new RegExp(`^preempt of node 3's key 0x${ownerKey.toString(16)} on .*pv\\.img for a command through node 1: preempted`).test(l.msg ?? ''), 5000, "node 1's log of the takeover's preempt");
  t.log(logged.msg);
  const after = reservationsOf(pv);
  t.is(after.preempted[3], ownerKey, "node 3's key is recorded preempted on the PV");
  t.is(after.registered[3], 0n, "node 3's key is no longer registered there");
  t.is(await realSystemId(t, loop, 'tlab-node1'), 'tlab-node1', 'the real vgs names the new owner');
});
