// The mount hook (issue 17 item 1), with separate `sanbox node` processes on one volume made by
// the REAL mkfs.ocfs2, judged by the REAL debugfs.ocfs2 (slotmap, journal flags, lock names) and
// fsck.ocfs2 -fn: two nodes mount into different slots, a third is refused when the slots are
// full, a volume of another cluster or with a feature sanbox does not write is refused with
// nothing written, a clean umount leaves a clean volume, and a node killed -9 while mounted leaves
// its slot and DIRTY journal until, after it was fenced, `sanbox recover` frees them.

import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { openDevice } from '../src/disk/open.js';
import { heartbeatRegion } from '../src/fs/heartbeat-region.js';
import type { NodeStatus } from '../src/node/node.js';
import type { ClusterStatus } from '../src/node/status.js';
import { clusterInit, isEvent, spawnNode, type NodeProc } from './helpers/heartbeat-nodes.js';
import { startNbdkit } from './helpers/nbdkit.js';
import { journalDirty, mkfs, SANBOX_FEATURES, slotMap } from './helpers/mounted-volume.js';
import { debugfs, fsckOk } from './helpers/ocfs2-oracle.js';
import { ownLockDir, runSanbox, tempDir, waitFor } from './helpers/tmp.js';

ownLockDir(test);
// Serial: each test runs three or four node processes with 100 ms heartbeats, and the machine is shared.

/** The volume's bytes with its heartbeat region zeroed (live nodes write there every interval). */
async function bytesBesidesHeartbeat(vol: string): Promise<Buffer> {
  const dev = await openDevice(vol, { guard: 'none', readOnly: true });
  const where = await heartbeatRegion(dev);
  await dev.close();
  const b = fs.readFileSync(vol);
  b.fill(0, where.offsetBytes, where.offsetBytes + where.blockCount * where.blockSizeBytes);
  return b;
}

async function ctl(t: ExecutionContext, img: string, node: number, ...args: string[]) {
  return runSanbox(t, ['ctl', img, String(node), ...args], { timeoutMs: 30_000 });
}

async function status(t: ExecutionContext, img: string, node: number): Promise<NodeStatus> {
  const r = await ctl(t, img, node, 'status', '--json');
  t.is(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as NodeStatus;
}

async function clusterStatus(t: ExecutionContext, img: string, vol: string): Promise<ClusterStatus> {
  const r = await runSanbox(t, ['cluster', 'status', img, '--volume', vol, '--json']);
  t.is(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as ClusterStatus;
}

const joined = (p: NodeProc, peers: number[]) => Promise.all(peers.map((q) => p.waitLine(isEvent('up', q), 15_000, `node ${q} up`)));

test.serial('two nodes mount into different slots (SUPER/journal META locks by ocfs2\'s names); a third is refused in one line with nothing written; after umount fsck -fn is clean and the slot map empty', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '4', '--name', 'mcl']);
  const vol = await mkfs(dir, 'mcl', 2);
  const n1 = spawnNode(t, img, 1, ['--mount', vol]);
  await n1.waitLine((l) => /^mounted .* in slot 0$/.test(l.msg ?? ''), 15_000, 'node 1 mounted');
  const others = [2, 3].map((n) => spawnNode(t, img, n));
  await Promise.all([joined(n1, [2, 3]), joined(others[0]!, [1, 3]), joined(others[1]!, [1, 2])]);

  const m2 = await ctl(t, img, 2, 'mount', vol);
  t.is(m2.code, 0, m2.stderr);
  t.regex(m2.stdout, /^Node 2 mounted .* in slot 1\.\n$/);
  t.deepEqual([...(await slotMap(vol))], [[0, 1], [1, 2]], 'debugfs.ocfs2 slotmap');
  t.true(await journalDirty(vol, 0));
  t.true(await journalDirty(vol, 1));
  // cluster status names which node has the volume in which slot.
  const cs = await clusterStatus(t, img, vol);
  t.deepEqual(cs.mounts, [{ volume: vol, slot: 0, node: 1, journalDirty: true }, { volume: vol, slot: 1, node: 2, journalDirty: true }]);
  t.deepEqual([1, 2].map((n) => cs.slots[n]!.state), ['up', 'up']);

  // Each node holds its own journal's META lock EX, named as debugfs.ocfs2 encodes it.
  for (const [node, slot] of [[1, 0], [2, 1]] as const) {
    const name = (await debugfs(vol, `encode //journal:000${slot}`)).trim();
    t.regex(name, /^M0{6}[0-9a-f]{24}$/);
    const s = await status(t, img, node);
    t.deepEqual(s.mounts.map((m) => [m.volume, m.slot]), [[vol, slot]]);
    const lock = s.locks.find((l) => l.resource.endsWith(`:${name}`));
    t.is(lock?.mode, 'EX', `node ${node} holds ${name} EX: ${JSON.stringify(s.locks)}`);
    // The superblock lock is taken only while the slot map changes.
    t.false(s.locks.some((l) => l.resource.includes(':S000000')));
  }

  // Slots full: one line, and nothing but the live nodes' heartbeats changes.
  const before = await bytesBesidesHeartbeat(vol);
  const m3 = await ctl(t, img, 3, 'mount', vol);
  t.is(m3.code, 1);
  t.is(m3.stderr.trim().split('\n').length, 1, m3.stderr);
  t.regex(m3.stderr, /cannot mount: every one of its 2 slots is taken \(slot 0: node 1, slot 1: node 2\)/);
  t.true((await bytesBesidesHeartbeat(vol)).equals(before), 'a refused mount writes nothing');
  t.deepEqual((await status(t, img, 3)).mounts, []);

  // Umount: by command (node 2) and by a clean stop (node 1 unmounts before it leaves).
  const u2 = await ctl(t, img, 2, 'umount', vol);
  t.is(u2.code, 0, u2.stderr);
  t.false(await journalDirty(vol, 1));
  t.deepEqual([...(await slotMap(vol))], [[0, 1]]);
  t.false((await status(t, img, 2)).regions.some((r) => r.startsWith(vol)), 'node 2 left the volume\'s region');
  n1.child.kill('SIGTERM');
  t.is((await n1.exited).code, 0, n1.stderr());
  for (const p of others) p.child.kill('SIGTERM');
  for (const p of others) await p.exited;

  t.deepEqual([...(await slotMap(vol))], [], 'slot map empty after both umounts');
  t.false(await journalDirty(vol, 0));
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
  // The o2hb blocks the nodes left say generation 0 (a clean leave of the region).
  t.notRegex(await debugfs(vol, 'hb'), /^\s+\d+:\s+\d+\s+[0-9a-f]{16}\s+(?!0{16})[0-9a-f]{16}/m);
});

test.serial('a volume of another cluster, or with a feature sanbox does not write, is refused in one line naming why, nothing written', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '2', '--name', 'mcl']);
  const foreign = await mkfs(dir, 'other', 2, `--fs-features=${SANBOX_FEATURES}`, 'foreign.img');
  const featured = await mkfs(dir, 'mcl', 2, '--fs-feature-level=default', 'featured.img');
  const before = [fs.readFileSync(foreign), fs.readFileSync(featured)];

  // At start: the node exits 1 with one line.
  const n0 = spawnNode(t, img, 0, ['--mount', foreign]);
  t.is((await n0.exited).code, 1);
  t.regex(n0.stderr(), /foreign\.img: cannot mount: it belongs to cluster 'other', this node's cluster is 'mcl'/);
  t.is(n0.stderr().trim().split('\n').length, 1, n0.stderr());

  // On a running node.
  const n1 = spawnNode(t, img, 1);
  await n1.waitLine((l) => /ready after/.test(l.msg ?? ''), 15_000, 'node 1 ready');
  const r = await ctl(t, img, 1, 'mount', featured);
  t.is(r.code, 1);
  t.regex(r.stderr, /featured\.img: cannot mount: feature .*xattr.* is one sanbox does not write/);
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  // Volumes of no cluster: made with -M local, or without a cluster stack.
  const local = path.join(dir, 'local.img');
  const plain = path.join(dir, 'plain.img');
  for (const [v, extra] of [[local, ['-M', 'local']], [plain, []]] as const) {
    for (const args of [['disk', 'create', v, '--size', '64M'], ['mkfs', v, '--slots', '2', ...extra]]) {
      const made = await runSanbox(t, args);
      t.is(made.code, 0, made.stderr);
    }
  }
  const beforeNoCluster = [fs.readFileSync(local), fs.readFileSync(plain)];
  const rl = await ctl(t, img, 1, 'mount', local);
  t.regex(rl.stderr, /local\.img: cannot mount: it is a local \(-M local\) volume, not a cluster volume/);
  const rp = await ctl(t, img, 1, 'mount', plain);
  t.regex(rp.stderr, /plain\.img: cannot mount: it records no cluster stack and name \(feature clusterinfo\); make it with --cluster-stack=o2cb --cluster-name=mcl/);
  t.deepEqual([rl.code, rp.code], [1, 1]);
  t.true(fs.readFileSync(local).equals(beforeNoCluster[0]!) && fs.readFileSync(plain).equals(beforeNoCluster[1]!), 'nothing written to either');
  t.deepEqual((await status(t, img, 1)).mounts, []);
  const r2 = await ctl(t, img, 1, 'umount', featured);
  t.is(r2.code, 1);
  t.regex(r2.stderr, /does not have it mounted/);
  n1.child.kill('SIGTERM');
  await n1.exited;

  t.true(fs.readFileSync(foreign).equals(before[0]!), 'foreign volume unchanged (not even a heartbeat)');
  t.true(fs.readFileSync(featured).equals(before[1]!), 'featured volume unchanged (not even a heartbeat)');
});

/**
 * Three nodes of cluster 'mcl' on a fresh volume, node 1 with it mounted; node 1 is killed -9 and
 * waited for until node 2 reports it fenced. Returns the survivors and node 1's slot.
 */
async function mountedNodeKilled(t: ExecutionContext) {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'mcl']);
  const vol = await mkfs(dir, 'mcl', 2);
  const n1 = spawnNode(t, img, 1, ['--mount', vol]);
  const n2 = spawnNode(t, img, 2);
  const n0 = spawnNode(t, img, 0);
  await n1.waitLine((l) => /^mounted /.test(l.msg ?? ''), 15_000, 'node 1 mounted');
  await Promise.all([joined(n2, [0, 1]), joined(n0, [1, 2])]);
  const slotOf1 = [...(await slotMap(vol))].find(([, node]) => node === 1)![0];

  n1.child.kill('SIGKILL');
  await n1.exited;
  await n2.waitLine(isEvent('fenced', 1), 20_000, 'node 1 fenced');
  return { img, vol, n2, n0, slotOf1 };
}

test.serial('a node killed -9 while mounted leaves its slot and DIRTY journal; after it is fenced, sanbox recover frees them and fsck -fn is clean', async (t) => {
  const { img, vol, n2, n0 } = await mountedNodeKilled(t);
  t.deepEqual([...(await slotMap(vol))], [[0, 1]], 'the dead node\'s slot stays taken');
  t.true(await journalDirty(vol, 0), 'its journal stays DIRTY');
  const cs = await clusterStatus(t, img, vol);
  t.deepEqual(cs.mounts, [{ volume: vol, slot: 0, node: 1, journalDirty: true }]);
  t.is(cs.slots[1]!.state, 'fenced');

  const rec = await runSanbox(t, ['recover', vol, '--observe-ms', '1000', '--json'], { timeoutMs: 30_000 });
  t.is(rec.code, 0, rec.stderr);
  const slots = JSON.parse(rec.stdout) as { slot: number; dirty: boolean; slotCleared: boolean; recoveryGenerationAfter: number }[];
  t.like(slots[0], { slot: 0, dirty: true, slotCleared: true, recoveryGenerationAfter: 1 });
  t.deepEqual([...(await slotMap(vol))], []);
  t.false(await journalDirty(vol, 0));
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);

  // The node comes back and mounts again (its slot is free now; the recovery generation is kept).
  const back = spawnNode(t, img, 1, ['--mount', vol]);
  await back.waitLine((l) => /^mounted .* in slot 0$/.test(l.msg ?? ''), 20_000, 'node 1 mounted again');
  await waitFor(() => back.lines.some((l) => /ready after/.test(l.msg ?? '')), 5_000, 'ready');
  for (const p of [back, n2, n0]) p.child.kill('SIGTERM');
  for (const p of [back, n2, n0]) await p.exited;
  t.deepEqual([...(await slotMap(vol))], []);
});

test.serial('a node killed -9 while mounted (no survivor has the volume mounted, so none recovers it) and restarted after it was fenced takes its own slot again, replays its dirty journal (recovery generation + 1) and unmounts clean', async (t) => {
  const { img, vol, n2, n0, slotOf1 } = await mountedNodeKilled(t);
  t.true(await journalDirty(vol, slotOf1));

  const back = spawnNode(t, img, 1, ['--mount', vol]);
  await back.waitLine((l) => new RegExp(`^mounted .* in slot ${slotOf1} \\(its journal was dirty and was replayed\\)$`).test(l.msg ?? ''), 20_000, 'node 1 mounted again in its own slot');
  t.regex(await debugfs(vol, `stat //journal:000${slotOf1}`), /Recovery Generation: 1\b/);
  t.true(await journalDirty(vol, slotOf1), 'DIRTY again: in use');
  for (const p of [back, n2, n0]) p.child.kill('SIGTERM');
  for (const p of [back, n2, n0]) t.is((await p.exited).code, 0, p.stderr());
  t.deepEqual([...(await slotMap(vol))], []);
  t.false(await journalDirty(vol, slotOf1));
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
});

test.serial('a volume on VG/LV mounts and unmounts through the node\'s provider (every PV with the node\'s fence gate); cluster status --volume VG/LV shows the slots', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  const pv = path.join(dir, 'pv.img');
  for (const args of [
    ['disk', 'create', pv, '--size', '200M'],
    ['pvcreate', pv],
    ['vgcreate', 'vgm', pv],
    ['lvcreate', 'vgm', '-n', 'lvm', '-L', '128M', '--devices', pv],
    ['mkfs', 'vgm/lvm', '--slots', '2', '--devices', pv, '--cluster-stack', 'o2cb', '--cluster-name', 'mlv'],
  ]) {
    const r = await runSanbox(t, args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  await clusterInit(t, [img, '--nodes', '2', '--name', 'mlv']);
  const n0 = spawnNode(t, img, 0, ['--mount', 'vgm/lvm', '--devices', pv]);
  const n1 = spawnNode(t, img, 1, ['--devices', pv]);
  await n0.waitLine((l) => /^mounted vgm\/lvm in slot 0$/.test(l.msg ?? ''), 15_000, 'node 0 mounted');
  await joined(n1, [0]);
  const m1 = await ctl(t, img, 1, 'mount', 'vgm/lvm');
  t.is(m1.code, 0, m1.stderr);
  const statusOf = async (): Promise<ClusterStatus> => {
    const r = await runSanbox(t, ['cluster', 'status', img, '--volume', 'vgm/lvm', '--devices', pv, '--json']);
    t.is(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ClusterStatus;
  };
  t.deepEqual((await statusOf()).mounts, [{ volume: 'vgm/lvm', slot: 0, node: 0, journalDirty: true }, { volume: 'vgm/lvm', slot: 1, node: 1, journalDirty: true }]);
  t.true((await status(t, img, 1)).devices.some((d) => d.name === pv), 'node 1 opened the PV through its provider');
  for (const p of [n0, n1]) p.child.kill('SIGTERM');
  for (const p of [n0, n1]) t.is((await p.exited).code, 0, p.stderr());
  t.deepEqual((await statusOf()).mounts, []);
});

test.serial('a volume served over nbd:// (nbdkit) mounts into two slots and unmounts; debugfs and fsck judge the file behind the export', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'mcl']);
  const vol = await mkfs(dir, 'mcl', 2);
  const srv = await startNbdkit({ dir });
  t.teardown(() => srv.stop());
  const uri = srv.uri('v.img');
  const n1 = spawnNode(t, img, 1, ['--mount', uri]);
  const n2 = spawnNode(t, img, 2);
  await n1.waitLine((l) => /^mounted .* in slot 0$/.test(l.msg ?? ''), 15_000, 'node 1 mounted over NBD');
  await joined(n2, [1]);
  const m2 = await ctl(t, img, 2, 'mount', uri);
  t.is(m2.code, 0, m2.stderr);
  t.deepEqual([...(await slotMap(vol))], [[0, 1], [1, 2]]);
  t.deepEqual((await status(t, img, 2)).mounts.map((m) => [m.volume, m.slot]), [[uri, 1]]);
  for (const p of [n1, n2]) p.child.kill('SIGTERM');
  for (const p of [n1, n2]) t.is((await p.exited).code, 0, p.stderr());
  t.deepEqual([...(await slotMap(vol))], []);
  t.false(await journalDirty(vol, 0));
  t.false(await journalDirty(vol, 1));
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
});
