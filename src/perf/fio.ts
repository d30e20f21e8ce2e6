// fio on the same target as sanbox, side by side: where fio can reach it, the same workload
// (rw, bs, iodepth, rwmixread, time_based) and the same byte range. Which engine:
//   image file  psync at queue depth 1 (what sanbox's synchronous path does), io_uring deeper
//   nbd://      fio's nbd engine (libnbd), iodepth = the queue depth
//   VG/LV       the PV image with offset= and size= of the LV's one linear segment; an LV of
//               several segments or stripes has no single byte range in one file, and without
//               device-mapper fio cannot address it as one device, so fio is skipped and says why
// Buffered I/O on both sides (--direct=0), as sanbox's file disk does.

import { execFile } from 'node:child_process';
import { SanboxError } from '../errors.js';
import { fioRw, type Workload } from './workloads.js';
import type { LatencyStats } from './measure.js';
import { FIO_SLACK_MS } from '../timing.js';

/** fio's JSON can be large with many percentiles; more than this is a failure, not output. */
const FIO_OUTPUT_MAX_BYTES = 16 * 1024 * 1024;

export type FioTarget =
  | { kind: 'file'; filename: string; offsetBytes: number; sizeBytes: number }
  | { kind: 'nbd'; uri: string; sizeBytes: number };

export interface FioResult {
  iops: number;
  mbPerSec: number;
  /** Completion latency (clat) percentiles of the reads, or of the writes for a write-only workload. */
  latency: LatencyStats;
  engine: string;
}

export function fioArgs(target: FioTarget, w: Workload, durationMs: number): string[] {
  const qd = w.queueDepth ?? 1;
  const engine = target.kind === 'nbd' ? 'nbd' : qd === 1 ? 'psync' : 'io_uring';
  const where = target.kind === 'nbd'
    ? [`--uri=${target.uri}`, `--size=${target.sizeBytes}`]
    : [`--filename=${target.filename}`, `--offset=${target.offsetBytes}`, `--size=${target.sizeBytes}`, '--fallocate=none', '--invalidate=0'];
  return [
    // The engine first: fio only knows an engine's own options (the nbd engine's --uri) after it.
    `--name=${fioRw(w)}`, `--ioengine=${engine}`, ...where, `--iodepth=${qd}`, '--direct=0',
    `--rw=${fioRw(w)}`, `--bs=${w.blockBytes}`, ...(w.readPercent !== undefined ? [`--rwmixread=${w.readPercent}`] : []),
    '--time_based', `--runtime=${Math.max(1, Math.round(durationMs))}ms`, '--ramp_time=0', '--norandommap', '--randrepeat=0',
    '--percentile_list=50:90:99:99.9', '--output-format=json',
  ];
}

interface FioSide {
  iops: number;
  bw_bytes: number;
  clat_ns: { min: number; max: number; mean: number; percentile?: Record<string, number> };
}

function fioError(why: string): SanboxError {
  return new SanboxError('EINVAL', `fio's JSON output: ${why}`);
}

function side(v: unknown, name: string): FioSide {
  const o = v as Partial<FioSide> | undefined;
  const c = o?.clat_ns;
  const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
  if (!o || !finite(o.iops) || !finite(o.bw_bytes) || !c || !finite(c.min) || !finite(c.max) || !finite(c.mean)) throw fioError(`no ${name} statistics (iops, bw_bytes, clat_ns)`);
  if (c.percentile !== undefined && (typeof c.percentile !== 'object' || c.percentile === null)) throw fioError(`${name}.clat_ns.percentile is not an object`);
  return o as FioSide;
}

/** Parses fio's --output-format=json (anything printed before the JSON is skipped); a malformed document is an EINVAL SanboxError. */
export function parseFioJson(out: string, w: Workload, engine: string): FioResult {
  const at = out.indexOf('{');
  if (at < 0) throw fioError(`no JSON in ${JSON.stringify(out.slice(0, 200))}`);
  let doc: unknown;
  try {
    doc = JSON.parse(out.slice(at));
  } catch (err) {
    throw fioError((err as Error).message);
  }
  const job = (doc as { jobs?: unknown[] } | null)?.jobs?.[0] as { read?: unknown; write?: unknown; error?: unknown } | undefined;
  if (job === undefined || job === null || typeof job !== 'object') throw fioError('no job');
  if (job.error !== undefined && job.error !== 0) throw new SanboxError('EIO', `fio's job failed with error ${String(job.error)}`);
  const read = side(job.read, 'read');
  const write = side(job.write, 'write');
  const main = w.op === 'write' && w.readPercent === undefined ? write : read;
  const pct = main.clat_ns.percentile ?? {};
  const p = (k: string): number => (typeof pct[k] === 'number' ? pct[k] / 1000 : NaN);
  return {
    iops: read.iops + write.iops,
    mbPerSec: (read.bw_bytes + write.bw_bytes) / 1e6,
    latency: {
      minUs: main.clat_ns.min / 1000, meanUs: main.clat_ns.mean / 1000,
      p50Us: p('50.000000'), p90Us: p('90.000000'), p99Us: p('99.000000'), p999Us: p('99.900000'),
      maxUs: main.clat_ns.max / 1000,
    },
    engine,
  };
}

export function runFio(target: FioTarget, w: Workload, durationMs: number): Promise<FioResult> {
  const args = fioArgs(target, w, durationMs);
  const engine = args.find((a) => a.startsWith('--ioengine='))!.slice('--ioengine='.length);
  return new Promise((resolve, reject) => {
    execFile('fio', args, { encoding: 'utf8', maxBuffer: FIO_OUTPUT_MAX_BYTES, timeout: durationMs + FIO_SLACK_MS, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) {
        reject(new SanboxError('EIO', `fio ${fioRw(w)} failed: ${(stderr || err.message).trim().split('\n').pop()}`));
        return;
      }
      try {
        resolve(parseFioJson(stdout, w, engine));
      } catch (e) {
        reject(e);
      }
    });
  });
}
