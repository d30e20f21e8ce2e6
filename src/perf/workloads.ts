// The block-I/O workloads, defined once: `sanbox bench` (src/perf/bench.ts) and the developer
// benchmarks (bench/disk.bench.ts, bench/nbd.bench.ts through bench/common.ts) all run these, and
// fio is given the same rw/bs/iodepth/rwmixread for its side of the comparison.

import fs from 'node:fs';

const MiB = 1024 * 1024;
/** Page size: the granularity of the page-cache preparation (reference/baselines.md, trap T1). */
const PAGE_BYTES = 4096;

export interface Workload {
  name: string;
  blockBytes: number;
  /** The operation; a mix (readPercent set) has op 'read' and sends the rest as writes. */
  op: 'read' | 'write';
  pattern: 'random' | 'sequential';
  /** I/Os kept outstanding; 1 when absent. */
  queueDepth?: number;
  /** A read/write mix: this share of reads in percent, the rest writes (fio's rwmixread). */
  readPercent?: number;
}

/** The developer benchmarks' five workloads, queue depth 1. */
export const WORKLOADS: readonly Workload[] = [
  { name: '4 KiB random read', blockBytes: 4096, op: 'read', pattern: 'random' },
  { name: '4 KiB random write', blockBytes: 4096, op: 'write', pattern: 'random' },
  { name: '512 B random write', blockBytes: 512, op: 'write', pattern: 'random' },
  { name: '1 MiB sequential read', blockBytes: MiB, op: 'read', pattern: 'sequential' },
  { name: '1 MiB sequential write', blockBytes: MiB, op: 'write', pattern: 'sequential' },
];

/** Queue depths `sanbox bench` sweeps for 4 KiB random reads and for the mix. */
export const BENCH_QUEUE_DEPTHS: readonly number[] = [1, 4, 8, 32];
/** The mix `sanbox bench` runs: 70% reads, the OLTP-like share fio's examples use. */
export const BENCH_MIX_READ_PERCENT = 70;

function named(w: Omit<Workload, 'name'>): Workload {
  const size = w.blockBytes >= MiB ? `${w.blockBytes / MiB} MiB` : w.blockBytes >= 1024 ? `${w.blockBytes / 1024} KiB` : `${w.blockBytes} B`;
  const what = w.readPercent !== undefined ? `${w.readPercent}/${100 - w.readPercent} read/write` : w.op;
  return { ...w, name: `${size} ${w.pattern} ${what} QD${w.queueDepth ?? 1}` };
}

/** `sanbox bench`'s workloads: random 4 KiB and 512 B read and write, 1 MiB sequential, a queue-depth sweep and a mix. */
export const BENCH_WORKLOADS: readonly Workload[] = [
  ...[4096, 512].flatMap((blockBytes) => (['read', 'write'] as const).map((op) => named({ blockBytes, op, pattern: 'random', queueDepth: 1 }))),
  ...(['read', 'write'] as const).map((op) => named({ blockBytes: MiB, op, pattern: 'sequential', queueDepth: 1 })),
  ...BENCH_QUEUE_DEPTHS.filter((qd) => qd > 1).map((queueDepth) => named({ blockBytes: 4096, op: 'read', pattern: 'random', queueDepth })),
  ...[1, 32].map((queueDepth) => named({ blockBytes: 4096, op: 'read', readPercent: BENCH_MIX_READ_PERCENT, pattern: 'random', queueDepth })),
];

/** A short stable id for a workload, as `--workloads` takes it: randread-4k-qd1, randrw70-4k-qd32, write-1m-qd1. */
export function workloadId(w: Workload): string {
  const size = w.blockBytes >= MiB ? `${w.blockBytes / MiB}m` : w.blockBytes >= 1024 ? `${w.blockBytes / 1024}k` : `${w.blockBytes}`;
  const rw = w.readPercent !== undefined ? `${w.pattern === 'random' ? 'randrw' : 'rw'}${w.readPercent}` : fioRw(w);
  return `${rw}-${size}-qd${w.queueDepth ?? 1}`;
}

/** Whether the workload writes (and so needs a device it may overwrite). */
export function writes(w: Workload): boolean {
  return w.op === 'write' || (w.readPercent !== undefined && w.readPercent < 100);
}

/** Reads every 4 KiB page of the first `imageBytes` of `fd` once in random order: small page-cache folios (trap T1). */
export function readPagesInRandomOrder(fd: number, imageBytes: number, startBytes = 0): void {
  const pages = Math.floor(imageBytes / PAGE_BYTES);
  const order = new Uint32Array(pages).map((_, i) => i);
  for (let i = pages - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    const tmp = order[i]!;
    order[i] = order[j]!;
    order[j] = tmp;
  }
  const buf = Buffer.alloc(PAGE_BYTES);
  for (const p of order) fs.readSync(fd, buf, 0, PAGE_BYTES, startBytes + p * PAGE_BYTES);
}

/** `count` block-aligned offsets inside `imageBytes`: random, or sequential wrapping at the end. */
export function makeOffsets(w: Workload, imageBytes: number, count: number): Float64Array {
  const slots = Math.floor(imageBytes / w.blockBytes);
  const offsets = new Float64Array(count);
  for (let i = 0; i < count; i++) offsets[i] = (w.pattern === 'random' ? Math.floor(Math.random() * slots) : i % slots) * w.blockBytes;
  return offsets;
}

/** fio's --rw value for a workload. */
export function fioRw(w: Workload): string {
  if (w.readPercent !== undefined) return w.pattern === 'random' ? 'randrw' : 'rw';
  return w.pattern === 'random' ? (w.op === 'read' ? 'randread' : 'randwrite') : w.op === 'read' ? 'read' : 'write';
}

/** The workload's IOPS from fio's --output-format=json output (anything fio printed before the JSON is skipped). */
export function fioIops(out: string, w: Workload): number {
  const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
  if (w.readPercent !== undefined) return job.read.iops + job.write.iops;
  return w.op === 'read' ? job.read.iops : job.write.iops;
}
