// Separate OS processes on one cluster image: 4 `sanbox node` processes see each other; kill -9
// of one is declared dead within the bound and fenced; a duplicate node number is refused.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { encodeO2hbBlock } from '../src/format/o2hb-block.js';
import { readClusterImage } from '../src/heartbeat/cluster-image.js';
import { controlRequest, controlSocketPath } from '../src/node/control.js';
import { clusterInit, isEvent, statusJson, spawnNode, type NodeProc } from './helpers/heartbeat-nodes.js';
import { runSanbox, tempDir } from './helpers/tmp.js';

const DEAD_MS = 2000; // the local preset: 100 ms × 20
/** Bound on kill → down: the dead time, plus a read interval, plus scheduling slack on a loaded 2-core box. */
const DETECT_BOUND_MS = DEAD_MS + 100 + 1400;

async function initCluster(t: import('ava').ExecutionContext, nodes: number): Promise<string> {
  const img = path.join(tempDir(t), 'cluster.img');
  await clusterInit(t, [img, '--nodes', String(nodes), '--name', 'mp', '--node-names', Array.from({ length: nodes }, (_, i) => `n${i}`).join(',')]);
  return img;
}

async function allSeeEachOther(nodes: NodeProc[], timeoutMs: number): Promise<void> {
  await Promise.all(nodes.flatMap((a) => nodes.filter((b) => b !== a).map((b) => a.waitLine(isEvent('up', b.nodeId), timeoutMs, `node ${b.nodeId} up`))));
}

test('4 node processes come up and see each other; kill -9 of one is declared dead within the bound and fenced by the others', async (t) => {
  const img = await initCluster(t, 4);
  const nodes = [0, 1, 2, 3].map((n) => spawnNode(t, img, n));
  await allSeeEachOther(nodes, 10_000);
  const status1 = await statusJson(t, img);
  t.deepEqual(status1.slots.map((s) => s.state), ['up', 'up', 'up', 'up']);
  t.deepEqual(status1.slots.map((s) => s.pid), nodes.map((n) => n.child.pid));
  t.deepEqual(status1.slots.map((s) => s.name), ['n0', 'n1', 'n2', 'n3']);

  const victim = nodes[2]!;
  const killedAtMs = Date.now();
  victim.child.kill('SIGKILL');
  const survivors = nodes.filter((n) => n !== victim);
  const downs = await Promise.all(survivors.map((s) => s.waitLine(isEvent('down', 2), DETECT_BOUND_MS + 2000, 'node 2 down')));
  for (const d of downs) {
    const latencyMs = d.atMs - killedAtMs;
    t.log(`node ${d.node} declared node 2 dead ${latencyMs} ms after kill -9`);
    t.true(latencyMs >= DEAD_MS - 300, `not before the dead time (${latencyMs} ms)`);
    t.true(latencyMs <= DETECT_BOUND_MS, `within ${DETECT_BOUND_MS} ms (${latencyMs} ms)`);
  }
  const fenced = await Promise.all(survivors.map((s) => s.waitLine(isEvent('fenced', 2), 5000, 'node 2 fenced')));
  for (const f of fenced) t.true(f.atMs >= downs.find((d) => d.node === f.node)!.atMs, 'fenced after declared dead');
  const fenceLog = survivors.flatMap((s) => s.lines).filter((l) => l.msg?.startsWith('node 2 fenced'));
  t.log(fenceLog.map((l) => `node ${l.node}: ${l.msg}`).join('\n'));
  t.true(fenceLog.some((l) => /preempt:preempted/.test(l.msg!)), 'one survivor removed the victim key');
  // No survivor saw any other node die.
  for (const s of survivors) t.deepEqual(s.lines.filter((l) => l.event === 'down').map((l) => l.peer), [2]);
  const status2 = await statusJson(t, img);
  t.deepEqual(status2.slots.map((s) => s.state), ['up', 'up', 'fenced', 'up']);

  // The others leave cleanly: peers see "left" at once, not after the dead time.
  nodes[3]!.child.kill('SIGTERM');
  t.is((await nodes[3]!.exited).code, 0);
  const left = await nodes[0]!.waitLine((l) => /node 3 down .*left/.test(l.msg ?? ''), 1000, 'node 3 left');
  t.truthy(left);
});

test('a duplicate node number is refused with a clear error', async (t) => {
  const img = await initCluster(t, 2);
  const a = spawnNode(t, img, 1);
  await a.waitLine((l) => /ready/.test(l.msg ?? ''), 10_000, 'ready');
  const r = await runSanbox(t, ['node', '--cluster', img, '--node', '1']);
  t.is(r.code, 1);
  t.regex(r.stderr, /node 1 is already running.*refusing to join as node 1/);
  // The first node was not disturbed.
  await new Promise((res) => setTimeout(res, 300));
  t.is(a.child.exitCode, null);
  t.false(a.lines.some((l) => /SELF-FENCED/.test(l.msg ?? '')));
  const outOfRange = await runSanbox(t, ['node', '--cluster', img, '--node', '2']);
  t.is(outOfRange.code, 1);
  t.regex(outOfRange.stderr, /node 2 is not a node of cluster 'mp' \(nodes 0\.\.1\)/);
});

test('joining a slot whose seq moves under another generation is refused (the on-disk probe, no local slot lock involved)', async (t) => {
  const img = await initCluster(t, 3);
  const info = await readClusterImage(img);
  const slot = info.regions.get('heartbeat')!.payloadOffsetBytes + 1 * 512;
  // A writer the slot lock cannot see (another machine, or the kernel): heartbeats in slot 1.
  const fd = fs.openSync(img, 'r+');
  let seq = BigInt(Date.now());
  const beat = () => fs.writeSync(fd, encodeO2hbBlock({ seq: seq++, nodeId: 1, generation: 0xfeedn, deadMs: 2000 }, 512), 0, 512, slot);
  beat();
  const timer = setInterval(beat, 50);
  t.teardown(() => {
    clearInterval(timer);
    fs.closeSync(fd);
  });
  const r = await runSanbox(t, ['node', '--cluster', img, '--node', '1']);
  t.is(r.code, 1);
  t.regex(r.stderr, /node 1 is already heartbeating in its slot \(generation 000000000000feed, seq moving\): refusing to join as node 1/);
  // Nothing of the refused node reached the disk: the slot still holds the other writer's generation.
  const b = Buffer.alloc(512);
  fs.readSync(fd, b, 0, 512, slot);
  t.is(b.readBigUInt64LE(0x10), 0xfeedn);
});

test('control socket: status and leave over JSON lines; cluster status --watch', async (t) => {
  const img = await initCluster(t, 2);
  const info = await readClusterImage(img);
  const nodes = [0, 1].map((n) => spawnNode(t, img, n));
  await allSeeEachOther(nodes, 10_000);
  const sock = controlSocketPath(info.config.runDir, 1);
  const st = (await controlRequest(sock, { cmd: 'status' })) as { ok: boolean; status: { nodeId: number; quorum: boolean; members: { state: string }[] } };
  t.true(st.ok);
  t.is(st.status.nodeId, 1);
  t.true(st.status.quorum);
  t.deepEqual(st.status.members.map((m) => m.state), ['up', 'up']);
  const nope = await controlRequest(sock, { cmd: 'nope' });
  t.false(nope.ok);
  t.regex(String(nope.error), /^unknown command 'nope' \(known: status, leave, .*lock, unlock, ([a-z-]+, )*mount, umount(, [a-z-]+)*\)$/);
  const watch = await runSanbox(t, ['cluster', 'status', img, '--watch', '50', '--count', '3', '--json']);
  t.is(watch.code, 0, watch.stderr);
  const frames = watch.stdout.trim().split('\n').map((l) => JSON.parse(l) as { slots: { state: string; ageMs: number }[] });
  t.is(frames.length, 3);
  for (const f of frames) t.deepEqual(f.slots.map((s) => s.state), ['up', 'up']);
  t.like(await controlRequest(sock, { cmd: 'leave' }), { ok: true, leaving: true });
  t.is((await nodes[1]!.exited).code, 0);
  await nodes[0]!.waitLine((l) => /node 1 down .*left/.test(l.msg ?? ''), 2000, 'node 1 left');
  // One vocabulary: the peer reports the clean leave as "left" (event and state), never "fenced".
  await nodes[0]!.waitLine((l) => l.event === 'left' && l.peer === 1, 2000, 'left event for node 1');
  t.false(nodes[0]!.lines.some((l) => l.event === 'fenced' && l.peer === 1));
  const after = await statusJson(t, img);
  t.deepEqual(after.slots.map((s) => s.state), ['up', 'left']);
});

test('a 4Kn cluster image (4096-byte heartbeat slots and node-record sectors): two nodes see each other', async (t) => {
  const img = path.join(tempDir(t), 'k4.img');
  await clusterInit(t, [img, '--nodes', '2', '--name', 'k4', '--sector-size', '4096']);
  const nodes = [0, 1].map((n) => spawnNode(t, img, n));
  await allSeeEachOther(nodes, 10_000);
  const st = await statusJson(t, img);
  t.deepEqual(st.slots.map((s) => [s.state, s.pid]), nodes.map((n) => ['up', n.child.pid]));
  const info = await readClusterImage(img);
  // Node 1's block sits at slot 1 × 4096 and fills its sector: bytes after 0x1C are zero.
  const b = Buffer.alloc(4096);
  const fd = fs.openSync(img, 'r');
  fs.readSync(fd, b, 0, 4096, info.regions.get('heartbeat')!.payloadOffsetBytes + 4096);
  fs.closeSync(fd);
  t.is(b.readUInt8(8), 1);
  t.true(b.subarray(0x1c).every((x) => x === 0));
});

test('a node that died before we started (its block never moves) is declared dead after the dead time and fenced', async (t) => {
  const img = await initCluster(t, 3);
  const early = spawnNode(t, img, 2);
  await early.waitLine((l) => /ready/.test(l.msg ?? ''), 10_000, 'ready');
  early.child.kill('SIGKILL');
  await early.exited;
  const startedAt = Date.now();
  const late = spawnNode(t, img, 0);
  const down = await late.waitLine(isEvent('down', 2), 8000, 'node 2 down (stale)');
  t.regex(late.lines.find((l) => /node 2 down/.test(l.msg ?? ''))!.msg!, /stale/);
  t.true(down.atMs - startedAt >= DEAD_MS, 'not before it was watched for the dead time');
  await late.waitLine(isEvent('fenced', 2), 5000, 'node 2 fenced');
  t.regex(late.lines.find((l) => /node 2 fenced/.test(l.msg ?? ''))!.msg!, /preempt:preempted/);
  t.false(late.lines.some((l) => l.event === 'up' && l.peer === 2));
  const st = await statusJson(t, img);
  t.deepEqual(st.slots.map((s) => s.state), ['up', 'free', 'fenced']);
});

test('two-node tie-break: the lower node fences a dead higher node; the higher node does not act on the lower one\'s death', async (t) => {
  const img = await initCluster(t, 2);
  const [n0, n1] = [0, 1].map((n) => spawnNode(t, img, n)) as [NodeProc, NodeProc];
  await allSeeEachOther([n0, n1], 10_000);
  n0.child.kill('SIGKILL');
  await n1.waitLine(isEvent('down', 0), 8000, 'node 0 down');
  await n1.waitLine((l) => /node 0 is dead but this node has no quorum/.test(l.msg ?? ''), 3000, 'no-quorum notice');
  await new Promise((r) => setTimeout(r, 1000));
  t.false(n1.lines.some((l) => l.event === 'fenced'), 'node 1 never fences node 0');
  const st = await statusJson(t, img);
  t.deepEqual(st.slots.map((s) => s.state), ['dead', 'up']);
  // And the other way round: node 0 (lower) fences a dead node 1.
  const img2 = await initCluster(t, 2);
  const [m0, m1] = [0, 1].map((n) => spawnNode(t, img2, n)) as [NodeProc, NodeProc];
  await allSeeEachOther([m0, m1], 10_000);
  m1.child.kill('SIGKILL');
  await m0.waitLine(isEvent('fenced', 1), 8000, 'node 1 fenced');
  t.deepEqual((await statusJson(t, img2)).slots.map((s) => s.state), ['up', 'fenced']);
});
