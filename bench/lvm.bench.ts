// LVM benchmark: I/O through a sanbox logical volume (linear, and 2-stripe 64 KiB) beside the same
// I/O on the PV image file directly (promise path of FileDisk), measured in the same run; plus
// the cost of one VG metadata commit (text + header on every mda, flushed) beside a bare
// 512-byte write + flush. Prints ops/s and the ratio to the baseline.
//
// Usage: npm run bench:lvm [-- --time-ms MS --json]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bench } from 'tinybench';
import { createImage, FileDisk, type BlockDevice } from '../src/disk/index.js';
import { commitContext, lvCreate, lvRename, pvCreate, vgCreate } from '../src/volume/manager.js';
import { openTarget } from '../src/volume/resolve.js';
import { arg } from './common.js';

const MiB = 1024 * 1024;
const IMAGE_BYTES = 256 * MiB;
/** The LVs cover this much; random offsets fall inside it. */
const LV_EXTENTS = 40;
/** I/Os per tinybench sample, so one sample is well above the timer resolution. */
const OPS_PER_SAMPLE = 32;

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

if (asJson) process.stdout.write(JSON.stringify(results, null, 2) + '\n');
else {
  process.stdout.write(`${'workload'.padEnd(24)}${'device'.padEnd(44)}${'ops/s'.padStart(10)}  vs baseline\n`);
  for (const r of results) process.stdout.write(`${r.workload.padEnd(24)}${r.device.padEnd(44)}${String(r.opsPerSec).padStart(10)}  ${r.ratio.toFixed(2)}x\n`);
}
