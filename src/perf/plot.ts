// `sanbox bench --plot FILE.svg`: the report drawn with Vega-Lite (a declarative grammar of
// graphics), compiled to a Vega spec and rendered to SVG headless in Node (renderer 'none', so no
// canvas or browser is needed). Four panels: IOPS per workload (sanbox beside fio), latency
// percentiles per workload, sanbox's latency histogram, and sanbox's throughput over time. Every
// workload is one series (one colour) in the histogram and in the timeline.

import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';
import type { BenchReport } from './bench.js';

/** Panel width in pixels: wide enough for the workload names beside the bars. */
const PANEL_WIDTH_PX = 560;
const PANEL_HEIGHT_PX = 220;

export function plotSpec(report: BenchReport): TopLevelSpec {
  const order = report.results.map((r) => r.workload);
  const iops: Record<string, string | number>[] = [];
  const latency: Record<string, string | number>[] = [];
  const hist: Record<string, string | number>[] = [];
  const timeline: Record<string, string | number>[] = [];
  for (const r of report.results) {
    const sides = [{ engine: 'sanbox', how: r.sanbox.path, m: r.sanbox }, ...('iops' in r.fio ? [{ engine: 'fio', how: r.fio.engine, m: r.fio }] : [])];
    for (const { engine, how, m } of sides) {
      iops.push({ workload: r.workload, engine, how, iops: m.iops });
      for (const [percentile, us] of [['p50', m.latency.p50Us], ['p90', m.latency.p90Us], ['p99', m.latency.p99Us], ['p99.9', m.latency.p999Us]] as const) {
        if (Number.isFinite(us) && us > 0) latency.push({ workload: r.workload, engine, percentile, us });
      }
    }
    for (const b of r.sanbox.histogram) if (b.count > 0) hist.push({ workload: r.workload, us: Math.sqrt(b.fromUs * b.toUs), count: b.count });
    for (const p of r.sanbox.timeline) timeline.push({ workload: r.workload, s: p.tMs / 1000, mbPerSec: p.mbPerSec });
  }
  const workloadColor = { field: 'workload', type: 'nominal', sort: order, title: 'workload', legend: { labelLimit: 320 } } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `sanbox bench ${report.target}`, subtitle: `${report.durationMs} ms per workload and engine over ${report.regionBytes} bytes; ${report.fio}` },
    config: { font: 'sans-serif' },
    vconcat: [
      {
        name: 'iops',
        title: 'IOPS per workload',
        data: { values: iops },
        mark: 'bar',
        width: PANEL_WIDTH_PX,
        encoding: {
          y: { field: 'workload', type: 'nominal', sort: order, title: null, axis: { labelLimit: 320 } },
          yOffset: { field: 'engine', type: 'nominal' },
          // Linear: a bar on a log scale has no zero to start from.
          x: { field: 'iops', type: 'quantitative', title: 'I/O per second' },
          color: { field: 'engine', type: 'nominal', title: 'engine', sort: ['sanbox', 'fio'] },
          tooltip: [{ field: 'workload' }, { field: 'engine' }, { field: 'how', title: 'path / fio engine' }, { field: 'iops', format: ',.0f' }],
        },
      },
      {
        name: 'latency',
        title: 'Completion latency percentiles',
        data: { values: latency },
        mark: { type: 'point', filled: true, size: 60 },
        width: PANEL_WIDTH_PX,
        encoding: {
          y: { field: 'workload', type: 'nominal', sort: order, title: null, axis: { labelLimit: 320 } },
          yOffset: { field: 'engine', type: 'nominal' },
          x: { field: 'us', type: 'quantitative', scale: { type: 'log' }, title: 'latency µs (log)' },
          color: { field: 'percentile', type: 'ordinal', sort: ['p50', 'p90', 'p99', 'p99.9'], title: 'percentile' },
          shape: { field: 'engine', type: 'nominal', title: 'engine' },
          tooltip: [{ field: 'workload' }, { field: 'engine' }, { field: 'percentile' }, { field: 'us', format: ',.1f' }],
        },
      },
      {
        name: 'histogram',
        title: 'sanbox latency histogram',
        data: { values: hist },
        mark: { type: 'line', point: false, interpolate: 'step' },
        width: PANEL_WIDTH_PX,
        height: PANEL_HEIGHT_PX,
        encoding: {
          x: { field: 'us', type: 'quantitative', scale: { type: 'log' }, title: 'latency µs (log)' },
          y: { field: 'count', type: 'quantitative', scale: { type: 'symlog' }, title: 'I/Os' },
          color: workloadColor,
        },
      },
      {
        name: 'timeline',
        title: 'sanbox throughput over time',
        data: { values: timeline },
        mark: 'line',
        width: PANEL_WIDTH_PX,
        height: PANEL_HEIGHT_PX,
        encoding: {
          x: { field: 's', type: 'quantitative', title: 'seconds into the workload' },
          // symlog: spans 512 B and 1 MiB workloads and still shows a stalled (zero) interval.
          y: { field: 'mbPerSec', type: 'quantitative', scale: { type: 'symlog' }, title: 'MB/s (symlog)' },
          color: workloadColor,
        },
      },
    ],
    resolve: { scale: { color: 'independent', shape: 'independent' } },
  } as TopLevelSpec;
}

/** The report as an SVG document. */
export async function renderSvg(report: BenchReport): Promise<string> {
  const compiled = vl.compile(plotSpec(report)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
