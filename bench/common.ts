// Pieces shared by the benchmarks: command-line options, the median, and (re-exported from
// src/perf/workloads.ts) the block-I/O workloads that the disk benchmark (bench/disk.bench.ts), the
// NBD benchmark (bench/nbd.bench.ts) and `sanbox bench` all run.

import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';

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

/** One row of a benchmark's closing table: a target of the issue, what this run measured, met or not. */
export interface TargetRow {
  target: string;
  measured: string;
  goal: string;
  /** null: not measured in this run (say why in `note`). */
  met: boolean | null;
  note?: string;
}

/** The closing table every benchmark prints: each target with its goal and a met/missed column. */
export function targetTable(title: string, rows: TargetRow[]): string {
  const w = (k: 'target' | 'measured' | 'goal') => Math.max(k.length, ...rows.map((r) => r[k].length));
  const [tw, mw, gw] = [w('target'), w('measured'), w('goal')];
  const line = (a: string, b: string, c: string, d: string, e = '') => `  ${a.padEnd(tw)}  ${b.padStart(mw)}  ${c.padEnd(gw)}  ${d.padEnd(6)}${e ? `  ${e}` : ''}\n`;
  let out = `\n${title}\n` + line('target', 'measured', 'goal', 'met?');
  for (const r of rows) out += line(r.target, r.measured, r.goal, r.met === null ? '-' : r.met ? 'met' : 'MISSED', r.note ?? '');
  return out;
}

/**
 * Syscalls a child process makes between two marker calls, per operation: `strace -f` of
 * `node ARGS`, whose script does `fs.existsSync(START)`, `ops` operations, `fs.existsSync(END)`.
 * Load-independent evidence of the work per operation. Undefined when strace is not installed.
 */
export function syscallsPerOp(nodeArgs: string[], markerDir: string, ops: number): { total: number; byName: Record<string, number> } | undefined {
  if (!have('strace', ['-V'])) return undefined;
  const trace = `${markerDir}/strace.out`;
  execFileSync('strace', ['-f', '-qq', '-o', trace, process.execPath, ...nodeArgs], { stdio: ['ignore', 'ignore', 'inherit'] });
  const lines = readFileSync(trace, 'utf8').split('\n');
  const byName: Record<string, number> = {};
  let on = false;
  for (const l of lines) {
    if (l.includes(SYSCALL_MARK_START)) {
      on = true;
      continue;
    }
    if (l.includes(SYSCALL_MARK_END)) break;
    // "PID name(args) = r", or "PID <... name resumed> ...": count each call once, at its start.
    const m = /^\d+\s+([a-z_0-9]+)\(/.exec(l);
    if (on && m) byName[m[1]!] = (byName[m[1]!] ?? 0) + 1;
  }
  rmSync(trace, { force: true });
  let total = 0;
  for (const k of Object.keys(byName)) {
    byName[k] = byName[k]! / ops;
    total += byName[k]!;
  }
  return { total, byName };
}

/** Marker file names a traced child checks (fs.existsSync) around the counted operations. */
export const SYSCALL_MARK_START = 'sanbox-syscalls-start';
export const SYSCALL_MARK_END = 'sanbox-syscalls-end';
