// A fenced node can write nothing anywhere: three `sanbox node` processes heartbeat through the
// cluster image, an ocfs2 volume on an LV that spans two PVs (every PV opened through the node's
// device provider, with its fence gate) and a plain ocfs2 volume image. One is stopped (SIGSTOP)
// and fenced by the others (disk fence: its key preempted on every device); after SIGCONT not one
// of its writes lands on any PV or image, checked by reading the files directly: every o2hb block
// of node 2 and its node record are byte for byte what they were at the fence, and no new one
// appears anywhere.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { decodeO2hbBlock } from '../src/format/o2hb-block.js';
import { readClusterImage } from '../src/heartbeat/cluster-image.js';
import { clusterInit, isEvent, statusJson, spawnNode } from './helpers/heartbeat-nodes.js';
import { ownLockDir, runSanbox, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const VICTIM = 2;
const SECTOR_BYTES = 512;
/** Read the files in chunks this large (the PVs are sparse: most chunks are holes). */
const SCAN_CHUNK_BYTES = 4 * 2 ** 20;

/** Every sector of `file` that holds a valid o2hb block written by node `nodeId`: offset → bytes (hex). */
function blocksOf(file: string, nodeId: number): Map<number, string> {
  const out = new Map<number, string>();
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(SCAN_CHUNK_BYTES);
    for (let base = 0; base < size; base += SCAN_CHUNK_BYTES) {
      const n = fs.readSync(fd, buf, 0, Math.min(SCAN_CHUNK_BYTES, size - base), base);
      for (let off = 0; off + SECTOR_BYTES <= n; off += SECTOR_BYTES) {
        // Cheap filter first: the node byte, and a non-zero seq.
        if (buf[off + 8] !== nodeId || buf.readBigUInt64LE(off) === 0n) continue;
        const sector = buf.subarray(off, off + SECTOR_BYTES);
        const b = decodeO2hbBlock(sector);
        if (b.cksumValid && b.nodeId === nodeId) out.set(base + off, sector.toString('hex'));
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

async function nodeRecordSector(img: string, nodeId: number): Promise<string> {
  const info = await readClusterImage(img);
  const s = info.header.sectorSizeBytes;
  const buf = Buffer.alloc(s);
  const fd = fs.openSync(img, 'r');
  try {
    fs.readSync(fd, buf, 0, s, info.regions.get('nodes')!.payloadOffsetBytes + nodeId * s);
  } finally {
    fs.closeSync(fd);
  }
  return buf.toString('hex');
}

test('a node fenced while it writes through an LV spanning two PVs and an ocfs2 volume writes nothing more on any PV or image', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  const [pvA, pvB, vol] = ['pv-a.img', 'pv-b.img', 'vol.img'].map((f) => path.join(dir, f)) as [string, string, string];
  const devices = `${pvA},${pvB}`;
  for (const args of [
    ['disk', 'create', pvA, '--size', '160M'],
    ['disk', 'create', pvB, '--size', '160M'],
    ['pvcreate', pvA, pvB],
    ['vgcreate', 'vgf', pvA, pvB],
    // 256 MiB does not fit in one 160 MiB PV: the LV spans both.
    ['lvcreate', 'vgf', '-n', 'lvf', '-L', '256M', '--devices', devices],
    ['mkfs', 'vgf/lvf', '--slots', '3', '--devices', devices, '--cluster-stack', 'o2cb', '--cluster-name', 'lvfence'],
    ['disk', 'create', vol, '--size', '160M'],
    ['mkfs', vol, '--slots', '3', '--cluster-stack', 'o2cb', '--cluster-name', 'lvfence'],
  ]) {
    const r = await runSanbox(t, args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  const lvs = JSON.parse((await runSanbox(t, ['lvs', '--devices', devices, '-o', 'lv_name,devices', '--reportformat', 'json'])).stdout) as { report: { lv: { devices: string }[] }[] };
  t.deepEqual(new Set(lvs.report[0]!.lv.map((r) => r.devices.replace(/\(\d+\)$/, ''))), new Set([pvA, pvB]), 'the LV has a segment on each PV');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'lvfence']);

  const nodes = [0, 1, 2].map((n) => spawnNode(t, img, n, ['--volume', 'vgf/lvf', vol, '--devices', devices, '--fence', 'disk']));
  for (const a of nodes) for (const b of nodes) if (a !== b) await a.waitLine(isEvent('up', b.nodeId), 15_000, `node ${b.nodeId} up`);
  // A node is up (on the cluster image) before it has opened its VG/LV home (under the VG lock, after its lockspace is up) and heartbeats there.
  for (const a of nodes) await a.waitLine((l) => /^ready/.test(l.msg ?? ''), 15_000, `node ${a.nodeId} ready`);
  const files = [img, pvA, pvB, vol];
  // The victim heartbeats in all three regions: on the cluster image, on a PV (through the LV) and on the volume.
  const before = files.map((f) => blocksOf(f, VICTIM).size);
  t.is(before[0], 1, 'one block of node 2 on the cluster image');
  t.is(before[1]! + before[2]!, 1, 'one block of node 2 on the PVs');
  t.is(before[3], 1, 'one block of node 2 on the volume');

  const victim = nodes[VICTIM]!;
  victim.child.kill('SIGSTOP');
  t.teardown(() => void victim.child.kill('SIGCONT'));
  const fenced = await Promise.all([0, 1].map((n) => nodes[n]!.waitLine(isEvent('fenced', VICTIM), 10_000, 'node 2 fenced')));
  const fenceLog = [0, 1].flatMap((n) => nodes[n]!.lines).filter((l) => /node 2 fenced/.test(l.msg ?? '')).map((l) => l.msg!);
  t.log(fenceLog[0]);
  // Some survivor preempted the victim's key on every device: the image and both PVs and the volume.
  for (const f of [img, pvA, pvB, vol]) t.true(fenceLog.some((m) => m.includes(`preempt:preempted(${f}`) || m.includes(`${f}, key`)), `key preempted on ${path.basename(f)}`);
  t.true(fenced.length === 2);

  const snapshot = files.map((f) => blocksOf(f, VICTIM));
  const record = await nodeRecordSector(img, VICTIM);
  victim.child.kill('SIGCONT');
  const ex = await victim.exited;
  t.is(ex.code, 3, `it stops after fencing itself (${JSON.stringify(ex)}); stderr: ${victim.stderr()}`);
  await new Promise((r) => setTimeout(r, 300));
  for (const [i, f] of files.entries()) t.deepEqual(blocksOf(f, VICTIM), snapshot[i], `no write of node 2 landed on ${path.basename(f)}`);
  t.is(await nodeRecordSector(img, VICTIM), record, 'its node record is unchanged');
  t.deepEqual((await statusJson(t, img)).slots.map((s) => s.state), ['up', 'up', 'fenced']);
});
