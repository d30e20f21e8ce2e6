// LVM commands as nodes of a cluster (issue 18 items 2, 7, 8), every command and node a separate OS
// process on the same images: commands given --cluster C --node N join as that node for the command
// (or go through running node N), take the global and VG locks as lvmlockd does and publish the VG
// seqno in the VG lock's value block; activation lives in a running node, which holds the LV lock
// (EX or PR) until -an; the cluster's device list in the cluster image carries a PV one node adds
// to every other node; a mount of VG/LV activates it first. The real lvm2 tools judge the metadata
// after the commands (pvck on every PV, vgs/lvs --shared, vgck as the owner of a private VG).
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { readSnapshot } from '../src/dlm/lock-manager.js';
import { decodeValBlk } from '../src/format/lvm-val-blk.js';
import { openRegion } from '../src/heartbeat/cluster-image.js';
import type { NodeStatus } from '../src/node/node.js';
import { readClusterDevices } from '../src/volume/cluster-devices.js';
import { vgLockResource } from '../src/volume/lvm-locks.js';
import { clusterInit, spawnNode, type NodeProc } from './helpers/heartbeat-nodes.js';
import { attachLoop, LVM_CONFIG, lvm, runTool, sanboxCli, warnings, type ToolResult } from './helpers/lvm-real.js';
import { ownLockDir, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 1024 * 1024;
/** A node is up (its control socket answers) within this after it was spawned. */
const JOIN_BOUND_MS = 15_000;

interface Lab {
  dir: string;
  img: string;
  pvs: string[];
}

/** A 3-node cluster image and three 64 MiB PVs; no SANBOX_DEVICES and no devices file: the cluster's list is all a node has. */
async function lab(t: ExecutionContext, pvCount = 3): Promise<Lab> {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'lab']);
  const pvs = Array.from({ length: pvCount }, (_, i) => path.join(dir, `pv${i}.img`));
  for (const p of pvs) fs.writeFileSync(p, ''), fs.truncateSync(p, 64 * MiB);
  return { dir, img, pvs };
}

function run(t: ExecutionContext, args: string[]): Promise<ToolResult> {
  return sanboxCli(t, args, { SANBOX_DEVICES: '' });
}

async function ok(t: ExecutionContext, args: string[]): Promise<string> {
  const r = await run(t, args);
  t.is(r.code, 0, `sanbox ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function refused(t: ExecutionContext, args: string[], re: RegExp): Promise<string> {
  const r = await run(t, args);
  t.is(r.code, 1, `sanbox ${args.join(' ')} must be refused: ${r.stdout}${r.stderr}`);
  t.regex(r.stderr.trim(), re);
  t.is(r.stderr.trim().split('\n').length, 1, 'one line');
  return r.stderr.trim();
}

const as = (l: Lab, node: number): string[] => ['--cluster', l.img, '--node', String(node)];

/** The VG lock's val_blk as the lockspace on the cluster image holds it. */
async function vgValue(l: Lab, vg: string): Promise<ReturnType<typeof decodeValBlk>> {
  const region = await openRegion(l.img, 'lockspace', { readOnly: true, guard: 'none' });
  try {
    const snap = await readSnapshot(region);
    const want = Buffer.from(vgLockResource(vg));
    const v = snap.lvbs.filter((e) => e.resource.equals(want) && e.valueSeq !== null).sort((a, b) => Number(b.valueSeq! - a.valueSeq!))[0];
    return v === undefined ? undefined : decodeValBlk(v.value);
  } finally {
    await region.closeAll();
  }
}

/** The real pvck is clean on every PV (through loop devices). */
async function pvckClean(t: ExecutionContext, loops: string[]): Promise<void> {
  for (const loop of loops) {
    const p = await lvm('pvck', [loop], [loop]);
    t.is(p.code, 0, `pvck ${loop}: ${p.stderr}`);
    t.deepEqual(warnings(p.stderr), [], `pvck ${loop}`);
  }
}

/** The real lvs of a shared VG (--shared: a host without lvmlockd shows shared VGs only so). */
async function realLvs(t: ExecutionContext, loops: string[], vg: string): Promise<Record<string, string>[]> {
  const r = await runTool('lvs', ['--devices', loops.join(','), '--config', LVM_CONFIG, '--shared', '--reportformat', 'json', '-o', 'lv_name,lv_size,vg_lock_type,vg_seqno', '--units', 'b', vg]);
  t.is(r.code, 0, `lvs --shared: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { report: { lv: Record<string, string>[] }[] }).report[0]!.lv;
}

async function nodeUp(t: ExecutionContext, l: Lab, n: number, extra: string[] = []): Promise<NodeProc> {
  const p = spawnNode(t, l.img, n, extra, { SANBOX_DEVICES: '' });
  await p.waitLine((x) => /ready after/.test(x.msg ?? ''), JOIN_BOUND_MS, `node ${n} ready`);
  return p;
}

async function status(t: ExecutionContext, l: Lab, n: number): Promise<NodeStatus> {
  return JSON.parse(await ok(t, ['ctl', l.img, String(n), 'status', '--json'])) as NodeStatus;
}

test('commands as nodes: vgcreate and vgextend take GL and VG ex and list the PVs in the cluster image; another node finds the VG with no device named; the seqno is in the VG lock\'s value block; the real tools agree', async (t) => {
  const l = await lab(t);
  await ok(t, ['pvcreate', ...l.pvs, ...as(l, 0)]);
  await ok(t, ['vgcreate', '--container', 'shared', 'vgs0', l.pvs[0]!, ...as(l, 0)]);
  t.deepEqual(await vgValue(l, 'vgs0'), { seqno: 1, removed: false });
  t.deepEqual((await readClusterDevices(l.img))!.filter((e) => e.vg === 'vgs0').map((e) => e.device), [l.pvs[0]]);
  // Node 1 names no device at all: the cluster's list is where it finds the VG.
  await ok(t, ['lvcreate', '-n', 'lv0', '-L', '8M', 'vgs0', ...as(l, 1)]);
  t.deepEqual(await vgValue(l, 'vgs0'), { seqno: 2, removed: false });
  await ok(t, ['vgextend', 'vgs0', l.pvs[1]!, ...as(l, 2)]);
  t.deepEqual((await readClusterDevices(l.img))!.filter((e) => e.vg === 'vgs0').map((e) => e.device).sort(), [l.pvs[0], l.pvs[1]].sort());
  // Node 1 grows the LV onto the PV node 2 added (60 MiB do not fit on the first PV).
  await ok(t, ['lvextend', '-L', '+60M', 'vgs0/lv0', ...as(l, 1)]);
  const seg = JSON.parse(await ok(t, ['lvs', '--segments', '--json', 'vgs0', ...as(l, 0)])) as { seg: { seg_pe_ranges: string }[] };
  t.true(seg.seg.some((s) => s.seg_pe_ranges.includes(l.pvs[1]!)), JSON.stringify(seg));
  const v = await vgValue(l, 'vgs0');
  const vgs = JSON.parse(await ok(t, ['vgs', '--json', ...as(l, 2)])) as { vg: { vg_name: string; vg_seqno: number }[] };
  t.is(vgs.vg.find((x) => x.vg_name === 'vgs0')?.vg_seqno, v!.seqno, 'the value block carries the seqno on disk');

  const loops = [await attachLoop(t, l.pvs[0]!), await attachLoop(t, l.pvs[1]!)];
  await pvckClean(t, loops);
  const lvs = await realLvs(t, loops, 'vgs0');
  t.deepEqual(lvs.map((x) => [x.lv_name, x.lv_size, x.vg_lock_type, x.vg_seqno]), [['lv0', `${68 * MiB}B`, 'dlm', String(v!.seqno)]]);

  // Without --node a shared VG is not changed (no lock), in one line; nothing written.
  await refused(t, ['lvcreate', '-n', 'lv1', '-L', '4M', 'vgs0', '--devices', l.pvs.join(',')], /shared \(lock_type dlm\); sanbox does not change it without that lock \(run the command as a node: --cluster IMG --node N\)/);
  t.deepEqual(await vgValue(l, 'vgs0'), v);
});

test('activation in running nodes: -aey holds the LV lock EX, another node\'s -aey/-asy fails at once naming it; -asy shares; ctl status and ctl lvm show it; -an lets go', async (t) => {
  const l = await lab(t, 2);
  await ok(t, ['pvcreate', ...l.pvs, ...as(l, 0)]);
  await ok(t, ['vgcreate', '--container', 'shared', 'vga', ...l.pvs, ...as(l, 0)]);
  await ok(t, ['lvcreate', '-n', 'lv0', '-L', '8M', 'vga', ...as(l, 0)]);
  // Not running: activation needs the node that will hold the lock.
  await refused(t, ['lvchange', '-aey', 'vga/lv0', ...as(l, 1)], /^sanbox: vga\/lv0: activation needs node 1 of cluster 'lab' running/);
  await nodeUp(t, l, 1);
  await nodeUp(t, l, 2);
  t.regex(await ok(t, ['ctl', l.img, '1', 'lvm', 'lvchange', '-aey', 'vga/lv0']), /Logical volume vga\/lv0 activated exclusively on node 1 \(LV lock lvm_vga:[\w-]{38}\)/);
  const t0 = performance.now();
  await refused(t, ['ctl', l.img, '2', 'lvm', 'lvchange', '-aey', 'vga/lv0'], /vga\/lv0: LV locked by node 1 \(exclusive\); exclusive activation refused on node 2$/);
  t.true(performance.now() - t0 < 10_000, 'a conflict is not queued');
  await refused(t, ['lvchange', '-asy', 'vga/lv0', ...as(l, 2)], /LV locked by node 1 \(exclusive\); shared activation refused on node 2$/);
  const s1 = await status(t, l, 1);
  t.deepEqual(s1.activations.map((a) => [a.lv, a.mode]), [['vga/lv0', 'ex']]);
  t.true(s1.locks.some((k) => k.resource === s1.activations[0]!.lock && k.mode === 'EX'));
  t.true(s1.devices.some((d) => d.name === l.pvs[0] && d.gate === 'open'), 'the LV\'s PV is open through the provider, with its fence gate');
  // cluster status reads the same from the lockspace on the image (names from the cluster's device list).
  const cs = JSON.parse(await ok(t, ['cluster', 'status', l.img, '--json'])) as { activeLvs: { lv: string; node: number; mode: string }[] };
  t.deepEqual(cs.activeLvs.map((a) => [a.lv, a.node, a.mode]), [['vga/lv0', 1, 'ex']]);
  // The same LVM command through a running node (ctl lvm) reads the VG under its locks.
  t.regex(await ok(t, ['ctl', l.img, '2', 'lvm', 'lvs', 'vga']), /lv0\s+vga/);
  // A layout change through running node 2 (the lock-out): refused at once with --nowait while node 1 has it active.
  await refused(t, ['ctl', l.img, '2', 'lvm', 'lvextend', '--nowait', '-L', '+4M', 'vga/lv0'], /vga\/lv0 is in use by node 1 \(EX\); not changed \(--nowait\)$/);
  t.regex(await ok(t, ['ctl', l.img, '1', 'lvm', 'lvchange', '-an', 'vga/lv0']), /deactivated on node 1/);
  t.regex(await ok(t, ['ctl', l.img, '2', 'lvm', 'lvextend', '-L', '+4M', 'vga/lv0']), /successfully resized/);
  t.deepEqual((await status(t, l, 1)).activations, []);
  // Shared activation by both.
  await ok(t, ['ctl', l.img, '1', 'lvm', 'lvchange', '-asy', 'vga/lv0']);
  await ok(t, ['lvchange', '-asy', 'vga/lv0', ...as(l, 2)]);
  await refused(t, ['lvchange', '-aey', 'vga/lv0', ...as(l, 0)], /activation needs node 0/);
  const s2 = await status(t, l, 2);
  t.deepEqual(s2.activations.map((a) => [a.lv, a.mode]), [['vga/lv0', 'sh']]);
  // A metadata change made through running node 2 while both hold it shared: lvcreate takes only the VG lock.
  await ok(t, ['ctl', l.img, '2', 'lvm', 'lvcreate', '-n', 'lv1', '-L', '4M', 'vga']);
  await pvckClean(t, [await attachLoop(t, l.pvs[0]!), await attachLoop(t, l.pvs[1]!)]);
});

test('container rules: a non-owner activates nothing in a private container (naming the owner), nobody in a deported one; vgexport is refused while a node has an LV active; nothing is written', async (t) => {
  const l = await lab(t, 1);
  await ok(t, ['pvcreate', l.pvs[0]!, ...as(l, 0)]);
  await ok(t, ['vgcreate', '--container', 'private', '--owner', '2', '--cluster', l.img, '--node', '0', 'vgp', l.pvs[0]!]);
  await ok(t, ['lvcreate', '-n', 'lv0', '-L', '8M', 'vgp', ...as(l, 0)]);
  await nodeUp(t, l, 1);
  await nodeUp(t, l, 2);
  const before = fs.readFileSync(l.pvs[0]!);
  await refused(t, ['ctl', l.img, '1', 'lvm', 'lvchange', '-aey', 'vgp/lv0'], /vgp\/lv0: volume group vgp is a private container owned by node 2 \(system ID lab-node2\); node 1 may not activate it$/);
  await refused(t, ['ctl', l.img, '1', 'lvm', 'lvchange', '-asy', 'vgp/lv0'], /node 1 may not activate it \(not even shared\)$/);
  t.true(fs.readFileSync(l.pvs[0]!).equals(before), 'a refused activation writes nothing');
  await ok(t, ['ctl', l.img, '2', 'lvm', 'lvchange', '-aey', 'vgp/lv0']);
  // Deporting while node 2 has it active: the LV lock says so (the host-local guard too).
  // A non-owner may not deport it while the owner lives (the failover rule), and the owner may not
  // while it has the LV active.
  await refused(t, ['vgexport', 'vgp', ...as(l, 0)], /its owner node 2 is alive .* make the change as node 2/);
  await refused(t, ['vgexport', 'vgp', ...as(l, 2)], /vgp\/lv0: (LV locked by another node; deporting volume group vgp \(an active LV\) refused on node 2|device busy: logical volume in use by another process)$/);
  await ok(t, ['ctl', l.img, '2', 'lvm', 'lvchange', '-an', 'vgp/lv0']);
  // The real vgck, as a host with the owner's system ID, finds the private VG clean.
  const loop0 = await attachLoop(t, l.pvs[0]!);
  const ck = await runTool('vgck', ['--devices', loop0, '--config', `${LVM_CONFIG} global/system_id_source="lvmlocal" local/system_id="lab-node2"`, 'vgp']);
  t.is(ck.code, 0, `vgck: ${ck.stderr}`);
  t.deepEqual(warnings(ck.stderr), []);
  await ok(t, ['vgexport', 'vgp', ...as(l, 2)]);
  const deported = fs.readFileSync(l.pvs[0]!);
  await refused(t, ['ctl', l.img, '2', 'lvm', 'lvchange', '-aey', 'vgp/lv0'], /volume group vgp is a deported container \(exported\): no node activates its logical volumes; vgimport it first$/);
  t.true(fs.readFileSync(l.pvs[0]!).equals(deported));
  await pvckClean(t, [loop0]);
  const vgs = await runTool('vgs', ['--devices', loop0, '--config', LVM_CONFIG, '--noheadings', '-o', 'vg_name,vg_exported', 'vgp']);
  t.regex(vgs.stdout, /vgp\s+exported/);
});

test('a PV one node adds is used by another running node with nothing edited by hand: node 1 activates an LV on the new PV through its provider', async (t) => {
  const l = await lab(t, 2);
  await ok(t, ['pvcreate', ...l.pvs, ...as(l, 0)]);
  await ok(t, ['vgcreate', '--container', 'shared', 'vgx', l.pvs[0]!, ...as(l, 0)]);
  // Node 1 runs with no device list of its own (no --devices, no SANBOX_DEVICES, no devices file).
  await nodeUp(t, l, 1);
  // An LV that lives on the new PV only: the first PV is full before the second joins.
  await ok(t, ['lvcreate', '-n', 'big', '-l', '100%FREE', 'vgx', ...as(l, 0)]);
  await ok(t, ['vgextend', 'vgx', l.pvs[1]!, ...as(l, 0)]);
  await ok(t, ['lvcreate', '-n', 'onnew', '-L', '8M', 'vgx', ...as(l, 0)]);
  const seg = JSON.parse(await ok(t, ['ctl', l.img, '1', 'lvm', 'lvs', '--segments', '--json', 'vgx/onnew'])) as { seg: { seg_pe_ranges: string }[] };
  t.true(seg.seg[0]!.seg_pe_ranges.startsWith(`${l.pvs[1]!}:`), seg.seg[0]!.seg_pe_ranges);
  await ok(t, ['ctl', l.img, '1', 'lvm', 'lvchange', '-aey', 'vgx/onnew']);
  const s = await status(t, l, 1);
  t.true(s.devices.some((d) => d.name === l.pvs[1] && d.gate === 'open'), `node 1 opened the new PV: ${s.devices.map((d) => d.name).join(', ')}`);
  await ok(t, ['ctl', l.img, '1', 'lvm', 'lvchange', '-an', 'vgx/onnew']);
  await pvckClean(t, [await attachLoop(t, l.pvs[0]!), await attachLoop(t, l.pvs[1]!)]);
});

test('a mounted ocfs2 on VG/LV: another node\'s lvextend locks the mount out, which drains, follows the new seqno and goes on (files put before and after read back); lvreduce and lvremove are refused naming the node that has it mounted, nothing changed', async (t) => {
  const l = await lab(t, 1);
  await ok(t, ['pvcreate', l.pvs[0]!, ...as(l, 0)]);
  await ok(t, ['vgcreate', '--container', 'shared', 'vgm', l.pvs[0]!, ...as(l, 0)]);
  await ok(t, ['lvcreate', '-n', 'fs', '-L', '40M', 'vgm', ...as(l, 0)]);
  const mk = await sanboxCli(t, ['mkfs', 'vgm/fs', '--slots', '2', '--cluster-stack', 'o2cb', '--cluster-name', 'lab', '--devices', l.pvs[0]!]);
  t.is(mk.code, 0, mk.stderr);
  const n1 = await nodeUp(t, l, 1);
  await ok(t, ['ctl', l.img, '1', 'mount', 'vgm/fs']);
  const before = path.join(l.dir, 'before.txt');
  const after = path.join(l.dir, 'after.txt');
  fs.writeFileSync(before, 'written before the lvextend\n'.repeat(500));
  fs.writeFileSync(after, 'written after the lvextend\n'.repeat(500));
  await ok(t, ['ctl', l.img, '1', 'fs', 'put', 'vgm/fs', '/before.txt', before]);
  const seq0 = (await status(t, l, 1)).activations[0]!.seqno!;

  // Node 0 (joined for the command) grows the LV under node 1's mount.
  t.regex(await ok(t, ['lvextend', 'vgm/fs', '-L', '+8M', ...as(l, 0)]), /Locked out node 1 in \d+ ms; change done in \d+ ms at seqno \d+\./);
  const s = await status(t, l, 1);
  t.is(s.state, 'up', 'node 1 was not fenced');
  t.deepEqual(s.mounts.map((m) => m.volume), ['vgm/fs'], 'the mount survived');
  t.like(s.activations[0], { lv: 'vgm/fs', mode: 'sh', lockouts: 1, failed: null });
  t.true(s.activations[0]!.seqno! > seq0, `seqno ${s.activations[0]!.seqno} after ${seq0}`);
  await ok(t, ['ctl', l.img, '1', 'fs', 'put', 'vgm/fs', '/after.txt', after]);
  for (const [name, local] of [['before.txt', before], ['after.txt', after]] as const) {
    const got = path.join(l.dir, `got-${name}`);
    await ok(t, ['ctl', l.img, '1', 'fs', 'get', 'vgm/fs', `/${name}`, got]);
    t.true(fs.readFileSync(got).equals(fs.readFileSync(local)), name);
  }

  // Shrinking or removing it would cut the disk from under the file system: refused up front.
  const seq1 = s.activations[0]!.seqno!;
  await refused(t, ['lvreduce', 'vgm/fs', '-L', '40M', '-y', ...as(l, 0)], /^sanbox: vgm\/fs is in use: the ocfs2 volume on it is mounted by node 1 \(slot \d\); umount it there before you reduce it$/);
  await refused(t, ['lvremove', 'vgm/fs', '-y', ...as(l, 0)], /^sanbox: vgm\/fs is in use: the ocfs2 volume on it is mounted by node 1 \(slot \d\); umount it there before you remove it$/);
  const s2 = await status(t, l, 1);
  t.like(s2.activations[0], { seqno: seq1, lockouts: 1 }, 'nothing changed, nobody locked out');
  await ok(t, ['ctl', l.img, '1', 'umount', 'vgm/fs']);
  await ok(t, ['lvremove', 'vgm/fs', '-y', ...as(l, 0)]);
  n1.child.kill('SIGTERM');
  const loop = await attachLoop(t, l.pvs[0]!);
  await pvckClean(t, [loop]);
});

test('mount on VG/LV: prepare activates the LV under its lock (shared in a shared container, so two nodes mount one ocfs2), umount deactivates; an exclusive activation elsewhere stops the mount before it touches the volume', async (t) => {
  const l = await lab(t, 1);
  await ok(t, ['pvcreate', l.pvs[0]!, ...as(l, 0)]);
  await ok(t, ['vgcreate', '--container', 'shared', 'vgm', l.pvs[0]!, ...as(l, 0)]);
  await ok(t, ['lvcreate', '-n', 'fs', '-L', '48M', 'vgm', ...as(l, 0)]);
  await ok(t, ['lvcreate', '-n', 'other', '-L', '8M', 'vgm', ...as(l, 0)]);
  // mkfs needs the devices named (it is no cluster command).
  const mk = await sanboxCli(t, ['mkfs', 'vgm/fs', '--slots', '3', '--cluster-stack', 'o2cb', '--cluster-name', 'lab', '--devices', l.pvs[0]!]);
  t.is(mk.code, 0, mk.stderr);
  await nodeUp(t, l, 1);
  await nodeUp(t, l, 2);
  await ok(t, ['ctl', l.img, '1', 'mount', 'vgm/fs']);
  await ok(t, ['ctl', l.img, '2', 'mount', 'vgm/fs']);
  for (const n of [1, 2]) {
    const s = await status(t, l, n);
    t.deepEqual(s.activations.map((a) => [a.lv, a.mode]), [['vgm/fs', 'sh']], `node ${n}`);
    t.deepEqual(s.mounts.map((m) => m.volume), ['vgm/fs']);
  }
  // Node 0 cannot have it exclusively while they have it mounted.
  await nodeUp(t, l, 0);
  await refused(t, ['ctl', l.img, '0', 'lvm', 'lvchange', '-aey', 'vgm/fs'], /LV locked by node (1|2) \(shared\)(, node (1|2) \(shared\))?; exclusive activation refused on node 0$/);
  await ok(t, ['ctl', l.img, '1', 'umount', 'vgm/fs']);
  t.deepEqual((await status(t, l, 1)).activations, []);
  // An LV another node has exclusively: the mount stops at activation, before reading the volume.
  await ok(t, ['ctl', l.img, '0', 'lvm', 'lvchange', '-aey', 'vgm/other']);
  await refused(t, ['ctl', l.img, '1', 'mount', 'vgm/other'], /vgm\/other: LV locked by node 0 \(exclusive\); shared activation refused on node 1$/);
  t.deepEqual((await status(t, l, 1)).activations, []);
  await ok(t, ['ctl', l.img, '2', 'umount', 'vgm/fs']);
  const loop = await attachLoop(t, l.pvs[0]!);
  await pvckClean(t, [loop]);
});
