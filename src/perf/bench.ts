// `sanbox bench TARGET`: each workload on the target through sanbox's device layer, then the same
// workload with fio on the same bytes when fio is installed and can reach them (fio.ts, target.ts).
// Page-cache state is controlled as in bench/disk.bench.ts (reference/baselines.md, trap T1):
// before every random workload on a local image, sanbox's run and fio's alike, the region is read
// once in random 4 KiB order, so both start from the same cache.
//
// The caller validates and opens the device (a destructive run needs it exclusively and free of
// any filesystem or PV label); this module only measures.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type { BlockDevice } from '../disk/index.js';
import { runFio, type FioResult } from './fio.js';
import { measureWorkload, type WorkloadResult } from './measure.js';
import { hostView, type HostView } from './target.js';
import { readPagesInRandomOrder, workloadId, type Workload } from './workloads.js';

export interface BenchOptions {
  /** The target as the user named it (image, nbd://…, VG/LV); `dev` is it, opened. */
  target: string;
  dev: BlockDevice;
  /** LVM device list, for finding a VG/LV's PV range. */
  devices: string[];
  workloads: readonly Workload[];
  durationMs: number;
  regionBytes: number;
  /** Run fio beside sanbox when it is installed. */
  fio: boolean;
  /** Progress: work units done of total, and what runs now. */
  onProgress?: (done: number, total: number, what: string) => void;
}

export interface BenchRow {
  workload: string;
  id: string;
  blockBytes: number;
  queueDepth: number;
  readPercent: number;
  sanbox: WorkloadResult;
  /** fio's result, or why it did not run. */
  fio: FioResult | { skipped: string };
}

export interface BenchReport {
  target: string;
  sizeBytes: number;
  regionBytes: number;
  durationMs: number;
  /** One line on fio: which version ran, or why it did not. */
  fio: string;
  results: BenchRow[];
}

/** fio's version when it is installed ("fio-3.33"), else undefined. */
export function fioVersion(): string | undefined {
  try {
    return execFileSync('fio', ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

function prepareCache(view: HostView, regionBytes: number): void {
  if (!view.file) return;
  const fd = fs.openSync(view.file.filename, 'r');
  try {
    readPagesInRandomOrder(fd, regionBytes, view.file.offsetBytes);
  } finally {
    fs.closeSync(fd);
  }
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  const view = await hostView(o.target, o.regionBytes, o.devices);
  const version = o.fio ? fioVersion() : undefined;
  const fioWhy = !o.fio ? 'fio not asked for (--no-fio)' : version === undefined ? 'fio is not installed' : 'unreachable' in view.fio ? view.fio.unreachable : undefined;
  const fioLine = fioWhy ?? `${version} on ${view.fio && 'kind' in view.fio ? (view.fio.kind === 'nbd' ? view.fio.uri : `${view.fio.filename} from byte ${view.fio.offsetBytes}`) : ''}`;
  // Progress in milliseconds of planned measurement, so the bar moves evenly.
  const perEngine = o.durationMs;
  const total = o.workloads.length * perEngine * (fioWhy === undefined ? 2 : 1);
  let done = 0;
  const results: BenchRow[] = [];
  for (const w of o.workloads) {
    const label = `${w.name} (sanbox)`;
    if (w.pattern === 'random') prepareCache(view, o.regionBytes);
    const base = done;
    const sanbox = await measureWorkload(o.dev, w, {
      durationMs: o.durationMs, regionBytes: o.regionBytes,
      onProgress: (f) => o.onProgress?.(base + f * perEngine, total, label),
    });
    done += perEngine;
    let fio: BenchRow['fio'] = { skipped: fioWhy ?? '' };
    if (fioWhy === undefined && 'kind' in view.fio) {
      o.onProgress?.(done, total, `${w.name} (fio)`);
      if (w.pattern === 'random') prepareCache(view, o.regionBytes);
      fio = await runFio(view.fio, w, o.durationMs);
      done += perEngine;
    }
    o.onProgress?.(done, total, w.name);
    results.push({ workload: w.name, id: workloadId(w), blockBytes: w.blockBytes, queueDepth: w.queueDepth ?? 1, readPercent: w.readPercent ?? (w.op === 'read' ? 100 : 0), sanbox, fio });
  }
  return { target: o.target, sizeBytes: o.dev.sizeBytes, regionBytes: o.regionBytes, durationMs: o.durationMs, fio: fioLine, results };
}
