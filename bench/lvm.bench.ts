// LVM benchmark: I/O through a sanbox logical volume (linear, and 2-stripe 64 KiB) beside the same
// I/O on the PV image file directly (promise path of FileDisk), measured in the same run; plus
// the cost of one VG metadata commit (text + header on every mda, flushed) beside a bare
// 512-byte write + flush; and 4 KiB random I/O through an LV with cluster locking (a node's LV
// lock, fence and quorum gates) beside the same LV without it and the PV directly
// (clusterLockingBench). Prints ops/s and the ratio to the baseline.
//
// Usage: npm run bench:lvm [-- --time-ms MS --json]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bench } from 'tinybench';
import { createImage, FileDisk, type BlockDevice } from '../src/disk/index.js';
import { commitContext, lvCreate, lvRename, pvCreate, vgCreate, withSession } from '../src/volume/manager.js';
import { openTarget } from '../src/volume/resolve.js';
import { arg } from './common.js';
import { Mode } from '../src/dlm/compat-matrix.js';
import { initClusterImage } from '../src/heartbeat/cluster-image.js';
import { openLockedLv } from '../src/node/lvm-cluster.js';
import { startNode } from '../src/node/node.js';
import { presetTiming } from '../src/timing.js';
import { clusterOfImage, containerChange } from '../src/volume/container.js';

const MiB = 1024 * 1024;
const IMAGE_BYTES = 256 * MiB;
/** The LVs cover this much; random offsets fall inside it. */
const LV_EXTENTS = 40;
/** I/Os per tinybench sample, so one sample is well above the timer resolution. */
const OPS_PER_SAMPLE = 32;

const CLUSTER_LOCKED = 'LV, cluster-locked';
/** Issue 18's goal for 4 KiB random I/O through a cluster-locked LV, against the same LV without locking. */
const CLUSTER_GOAL_RATIO = 0.95;

const timeMs = Number(arg('time-ms', '500'));
const asJson = process.argv.includes('--json');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanbox-bench-lvm-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
const imgs = ['a', 'b'].map((n) => path.join(dir, `${n}.img`));
/** A plain image (not a PV) for the baseline, so the baseline's writes cannot hit LVM metadata. */
const plainImg = path.join(dir, 'plain.img');
for (const img of [...imgs, plainImg]) createImage(img, { sizeBytes: IMAGE_BYTES, sectorSizeBytes: 512 });
await pvCreate(imgs, {});
const ctx = (): ReturnType<typeof commitContext> => commitContext('sanbox bench');
await vgCreate(imgs, imgs, 'vgbench', 8192, ctx());
await lvCreate(imgs, 'vgbench', 'lin', { size: { kind: 'extents', sign: '', extents: LV_EXTENTS } }, ctx());
await lvCreate(imgs, 'vgbench', 'str', { size: { kind: 'extents', sign: '', extents: LV_EXTENTS }, stripes: 2, stripeSizeSectors: 128 }, ctx());

const spanBytes = LV_EXTENTS * 4 * MiB;
const devices: [string, BlockDevice][] = [
  ['image file (baseline)', FileDisk.open(plainImg, { guard: 'none' })],
  ['linear LV', await openTarget('vgbench/lin', { devices: imgs })],
  ['striped LV (2 × 64 KiB)', await openTarget('vgbench/str', { devices: imgs })],
];
// Fill once so reads hit written (cached) blocks.
for (const [, dev] of devices) for (let off = 0; off < spanBytes; off += 4 * MiB) await dev.write(Buffer.alloc(4 * MiB, 1), off);

const block4k = Buffer.alloc(4096, 7);
const block1m = Buffer.alloc(MiB, 7);
const randOff = (size: number): number => Math.floor(Math.random() * ((spanBytes - size) / 4096)) * 4096;
const workloads: { name: string; run: (dev: BlockDevice) => Promise<void> }[] = [
  { name: '4 KiB random read', run: async (d) => { for (let i = 0; i < OPS_PER_SAMPLE; i++) await d.read(block4k, randOff(4096)); } },
  { name: '4 KiB random write', run: async (d) => { for (let i = 0; i < OPS_PER_SAMPLE; i++) await d.write(block4k, randOff(4096)); } },
  { name: '1 MiB sequential read', run: async (d) => { for (let i = 0; i < 4; i++) await d.read(block1m, ((i * MiB) % spanBytes)); } },
];

/** Operations per second from the median latency of one task call that does `perCall` ops. */
function opsPerSec(task: Bench['tasks'][number], perCall: number): number {
  const r = task.result;
  if (r.state !== 'completed') throw new Error(`${task.name}: ${r.state}${r.state === 'errored' ? `: ${String(r.error)}` : ''}`);
  return (perCall * 1000) / r.latency.p50;
}

const results: { workload: string; device: string; opsPerSec: number; ratio: number }[] = [];
for (const w of workloads) {
  const bench = new Bench({ time: timeMs, warmupTime: 50 });
  for (const [name, dev] of devices) bench.add(name, () => w.run(dev));
  await bench.run();
  const perOp = w.name.startsWith('1 MiB') ? 4 : OPS_PER_SAMPLE;
  const base = opsPerSec(bench.tasks[0]!, perOp);
  for (const task of bench.tasks) {
    const ops = opsPerSec(task, perOp);
    results.push({ workload: w.name, device: task.name, opsPerSec: Math.round(ops), ratio: ops / base });
  }
}
for (const [, dev] of devices) await dev.close();

// Metadata commit vs a bare sector write + flush (the commit point of one mda).
const raw = FileDisk.open(plainImg, { guard: 'none' });
const sector = Buffer.alloc(512);
let flip = 0;
const bench = new Bench({ time: timeMs, warmupTime: 50, iterations: 10 });
bench.add('512 B write + flush (baseline)', async () => {
  await raw.write(sector, IMAGE_BYTES - 512);
  await raw.flush();
});
bench.add('VG commit (lvrename: 2 PVs, 1 mda each)', async () => {
  await lvRename(imgs, 'vgbench', flip % 2 ? 'lin2' : 'lin', flip % 2 ? 'lin' : 'lin2', ctx());
  flip++;
});
await bench.run();
await raw.close();
const base = opsPerSec(bench.tasks[0]!, 1);
for (const task of bench.tasks) results.push({ workload: 'metadata', device: task.name, opsPerSec: Math.round(opsPerSec(task, 1)), ratio: opsPerSec(task, 1) / base });

results.push(...(await clusterLockingBench()));

if (asJson) process.stdout.write(JSON.stringify(results, null, 2) + '\n');
else {
  process.stdout.write(`${'workload'.padEnd(30)}${'device'.padEnd(54)}${'ops/s'.padStart(10)}  vs baseline\n`);
  for (const r of results) process.stdout.write(`${r.workload.padEnd(30)}${r.device.padEnd(54)}${String(r.opsPerSec).padStart(10)}  ${r.ratio.toFixed(2)}x\n`);
  for (const r of results.filter((x) => x.device.startsWith(CLUSTER_LOCKED))) {
    process.stdout.write(`goal: ${r.workload} through the cluster-locked LV ≥ ${CLUSTER_GOAL_RATIO} of the LV without locking: ${r.ratio.toFixed(2)}x, ${r.ratio >= CLUSTER_GOAL_RATIO ? 'met' : 'missed'}\n`);
  }
}

/**
 * I/O through an LV with cluster locking (issue 18's benchmark): a node joined in this process
 * (heartbeat, membership, fencing) holds the LV's lock EX with its layout generation
 * (openLockedLv), every PV opened through its provider (fence gate on every write) and the quorum
 * hold on every I/O (the VG is a shared container, so openLockedLv gives the LV the node's hold). Beside it, in the same run: the same I/O
 * through the same LV without any of that (openTarget), and on the PV image directly at the LV's
 * bytes. Promise path, queue depth 1 throughout. The goal: ≥ 0.95 of the unlocked LV for 4 KiB
 * random I/O.
 */
async function clusterLockingBench(): Promise<{ workload: string; device: string; opsPerSec: number; ratio: number }[]> {
  const cdir = path.join(dir, 'cluster');
  fs.mkdirSync(cdir);
  const img = path.join(cdir, 'cluster.img');
  await initClusterImage(img, { clusterName: 'benchlvm', nodeCount: 3, timing: presetTiming('local'), runDir: path.join(cdir, 'run') });
  const pv = path.join(cdir, 'pv.img');
  createImage(pv, { sizeBytes: IMAGE_BYTES, sectorSizeBytes: 512 });
  await pvCreate([pv], {});
  await vgCreate([pv], [pv], 'vgcl', 8192, ctx());
  await lvCreate([pv], 'vgcl', 'lv', { size: { kind: 'extents', sign: '', extents: LV_EXTENTS } }, ctx());
  await containerChange([pv], 'vgcl', { kind: 'shared', cluster: await clusterOfImage(img) }, ctx());
  const peStartBytes = await withSession([pv], { readOnly: true, guard: 'none' }, async (s) => s.vg('vgcl').vg.pvs[0]!.peStartSectors * 512);

  const node = await startNode({ clusterImage: img, nodeId: 0, control: false, devices: [pv] });
  const locked = await openLockedLv(node, 'vgcl/lv', Mode.EX);
  const pvDirect = FileDisk.open(pv, { guard: 'none' });
  // The PV at the LV's bytes: the LV is its first and only segment, from pe_start.
  const atLv: BlockDevice = {
    name: 'pv',
    sizeBytes: spanBytes,
    sectorSizeBytes: 512,
    readOnly: false,
    read: (b, o) => pvDirect.read(b, peStartBytes + o),
    write: (b, o) => pvDirect.write(b, peStartBytes + o),
    flush: () => pvDirect.flush(),
    discard: (o, l) => pvDirect.discard(peStartBytes + o, l),
    close: () => pvDirect.close(),
  };
  const devs: [string, BlockDevice][] = [
    ['LV, no cluster locking (baseline)', await openTarget('vgcl/lv', { devices: [pv] })],
    [`${CLUSTER_LOCKED}: LV lock EX, fence + quorum gates`, locked],
    ['PV directly, same bytes', atLv],
  ];
  const out: { workload: string; device: string; opsPerSec: number; ratio: number }[] = [];
  try {
    for (const [, d] of devs.slice(0, 1)) for (let off = 0; off < spanBytes; off += 4 * MiB) await d.write(Buffer.alloc(4 * MiB, 1), off);
    for (const w of workloads.filter((x) => x.name.startsWith('4 KiB'))) {
      const bench = new Bench({ time: timeMs, warmupTime: 50 });
      for (const [name, d] of devs) bench.add(name, () => w.run(d));
      await bench.run();
      const base = opsPerSec(bench.tasks[0]!, OPS_PER_SAMPLE);
      for (const task of bench.tasks) {
        const ops = opsPerSec(task, OPS_PER_SAMPLE);
        out.push({ workload: `${w.name}, cluster`, device: task.name, opsPerSec: Math.round(ops), ratio: ops / base });
      }
    }
  } finally {
    for (const [, d] of devs) await d.close();
    await node.stop();
  }
  return out;
}
