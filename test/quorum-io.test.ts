// Quorum holds I/O (issue 18 item 6), with separate OS processes on one cluster image: nodes 0 and
// 1 are `sanbox node` processes, node 2 a real node (test/helpers/volume-io-node.ts) doing I/O on
// LVs of a shared, a private (its own) and a local container through its device provider.
//
// Stalling nodes 0 and 1 (SIGSTOP) past the dead time takes node 2's quorum (1 of 3). Its write
// to the shared LV and its read of the private one are held: neither done nor failed, while its
// write to the local LV completes at once; `ctl status` says "I/O held: no quorum since …". The
// stalled nodes, resumed, fence themselves (their own heartbeat rule: they were stopped past the
// self-fence deadline), so quorum comes back when they are started again: then the held I/O
// completes and the data is there. A second loss (which needs the restarted nodes to count in
// the quorum base) held past timing.quorumHoldMs fails the held write with EIO, and new I/O fails
// at once.
//
// The same for a mounted ocfs2 volume: node 2 runs `sanbox node --mount`, and its `ctl fs put`
// (a transaction in its slot journal, then the file's blocks) is held while it has no quorum and
// completes when quorum is back; its heartbeat in the volume goes on meanwhile (it is not held),
// so it neither fences itself nor is declared dead.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { answered, spawnIoNode, type IoNode } from './helpers/io-node.js';
import { clusterInit, isEvent, spawnNode, type NodeProc } from './helpers/heartbeat-nodes.js';
import { mkfs, spawnMounted } from './helpers/mounted-volume.js';
import { parseO2hbBlock } from '../src/format/o2hb-block.js';
import { readClusterImage } from '../src/heartbeat/cluster-image.js';
import { collect, exited, ownLockDir, runSanbox, spawnChild, SANBOX_BIN, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 1024 * 1024;
/** Bounds on the steps (local preset: dead after 2 s; a loaded machine gets margin). */
const JOIN_BOUND_MS = 20_000;
const LOSS_BOUND_MS = 10_000;
const SELF_FENCE_EXIT_BOUND_MS = 10_000;
/** A block encoded as the SIGSTOP arrives may carry a ms or two past our clock read; the peers stay stopped for seconds. */
const STOP_SLACK_MS = 500;
/** How long a held I/O is watched to be neither done nor failed. */
const HELD_WATCH_MS = 1500;

interface Lab {
  img: string;
  pvs: string[];
  holdMs: number;
}

async function sanbox(t: ExecutionContext, args: string[], pvs: string[]): Promise<string> {
  const r = await runSanbox(t, args, { env: { SANBOX_DEVICES: pvs.join(',') } });
  t.is(r.code, 0, `sanbox ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A 3-node cluster and three VGs of one 64 MiB PV each, with an 8 MiB LV: vgs shared, vgp private to node 2, vgl local. */
async function lab(t: ExecutionContext): Promise<Lab> {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'qlab']);
  const pvs = ['s', 'p', 'l'].map((k) => path.join(dir, `pv-${k}.img`));
  for (const pv of pvs) fs.writeFileSync(pv, ''), fs.truncateSync(pv, 64 * MiB);
  await sanbox(t, ['pvcreate', ...pvs], pvs);
  for (const [i, k] of ['s', 'p', 'l'].entries()) {
    await sanbox(t, ['vgcreate', `vg${k}`, pvs[i]!], pvs);
    await sanbox(t, ['lvcreate', '-n', 'lv', '-L', '8M', `vg${k}`], pvs);
  }
  await sanbox(t, ['vgchange', 'vgs', '--container', 'shared', '--cluster', img], pvs);
  await sanbox(t, ['vgchange', 'vgp', '--container', 'private', '--owner', '2', '--cluster', img], pvs);
  const status = JSON.parse(await sanbox(t, ['cluster', 'status', img, '--json'], pvs)) as { timing: { quorumHoldMs: number } };
  return { img, pvs, holdMs: status.timing.quorumHoldMs };
}

async function ctlStatus(t: ExecutionContext, img: string): Promise<string> {
  const r = await runSanbox(t, ['ctl', img, '2', 'status']);
  t.is(r.code, 0, `ctl status: ${r.stderr}`);
  return r.stdout;
}

const quorate = (q: boolean, after = 0) => (e: { ev: string; quorate?: boolean; atMs: number }) => e.ev === 'quorum' && e.quorate === q && e.atMs >= after;

/**
 * A resumed peer may not go on writing: it fences itself (exit 3), or, when a late heartbeat write
 * of the other resumed peer (issued before the stop, landing after SIGCONT) gave node 2 quorum for a
 * moment, node 2 fences it first (the power fence: SIGKILL). Either way its last heartbeat block on
 * disk was written before the stop (seq is the wall-clock ms of the write, src/heartbeat): a block
 * written after SIGCONT would be a write past the self-fence deadline, whoever stopped it later.
 */
async function resumedPeerStops(t: ExecutionContext, img: string, p: NodeProc, stoppedAtMs: number, survivorLog: () => string[]): Promise<void> {
  const end = await exited(p.child, SELF_FENCE_EXIT_BOUND_MS);
  const log = p.lines.map((l) => `${l.t} ${l.event ?? ''} ${l.msg ?? ''}`).join('\n');
  const info = await readClusterImage(img);
  const sectorBytes = info.header.sectorSizeBytes;
  const block = Buffer.alloc(sectorBytes);
  const fd = fs.openSync(img, 'r');
  try {
    fs.readSync(fd, block, 0, sectorBytes, info.regions.get('heartbeat')!.payloadOffsetBytes + p.nodeId * sectorBytes);
  } finally {
    fs.closeSync(fd);
  }
  const last = parseO2hbBlock(block, { device: img }, p.nodeId);
  t.true(Number(last.seq) <= stoppedAtMs + STOP_SLACK_MS, `node ${p.nodeId}'s last heartbeat was written ${Number(last.seq) - stoppedAtMs} ms after its SIGSTOP\n${log}`);
  if (end.code === 3) return;
  const fencedBy2 = survivorLog().some((m) => new RegExp(`^node ${p.nodeId} fenced .*power:killed`).test(m));
  t.true(end.signal === 'SIGKILL' && fencedBy2, `node ${p.nodeId} after SIGCONT: fenced itself, or was fenced by node 2 (it ended with code ${end.code}, signal ${end.signal}; node 2 fenced it: ${fencedBy2}): ${p.stderr()}\n${log}`);
}

async function startPeers(t: ExecutionContext, img: string, w: IoNode, after: number): Promise<NodeProc[]> {
  const peers = [0, 1].map((n) => spawnNode(t, img, n));
  await w.wait((e) => quorate(true, after)(e) && (e.up ?? []).length === 3, JOIN_BOUND_MS, 'node 2 to see all three nodes up, with quorum');
  return peers;
}

/** Stops the peers; resolves with when they were stopped and when node 2 saw its quorum go. */
async function stall(peers: NodeProc[], w: IoNode): Promise<{ stoppedAtMs: number; lostAtMs: number }> {
  const stoppedAtMs = Date.now();
  for (const p of peers) p.child.kill('SIGSTOP');
  return { stoppedAtMs, lostAtMs: (await w.wait(quorate(false, stoppedAtMs), LOSS_BOUND_MS, 'node 2 to lose quorum')).atMs };
}

test.serial('no quorum: shared and private I/O held (local not), completes when quorum is back; a second loss past the hold fails it with EIO', async (t) => {
  const { img, pvs, holdMs } = await lab(t);
  t.log(`quorumHoldMs ${holdMs}`);
  const w = spawnIoNode(t, img, 2, pvs);
  await w.wait((e) => e.ev === 'joined', JOIN_BOUND_MS, 'node 2 to join');
  let peers = await startPeers(t, img, w, 0);
  for (const k of ['s', 'p', 'l']) w.send(`open ${k} vg${k}/lv`);
  // The shared LV once more, under its LV lock with lock-out (as a node doing I/O for lvmlockd-style users).
  w.send('openlocked k vgs/lv');
  for (const k of ['s', 'p', 'l', 'k']) {
    const a = await answered(w, `open:${k}`, 10_000);
    t.is(a.ev, 'done', `open ${k}: ${a.msg}`);
  }
  w.send('write 1 s 0');
  w.send('write 2 p 0');
  for (const id of ['1', '2']) t.is((await answered(w, id, 5000)).ev, 'done');

  // Phase 1: quorum lost, the I/O held, quorum back, the I/O done.
  const { stoppedAtMs, lostAtMs: lostAt } = await stall(peers, w);
  t.log(`node 2 lost quorum ${Date.now() - lostAt} ms ago`);
  w.send('write 3 s 4096');
  w.send('read 4 p 0');
  w.send('write 5 l 0');
  w.send('write 11 k 12288');
  const local = await answered(w, '5', 5000);
  t.is(local.ev, 'done', 'a local container is not held');
  await new Promise((r) => setTimeout(r, HELD_WATCH_MS));
  t.is(w.answer('3'), undefined, 'the shared write is held: neither done nor failed');
  t.is(w.answer('4'), undefined, 'the private read is held');
  t.is(w.answer('11'), undefined, 'the write through the LV-locked device is held');
  const held = await ctlStatus(t, img);
  t.regex(held, /Cluster I\/O:\s+I\/O held: no quorum since \d{4}-\d\d-\d\dT\S+: 3 waiting, EIO after \d+ ms/);
  t.regex(held, /Quorum:\s+NO/);

  // The stalled nodes, resumed, fence themselves: they were stopped past their self-fence deadline.
  for (const p of peers) p.child.kill('SIGCONT');
  for (const p of peers) await resumedPeerStops(t, img, p, stoppedAtMs, () => w.events.map((e) => (e.ev === 'log' ? (e.msg ?? '') : '')));
  t.is(w.answer('3'), undefined, 'still held: no peer came back');
  const restartAt = Date.now();
  peers = await startPeers(t, img, w, restartAt);
  const [w3, r4] = [await answered(w, '3', holdMs), await answered(w, '4', holdMs)];
  t.is(w3.ev, 'done', `held write: ${w3.msg}`);
  t.is(r4.ev, 'done', `held read: ${r4.msg}`);
  t.is(r4.byte, 2, 'the held read read what was written before the loss');
  t.is((await answered(w, '11', 5000)).ev, 'done', 'the LV-locked write completes too');
  t.true(w3.atMs - lostAt < holdMs, `completed ${w3.atMs - lostAt} ms after the loss, inside the hold`);
  t.true(w3.atMs >= restartAt, 'completed only after the peers came back');
  w.send('read 6 s 4096');
  t.is((await answered(w, '6', 5000)).byte, 3, 'the held write landed');
  t.regex(await ctlStatus(t, img), /Cluster I\/O:\s+open \(quorum; 3 released, 0 failed/);

  // Phase 2: the restarted nodes count in the quorum base: stalling them takes quorum again, and
  // this time the hold runs out.
  for (const n of [0, 1]) await w.wait((e) => e.ev === 'log' && new RegExp(`^node ${n} fenced`).test(e.msg ?? ''), 10_000, `node 2 to fence the stalled incarnation of node ${n}`);
  const { lostAtMs: lost2 } = await stall(peers, w);
  w.send('write 7 s 8192');
  const failed = await answered(w, '7', holdMs + 5000);
  t.is(failed.ev, 'failed');
  t.is(failed.code, 'EIO');
  t.regex(failed.msg ?? '', /vgs\/lv: write at offset 8192 failed: node 2 has had no quorum since \S+ \(held \d+ ms, the limit\)/);
  const waited = failed.atMs - lost2;
  t.log(`held write failed ${waited} ms after the loss (hold ${holdMs} ms)`);
  t.true(waited >= holdMs - 50 && waited < holdMs + 3000, `failed ${waited} ms after the loss`);
  w.send('read 8 p 0');
  const r8 = await answered(w, '8', 2000);
  t.is(r8.code, 'EIO', 'after the hold ran out, new I/O fails at once');
  t.regex(await ctlStatus(t, img), /Cluster I\/O:\s+I\/O failing \(EIO\): no quorum since \S+, held the limit of \d+ ms \(3 released, 2 failed/);
  w.send('write 9 l 4096');
  t.is((await answered(w, '9', 5000)).ev, 'done', 'the local container still is not held');
  for (const p of peers) p.child.kill('SIGKILL');
});

test.serial('no quorum: a file put on a mounted ocfs2 volume is held (the node keeps heartbeating in the volume) and completes when quorum is back', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'qmnt']);
  const vol = await mkfs(dir, 'qmnt', 4);
  const n2 = await spawnMounted(t, img, 2, vol, 0);
  let peers = [0, 1].map((n) => spawnNode(t, img, n));
  for (const n of [0, 1]) await n2.waitLine(isEvent('up', n), JOIN_BOUND_MS, `node 2 to see node ${n} up`);
  const at = Date.now();
  for (const p of peers) p.child.kill('SIGSTOP');
  await n2.waitLine((l) => l.atMs >= at && /^node 2 has no quorum: I\/O to cluster volumes is held/.test(l.msg ?? ''), LOSS_BOUND_MS, 'node 2 to lose quorum');
  const local = path.join(dir, 'payload');
  const payload = 'written while node 2 had no quorum\n'.repeat(200);
  fs.writeFileSync(local, payload);
  const put = spawnChild(t, process.execPath, [SANBOX_BIN, 'ctl', img, '2', 'fs', 'put', vol, '/held.txt', local]);
  const putIo = collect(put);
  let putExitAtMs: number | undefined;
  put.once('exit', () => (putExitAtMs = Date.now()));
  await new Promise((r) => setTimeout(r, HELD_WATCH_MS));
  t.is(put.exitCode, null, `the put is held, not done or failed: ${putIo.err()}`);
  t.regex(await ctlStatus(t, img), /Cluster I\/O:\s+I\/O held: no quorum since \S+: [1-9]\d* waiting/);
  t.is(put.exitCode, null, `right before quorum can come back the put is still held: ${putIo.err()}`);
  for (const p of peers) p.child.kill('SIGCONT');
  for (const p of peers) await resumedPeerStops(t, img, p, at, () => n2.lines.map((l) => l.msg ?? ''));
  // The SIGCONTed peers fenced themselves: still no quorum, so the put is still held.
  t.is(put.exitCode, null, `the put is still held while the peers are gone: ${putIo.err()}`);
  const back = Date.now();
  peers = [0, 1].map((n) => spawnNode(t, img, n));
  const done = await exited(put, 30_000);
  t.is(done.code, 0, `the held put completes once quorum is back: ${putIo.err()}`);
  t.true(putExitAtMs !== undefined && putExitAtMs >= back, `the put exited at ${putExitAtMs}, after the peers came back at ${back}`);
  const get = await runSanbox(t, ['ctl', img, '2', 'fs', 'get', vol, '/held.txt']);
  t.is(get.code, 0, get.stderr);
  t.is(get.stdout, payload);
  t.false(n2.lines.some((l) => /SELF-FENCED/.test(l.msg ?? '')), 'node 2 never fenced itself: its volume heartbeat was not held');
});
