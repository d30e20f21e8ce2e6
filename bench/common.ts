// Pieces shared by the benchmarks: command-line options, the median, and the block-I/O workloads
// that the disk benchmark (bench/disk.bench.ts) and the NBD benchmark (bench/nbd.bench.ts) both
// run, with their page-cache preparation and fio job naming.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

const MiB = 1024 * 1024;
/** Page size: the granularity of the page-cache preparation (reference/baselines.md, trap T1). */
const PAGE_BYTES = 4096;

/** The value after `--NAME` on the command line, or `fallback`. */
export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Whether `cmd ARGS…` runs and exits 0 (used to probe for fio, nbdcopy). */
export function have(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface Workload {
  name: string;
  blockBytes: number;
  op: 'read' | 'write';
  pattern: 'random' | 'sequential';
}

export const WORKLOADS: readonly Workload[] = [
  { name: '4 KiB random read', blockBytes: 4096, op: 'read', pattern: 'random' },
  { name: '4 KiB random write', blockBytes: 4096, op: 'write', pattern: 'random' },
  { name: '512 B random write', blockBytes: 512, op: 'write', pattern: 'random' },
  { name: '1 MiB sequential read', blockBytes: MiB, op: 'read', pattern: 'sequential' },
  { name: '1 MiB sequential write', blockBytes: MiB, op: 'write', pattern: 'sequential' },
];

/** Reads every 4 KiB page of the first `imageBytes` of `fd` once in random order: small page-cache folios (trap T1). */
export function readPagesInRandomOrder(fd: number, imageBytes: number): void {
  const pages = imageBytes / PAGE_BYTES;
  const order = new Uint32Array(pages).map((_, i) => i);
  for (let i = pages - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    const tmp = order[i]!;
    order[i] = order[j]!;
    order[j] = tmp;
  }
  const buf = Buffer.alloc(PAGE_BYTES);
  for (const p of order) fs.readSync(fd, buf, 0, PAGE_BYTES, p * PAGE_BYTES);
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
  return w.pattern === 'random' ? (w.op === 'read' ? 'randread' : 'randwrite') : w.op === 'read' ? 'read' : 'write';
}

/** The workload's IOPS from fio's --output-format=json output (anything fio printed before the JSON is skipped). */
export function fioIops(out: string, w: Workload): number {
  const job = JSON.parse(out.slice(out.indexOf('{'))).jobs[0];
  return w.op === 'read' ? job.read.iops : job.write.iops;
}
