// `sanbox bench`'s action, loaded when it runs (tools/commands/bench.ts registers it).

import fs from 'node:fs';
import cliProgress from 'cli-progress';
import { UsageError } from '../../src/errors.js';
import { refuseSignatures } from '../../src/disk/signature-probe.js';
import { runBench, type BenchReport, type BenchRow } from '../../src/perf/bench.js';
import { BENCH_WORKLOADS, workloadId, writes, type Workload } from '../../src/perf/workloads.js';
import { deviceList } from '../../src/volume/devices.js';
import { openTarget } from '../../src/volume/resolve.js';
import { formatSize, parseDurationMs, parseSizeBytes } from '../../src/units.js';
import { printJson, printTable } from '../output.js';

/** Default region: the whole device up to 1 GiB, the size the developer disk benchmark uses. */
const REGION_DEFAULT_MAX_BYTES = 1024 ** 3;
/** Bounds on --duration: below 50 ms a run is mostly start-up; above 10 min it is a mistake. */
const DURATION_MIN_MS = 50;
const DURATION_MAX_MS = 600_000;
/** Without a terminal, a progress line at most this often. */
const PROGRESS_LINE_MS = 2000;

interface BenchCliOptions {
  duration: string;
  size?: string;
  workloads?: string;
  readOnly: boolean;
  fio: boolean;
  force: boolean;
  devices?: string;
  json: boolean;
  plot?: string;
}

function pickWorkloads(o: BenchCliOptions): Workload[] {
  let ws: Workload[] = [...BENCH_WORKLOADS];
  if (o.workloads !== undefined) {
    const ids = o.workloads.split(',').map((s) => s.trim()).filter((s) => s !== '');
    const known = new Map(BENCH_WORKLOADS.map((w) => [workloadId(w), w]));
    ws = ids.map((id) => {
      const w = known.get(id);
      if (!w) throw new UsageError(`unknown workload '${id}' (known: ${[...known.keys()].join(', ')})`);
      return w;
    });
  }
  if (o.readOnly) ws = ws.filter((w) => !writes(w));
  if (ws.length === 0) throw new UsageError('no workloads left to run (--read-only leaves only the read workloads)');
  return ws;
}

function progressBar(): { update: (done: number, total: number, what: string) => void; stop: () => void } {
  const tty = process.stderr.isTTY === true;
  const bar = new cliProgress.SingleBar({
    stream: process.stderr,
    format: 'bench [{bar}] {percentage}% | {what}',
    hideCursor: tty,
    clearOnComplete: false,
    noTTYOutput: !tty,
    notTTYSchedule: PROGRESS_LINE_MS,
    etaBuffer: 50,
  }, cliProgress.Presets.legacy);
  let started = false;
  return {
    update: (done, total, what) => {
      if (!started) {
        bar.start(total, 0, { what });
        started = true;
      }
      bar.update(Math.round(done), { what });
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

const num = (v: number, digits = 0): string => (Number.isFinite(v) ? v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-');

function printReport(r: BenchReport): void {
  process.stdout.write(`sanbox bench ${r.target}: ${formatSize(r.regionBytes)} of ${formatSize(r.sizeBytes)}, ${r.durationMs} ms per workload; fio: ${r.fio}\n`);
  const fio = (row: BenchRow) => ('iops' in row.fio ? row.fio : undefined);
  printTable(r.results, [
    { header: 'Workload', value: (x) => x.workload },
    { header: 'IOPS', value: (x) => num(x.sanbox.iops), align: 'right' },
    { header: 'MB/s', value: (x) => num(x.sanbox.mbPerSec, 1), align: 'right' },
    { header: 'p50 µs', value: (x) => num(x.sanbox.latency.p50Us, 1), align: 'right' },
    { header: 'p99 µs', value: (x) => num(x.sanbox.latency.p99Us, 1), align: 'right' },
    { header: 'p99.9 µs', value: (x) => num(x.sanbox.latency.p999Us, 1), align: 'right' },
    { header: 'fio IOPS', value: (x) => num(fio(x)?.iops ?? NaN), align: 'right' },
    { header: 'fio p50 µs', value: (x) => num(fio(x)?.latency.p50Us ?? NaN, 1), align: 'right' },
    { header: 'fio p99 µs', value: (x) => num(fio(x)?.latency.p99Us ?? NaN, 1), align: 'right' },
    { header: 'sanbox/fio', value: (x) => num(x.sanbox.iops / (fio(x)?.iops ?? NaN), 2), align: 'right' },
  ]);
}

/** The report for --json: the measured facts, without the per-bucket histogram and timeline (the plot has those). */
function jsonReport(r: BenchReport, full: boolean): unknown {
  if (full) return r;
  return { ...r, results: r.results.map(({ sanbox: { histogram: _h, timeline: _t, ...rest }, ...row }) => ({ ...row, sanbox: rest })) };
}

export async function bench(target: string, o: BenchCliOptions): Promise<void> {
  const durationMs = parseDurationMs(o.duration);
  if (durationMs < DURATION_MIN_MS || durationMs > DURATION_MAX_MS) throw new UsageError(`--duration must be ${DURATION_MIN_MS}ms..${DURATION_MAX_MS / 60_000}m, not '${o.duration}'`);
  const workloads = pickWorkloads(o);
  const destructive = workloads.some(writes);
  const askedRegion = o.size !== undefined ? parseSizeBytes(o.size) : undefined;
  if (o.plot !== undefined && !o.plot.endsWith('.svg')) throw new UsageError(`--plot writes SVG: name a .svg file, not '${o.plot}'`);
  const devices = deviceList([], o.devices);
  const dev = await openTarget(target, { devices, readOnly: !destructive, guard: destructive ? 'exclusive' : 'shared' });
  let report: BenchReport;
  const bar = o.json ? undefined : progressBar();
  try {
    // A write workload destroys what the device holds: a filesystem or PV label is refused without --force.
    if (destructive && !o.force) await refuseSignatures(dev, 'the write workloads (--read-only runs only the reads)');
    const maxBlock = Math.max(...workloads.map((w) => w.blockBytes));
    const regionBytes = askedRegion ?? Math.min(dev.sizeBytes, REGION_DEFAULT_MAX_BYTES);
    if (regionBytes > dev.sizeBytes) throw new UsageError(`--size ${o.size} is larger than ${target} (${dev.sizeBytes} bytes)`);
    if (regionBytes < maxBlock || regionBytes % dev.sectorSizeBytes !== 0) {
      throw new UsageError(`--size must be a multiple of the ${dev.sectorSizeBytes}-byte sector and hold a ${maxBlock}-byte block`);
    }
    report = await runBench({
      target, dev, devices, workloads, durationMs, regionBytes, fio: o.fio,
      ...(bar ? { onProgress: bar.update } : {}),
    });
  } finally {
    bar?.stop();
    await dev.close();
  }
  if (o.plot !== undefined) {
    // Loaded only for --plot: vega and vega-lite take about a second to import, which a `sanbox
    // bench` without --plot should not pay.
    const { renderSvg } = await import('../../src/perf/plot.js');
    fs.writeFileSync(o.plot, await renderSvg(report));
  }
  if (o.json) printJson(jsonReport(report, o.plot !== undefined));
  else {
    printReport(report);
    if (o.plot !== undefined) process.stdout.write(`Plot written to ${o.plot}\n`);
  }
}
