// One workload against one block device for a fixed time, as fio runs a time_based job: a
// closed loop of `queueDepth` workers, each issuing its next I/O when the last one completes, every
// I/O timed on its own. Gives IOPS, throughput, latency percentiles, a latency histogram and
// throughput over time. (tinybench times repetitions of one function; it has no notion of
// outstanding I/Os or of a timeline, so this loop is ours; the developer benchmarks keep tinybench.)
//
// Queue depth 1 on a device with a synchronous form (a local image, a view or LV over one) uses
// it, as fio's psync engine does; deeper queues and other devices (nbd://) go through the
// promise form, so several requests are in flight where the device can overlap them.

import { isSyncDevice, type BlockDevice } from '../disk/index.js';
import { assert } from '../errors.js';
import { makeOffsets, type Workload } from './workloads.js';
import { PROGRESS_INTERVAL_MS, TIMELINE_BUCKET_MIN_MS } from '../timing.js';

/** Offsets drawn per workload run; reused round-robin, so the draw costs nothing while timing. */
const OFFSETS_COUNT = 1 << 20;
/** Latency samples kept for percentiles and the histogram (8 bytes each); beyond it, a uniform reservoir. */
export const LATENCY_SAMPLES_MAX = 1 << 21;
/** Timeline points per run: throughput over time is shown as this many buckets at most. */
const TIMELINE_POINTS_MAX = 50;
/** Histogram bins per doubling of latency (bin edges grow by 2^(1/4), about 19%). */
const HISTOGRAM_BINS_PER_OCTAVE = 4;

export interface LatencyStats {
  minUs: number;
  meanUs: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

export interface HistogramBin {
  fromUs: number;
  toUs: number;
  count: number;
}

export interface TimelinePoint {
  /** Bucket start, from the start of the run. */
  tMs: number;
  iops: number;
  mbPerSec: number;
}

export interface WorkloadResult {
  ops: number;
  bytes: number;
  elapsedMs: number;
  iops: number;
  mbPerSec: number;
  latency: LatencyStats;
  histogram: HistogramBin[];
  timeline: TimelinePoint[];
  /** Width of one timeline bucket. */
  timelineBucketMs: number;
  /** 'sync' (the device's synchronous form) or 'promise'. */
  path: 'sync' | 'promise';
}

export interface MeasureOptions {
  durationMs: number;
  /** Bytes of the device the offsets range over, from startBytes. */
  regionBytes: number;
  /** Where the region starts on the device (0 by default). */
  startBytes?: number;
  /** Called now and then with the fraction of the run done (0..1). */
  onProgress?: (fraction: number) => void;
}

/** Latency samples with a uniform reservoir past LATENCY_SAMPLES_MAX (Vitter's algorithm R). */
class Samples {
  private buf = new Float64Array(4096);
  private n = 0;
  seen = 0;
  min = Infinity;
  max = 0;
  sum = 0;

  add(us: number): void {
    this.seen++;
    this.sum += us;
    if (us < this.min) this.min = us;
    if (us > this.max) this.max = us;
    if (this.n < LATENCY_SAMPLES_MAX) {
      if (this.n === this.buf.length) {
        const bigger = new Float64Array(Math.min(this.buf.length * 2, LATENCY_SAMPLES_MAX));
        bigger.set(this.buf);
        this.buf = bigger;
      }
      this.buf[this.n++] = us;
      return;
    }
    const j = Math.floor(Math.random() * this.seen);
    if (j < LATENCY_SAMPLES_MAX) this.buf[j] = us;
  }

  sorted(): Float64Array {
    return this.buf.slice(0, this.n).sort();
  }
}

/** The value at quantile q of sorted samples (nearest rank, as fio reports percentiles). */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

/** Log-spaced bins from the smallest to the largest sample; empty bins are kept so the shape reads right. */
export function histogram(sorted: Float64Array): HistogramBin[] {
  if (sorted.length === 0) return [];
  const lo = Math.max(sorted[0]!, 0.01);
  const hi = Math.max(sorted[sorted.length - 1]!, lo);
  const step = 2 ** (1 / HISTOGRAM_BINS_PER_OCTAVE);
  const bins: HistogramBin[] = [];
  let i = 0;
  for (let from = lo; from <= hi; from *= step) {
    const to = from * step;
    let count = 0;
    while (i < sorted.length && (sorted[i]! < to || to > hi)) {
      count++;
      i++;
    }
    bins.push({ fromUs: from, toUs: to, count });
  }
  assert(i === sorted.length, 'every latency sample falls in a histogram bin');
  return bins;
}

/** Runs `w` on `dev` for `opts.durationMs` and reports what it measured. Writes go to the region only. */
export async function measureWorkload(dev: BlockDevice, w: Workload, opts: MeasureOptions): Promise<WorkloadResult> {
  const qd = w.queueDepth ?? 1;
  const start = opts.startBytes ?? 0;
  assert(Number.isInteger(qd) && qd >= 1, `queue depth ${qd} is a positive integer`);
  assert(opts.regionBytes >= w.blockBytes && start + opts.regionBytes <= dev.sizeBytes, 'the region fits the device and holds a block');
  const offsets = makeOffsets(w, opts.regionBytes, OFFSETS_COUNT);
  const readShare = w.readPercent !== undefined ? w.readPercent / 100 : w.op === 'read' ? 1 : 0;
  const bucketMs = Math.max(TIMELINE_BUCKET_MIN_MS, opts.durationMs / TIMELINE_POINTS_MAX);
  const bucketOps: number[] = [];
  const samples = new Samples();
  let cursor = 0;
  const next = (): number => {
    const o = offsets[cursor]!;
    cursor = (cursor + 1) % OFFSETS_COUNT;
    return start + o;
  };
  const t0 = performance.now();
  const deadline = t0 + opts.durationMs;
  let lastProgressMs = t0;
  const record = (begin: number, end: number): void => {
    samples.add((end - begin) * 1000);
    const b = Math.floor((end - t0) / bucketMs);
    bucketOps[b] = (bucketOps[b] ?? 0) + 1;
    if (opts.onProgress && end - lastProgressMs > PROGRESS_INTERVAL_MS) {
      lastProgressMs = end;
      opts.onProgress(Math.min(1, (end - t0) / opts.durationMs));
    }
  };

  const useSync = qd === 1 && isSyncDevice(dev);
  if (useSync && isSyncDevice(dev)) {
    const buf = Buffer.alloc(w.blockBytes, 0x5a);
    let now = t0;
    // Each I/O's end time is read anyway (its latency), so the deadline is checked after every one.
    while (now < deadline) {
      const begin = performance.now();
      if (readShare >= 1 || (readShare > 0 && Math.random() < readShare)) dev.readSync(buf, next());
      else dev.writeSync(buf, next());
      now = performance.now();
      record(begin, now);
    }
  } else {
    const worker = async (): Promise<void> => {
      const buf = Buffer.alloc(w.blockBytes, 0x5a);
      while (performance.now() < deadline) {
        const begin = performance.now();
        if (readShare >= 1 || (readShare > 0 && Math.random() < readShare)) await dev.read(buf, next());
        else await dev.write(buf, next());
        record(begin, performance.now());
      }
    };
    await Promise.all(Array.from({ length: qd }, worker));
  }
  const elapsedMs = performance.now() - t0;
  opts.onProgress?.(1);
  const sorted = samples.sorted();
  const ops = samples.seen;
  const bytes = ops * w.blockBytes;
  const timeline: TimelinePoint[] = [];
  // Only whole buckets: the last, partial one would read as a drop in throughput.
  const wholeBuckets = Math.max(1, Math.floor(elapsedMs / bucketMs));
  for (let b = 0; b < wholeBuckets; b++) {
    const n = bucketOps[b] ?? 0;
    timeline.push({ tMs: b * bucketMs, iops: (n * 1000) / bucketMs, mbPerSec: (n * w.blockBytes) / 1e3 / bucketMs });
  }
  return {
    ops, bytes, elapsedMs,
    iops: (ops * 1000) / elapsedMs,
    mbPerSec: bytes / 1e3 / elapsedMs,
    latency: {
      minUs: ops ? samples.min : NaN, meanUs: ops ? samples.sum / ops : NaN,
      p50Us: quantile(sorted, 0.5), p90Us: quantile(sorted, 0.9), p99Us: quantile(sorted, 0.99), p999Us: quantile(sorted, 0.999),
      maxUs: ops ? samples.max : NaN,
    },
    histogram: histogram(sorted),
    timeline,
    timelineBucketMs: bucketMs,
    path: useSync ? 'sync' : 'promise',
  };
}
