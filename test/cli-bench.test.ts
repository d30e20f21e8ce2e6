// `sanbox bench TARGET` run as a user runs it, SHORT (100 ms per workload and engine): the --json
// shape, fio side by side on the same bytes (image: psync/io_uring; nbd://: fio's nbd engine
// against a real nbdkit; VG/LV: the PV image from the LV's first byte), and --plot: the SVG is
// rendered by librsvg's rsvg-convert (a real SVG parser) and holds one line series per workload
// in the histogram and in the timeline. Bad targets and flags: one-line errors, exit 1 / 2.
// Speed is never asserted here (that is what the benchmark reports); only that it was measured.

import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startNbdkit } from './helpers/nbdkit.js';
import { hasTool } from './helpers/ocfs2-oracle.js';
import { ownLockDir, runSanbox, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 1024 * 1024;
/** Where sanbox's (and lvm2's) PV data area starts: 1 MiB. */
const PE_START_BYTES = MiB;
const SHORT = ['--duration', '100ms'];
const WORKLOADS = ['randread-4k-qd1', 'randwrite-512-qd1', 'read-1m-qd1', 'randrw70-4k-qd32'];
const NAMES = ['4 KiB random read QD1', '512 B random write QD1', '1 MiB sequential read QD1', '4 KiB random 70/30 read/write QD32'];
/** For the nbd:// and LV runs: the synchronous path (QD1) and the promise path (QD32, a mix). */
const FEW = [WORKLOADS[0]!, WORKLOADS[3]!];
/** Each fio run starts a process and each bench a Node; on a loaded 2-CPU machine a run can take minutes. */
const BENCH_TIMEOUT_MS = 240_000;

interface Latency { p50Us: number; p90Us: number; p99Us: number; p999Us: number; minUs: number; maxUs: number }
interface Row {
  workload: string;
  id: string;
  queueDepth: number;
  sanbox: { ops: number; iops: number; mbPerSec: number; latency: Latency; path: string; histogram?: { count: number }[]; timeline?: unknown[] };
  fio: { iops: number; engine: string; latency: Latency } | { skipped: string };
}
interface Report { target: string; regionBytes: number; durationMs: number; fio: string; results: Row[] }

function image(dir: string, name: string, sizeBytes: number): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, '');
  fs.truncateSync(p, sizeBytes);
  return p;
}

function checkRows(t: ExecutionContext, report: Report, ids: string[], fioEngines: string[]): void {
  t.deepEqual(report.results.map((r) => r.id), ids);
  t.deepEqual(report.results.map((r) => r.workload), ids.map((id) => NAMES[WORKLOADS.indexOf(id)]));
  for (const r of report.results) {
    t.true(r.sanbox.ops > 0 && r.sanbox.iops > 0 && r.sanbox.mbPerSec > 0, `${r.id}: sanbox measured I/O`);
    const l = r.sanbox.latency;
    t.true(l.minUs <= l.p50Us && l.p50Us <= l.p90Us && l.p90Us <= l.p99Us && l.p99Us <= l.p999Us && l.p999Us <= l.maxUs, `${r.id}: ordered percentiles ${JSON.stringify(l)}`);
    t.is(r.sanbox.path, r.queueDepth === 1 && fioEngines[0] !== 'nbd' ? 'sync' : 'promise', r.id);
    if (!('iops' in r.fio)) {
      t.fail(`${r.id}: fio did not run: ${r.fio.skipped}`);
      continue;
    }
    t.true(r.fio.iops > 0, `${r.id}: fio measured I/O`);
    t.true(fioEngines.includes(r.fio.engine), `${r.id}: fio engine ${r.fio.engine}`);
    t.true(r.fio.latency.p50Us > 0 && r.fio.latency.p50Us <= r.fio.latency.p99Us, `${r.id}: fio percentiles`);
  }
}

test('bench on an image: --json shape, fio beside each workload on the same file, and --plot renders with one series per workload', async (t) => {
  for (const tool of ['fio', 'rsvg-convert']) if (!hasTool(tool)) t.fail(`${tool} is not installed: this test cannot run`);
  const dir = tempDir(t);
  const img = image(dir, 'b.img', 64 * MiB);
  const svg = path.join(dir, 'bench.svg');
  t.timeout(BENCH_TIMEOUT_MS + 30_000);
  const r = await runSanbox(t, ['bench', img, ...SHORT, '--workloads', WORKLOADS.join(','), '--json', '--plot', svg], { timeoutMs: BENCH_TIMEOUT_MS });
  t.is(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as Report;
  t.is(report.regionBytes, 64 * MiB);
  t.regex(report.fio, new RegExp(`^fio-\\S+ on ${img.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} from byte 0$`));
  checkRows(t, report, WORKLOADS, ['psync', 'io_uring']);
  // With --plot, --json carries the histogram and timeline the plot was drawn from.
  for (const row of report.results) t.true((row.sanbox.histogram ?? []).reduce((n, b) => n + b.count, 0) > 0 && (row.sanbox.timeline ?? []).length > 0, row.id);

  // librsvg parses and renders it.
  const png = path.join(dir, 'bench.png');
  execFileSync('rsvg-convert', ['-o', png, svg], { timeout: 30_000 });
  t.true(fs.readFileSync(png).subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), 'rsvg-convert wrote a PNG');
  // One line series per workload in the histogram and in the timeline; bars and points for both engines.
  const text = fs.readFileSync(svg, 'utf8');
  t.true(text.startsWith('<svg') && text.trimEnd().endsWith('</svg>'));
  for (const panel of ['histogram', 'timeline']) {
    const groups = text.split(`<g class="mark-line role-mark ${panel}_marks"`).slice(1);
    const series = groups.map((g) => /<path aria-label="[^"]*workload: ([^";]+)"[^>]*aria-roledescription="line mark"/.exec(g)?.[1]);
    t.deepEqual(series.sort(), [...NAMES].sort(), `${panel}: one series per workload`);
  }
  for (const name of NAMES) {
    for (const engine of ['sanbox', 'fio']) t.true(text.includes(`workload: ${name}; engine: ${engine}`), `IOPS bar of ${name} / ${engine}`);
  }
});

test('bench table and progress; --read-only runs only reads on an image that holds data, which the write workloads refuse', async (t) => {
  const dir = tempDir(t);
  const img = image(dir, 'vol.img', 256 * MiB);
  t.is((await runSanbox(t, ['mkfs', img, '--slots', '2', '-q'], { timeoutMs: 60_000 })).code, 0);
  const before = fs.readFileSync(img).subarray(0, 1 << 20);
  const refused = await runSanbox(t, ['bench', img, ...SHORT]);
  t.is(refused.code, 1);
  t.regex(refused.stderr, /^sanbox: .*vol\.img: already holds .*\(ocfs2 signature at byte 2048\); the write workloads \(--read-only runs only the reads\) would destroy it: use --force to overwrite it\n$/);
  t.timeout(BENCH_TIMEOUT_MS + 30_000);
  const ro = await runSanbox(t, ['bench', img, ...SHORT, '--read-only', '--no-fio', '--workloads', 'randread-4k-qd1,randwrite-4k-qd1,read-1m-qd1'], { timeoutMs: BENCH_TIMEOUT_MS });
  t.is(ro.code, 0, ro.stderr);
  t.regex(ro.stdout, /fio: fio not asked for \(--no-fio\)/);
  t.regex(ro.stdout, /Workload\s+IOPS\s+MB\/s\s+p50 µs\s+p99 µs\s+p99\.9 µs\s+fio IOPS/);
  t.regex(ro.stdout, /4 KiB random read QD1/);
  t.notRegex(ro.stdout, /random write/);
  t.regex(ro.stderr, /bench \[.*\] 100% \|/, 'progress lines on stderr when it is not a terminal');
  t.true(fs.readFileSync(img).subarray(0, 1 << 20).equals(before), 'a read-only bench wrote nothing');
});

test('bench errors: a missing target, a bad flag, an unknown workload, a bad --plot name; one line each, exit 1 or 2', async (t) => {
  const dir = tempDir(t);
  const img = image(dir, 'b.img', 16 * MiB);
  const cases: [string[], number, RegExp][] = [
    [['bench', path.join(dir, 'missing.img'), ...SHORT], 1, /^sanbox: .*missing\.img.*(no such|not found|ENOENT)/i],
    [['bench', 'novg/nolv', ...SHORT, '--devices', img], 1, /^sanbox: .*volume group "novg" not found/],
    [['bench', img, '--duration', '1ms'], 2, /^sanbox: --duration must be 50ms\.\.10m, not '1ms'$/m],
    [['bench', img, '--workloads', 'randread-3k-qd1'], 2, /^sanbox: unknown workload 'randread-3k-qd1' \(known: randread-4k-qd1, /m],
    [['bench', img, '--plot', path.join(dir, 'x.png')], 2, /--plot writes SVG/],
    [['bench', img, '--size', '32M'], 2, /--size 32M is larger than/],
  ];
  for (const [args, code, re] of cases) {
    const r = await runSanbox(t, args);
    t.is(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, re, args.join(' '));
    t.is(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  }
  t.is(fs.statSync(img).blocks, 0, 'nothing was written');
});

test('bench nbd:// against a real nbdkit: fio runs its nbd engine on the same export, without sanbox\'s own URI parameters', async (t) => {
  if (!hasTool('fio') || !hasTool('nbdkit')) t.fail('fio and nbdkit are needed: this test cannot run');
  const dir = tempDir(t);
  image(dir, 'n.img', 64 * MiB);
  const srv = await startNbdkit({ dir });
  t.teardown(() => srv.stop('SIGKILL'));
  // sanbox's own timeout= parameter is not for libnbd: fio gets the URI without it.
  t.timeout(BENCH_TIMEOUT_MS + 30_000);
  const r = await runSanbox(t, ['bench', srv.uri('n.img', 'timeout=20s'), ...SHORT, '--workloads', FEW.join(','), '--json'], { timeoutMs: BENCH_TIMEOUT_MS });
  t.is(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as Report;
  t.is(report.fio.split(' on ')[1], srv.uri('n.img'));
  checkRows(t, report, FEW, ['nbd']);
  t.is(report.results[0]!.sanbox.histogram, undefined, 'without --plot the JSON leaves out histograms');
});

test('bench VG/LV: fio reads and writes the LV\'s range of the PV image; a 2-stripe LV says why fio cannot', async (t) => {
  const dir = tempDir(t);
  const [pv1, pv2] = [path.join(dir, 'pv1.img'), path.join(dir, 'pv2.img')];
  for (const args of [
    ['disk', 'create', pv1, '--size', '256M'], ['disk', 'create', pv2, '--size', '256M'], ['pvcreate', pv1, pv2], ['vgcreate', 'vgb', pv1, pv2],
    ['lvcreate', '-n', 'pad', '-L', '8M', 'vgb', '--devices', `${pv1},${pv2}`],
    ['lvcreate', '-n', 'lin', '-L', '64M', 'vgb', '--devices', `${pv1},${pv2}`],
    ['lvcreate', '-n', 'str', '-L', '64M', '-i', '2', '-I', '64k', 'vgb', '--devices', `${pv1},${pv2}`],
  ]) {
    const r = await runSanbox(t, args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  t.timeout(2 * BENCH_TIMEOUT_MS);
  const lin = await runSanbox(t, ['bench', 'vgb/lin', ...SHORT, '--workloads', FEW.join(','), '--json', '--devices', `${pv1},${pv2}`], { timeoutMs: BENCH_TIMEOUT_MS });
  t.is(lin.code, 0, lin.stderr);
  const report = JSON.parse(lin.stdout) as Report;
  // The LV starts after the 8 MiB 'pad' LV, past the PV's data-area start (pe_start).
  const m = /^fio-\S+ on (.*) from byte (\d+)$/.exec(report.fio);
  t.truthy(m, report.fio);
  t.is(m?.[1], pv1);
  t.is(Number(m?.[2]), PE_START_BYTES + 8 * MiB, 'the LV begins 2 extents (the pad LV) into the data area');
  checkRows(t, report, FEW, ['psync', 'io_uring']);

  const str = await runSanbox(t, ['bench', 'vgb/str', ...SHORT, '--workloads', 'randread-4k-qd1', '--json', '--devices', `${pv1},${pv2}`], { timeoutMs: BENCH_TIMEOUT_MS });
  t.is(str.code, 0, str.stderr);
  const sr = JSON.parse(str.stdout) as Report;
  t.regex(sr.fio, /vgb\/str has 1 segment\(s\), 2 stripes: no single byte range of one PV for fio/);
  t.deepEqual(sr.results[0]!.fio, { skipped: sr.fio });
});
