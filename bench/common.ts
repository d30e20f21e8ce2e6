// Pieces shared by the benchmarks: command-line options, the median, and (re-exported from
// src/perf/workloads.ts) the block-I/O workloads that the disk benchmark (bench/disk.bench.ts), the
// NBD benchmark (bench/nbd.bench.ts) and `sanbox bench` all run.

import { execFileSync } from 'node:child_process';

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

// The workloads, their offsets, page-cache preparation and fio naming live in the library, shared
// with `sanbox bench` (one copy).
export { fioIops, fioRw, makeOffsets, readPagesInRandomOrder, WORKLOADS, type Workload } from '../src/perf/workloads.js';
