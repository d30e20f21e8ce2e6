// Disk benchmark: the sanbox file disk (sync and promise paths) beside raw fs.readSync/writeSync
// on the same 1 GiB sparse image in the same run, and fio (psync) when it is installed.
// Page-cache state is controlled (reference/baselines.md, trap T1): before the random workloads
// the whole image is read once in random 4 KiB order, so it is cached as small folios.
//
// Usage: npm run bench:disk [-- --rounds N --time-ms MS --json]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bench } from 'tinybench';
import { createImage, FileDisk } from '../src/disk/index.js';
import { runFio } from '../src/perf/fio.js';
import { arg, have, makeOffsets, median, readPagesInRandomOrder, WORKLOADS, type Workload } from './common.js';

const GiB = 1024 ** 3;
const IMAGE_BYTES = GiB;
/** I/Os per tinybench sample: one op is ~2 µs, below the timer's useful resolution. */
const OPS_PER_SAMPLE = 64;
const OFFSETS_COUNT = 1 << 20;

type Variant = 'raw sync' | 'sanbox sync' | 'sanbox promise';
const VARIANTS: Variant[] = ['raw sync', 'sanbox sync', 'sanbox promise'];

const rounds = Number(arg('rounds', '2'));
const timeMs = Number(arg('time-ms', '700'));
const asJson = process.argv.includes('--json');

/** Reads every 4 KiB block once in random order: small page-cache folios (trap T1). */
function prepSmallFolios(file: string): void {
  const fd = fs.openSync(file, 'r');
  readPagesInRandomOrder(fd, IMAGE_BYTES);
  fs.closeSync(fd);
}

/** One variant on a freshly prepared image, so no variant inherits another's allocated blocks or cache. */
async function measureNode(file: string, w: Workload, variant: Variant): Promise<number> {
  const offsets = makeOffsets(w, IMAGE_BYTES, OFFSETS_COUNT);
  const buf = Buffer.alloc(w.blockBytes, 0x5a);
  const rawFd = fs.openSync(file, 'r+');
  const dev = FileDisk.open(file);
  let cursor = 0;
  const next = (): number => {
    const o = offsets[cursor]!;
    cursor = (cursor + 1) % OFFSETS_COUNT;
    return o;
  };
  const bench = new Bench({ name: w.name, time: timeMs, warmupTime: 100 });
  const timed = (f: () => void) => () => {
    const t0 = performance.now();
    for (let i = 0; i < OPS_PER_SAMPLE; i++) f();
    const ms = performance.now() - t0;
    return { overriddenDuration: ms / OPS_PER_SAMPLE, overriddenIterationCost: ms };
  };
  if (variant === 'raw sync') {
    bench.add(variant, timed(w.op === 'read' ? () => void fs.readSync(rawFd, buf, 0, w.blockBytes, next()) : () => void fs.writeSync(rawFd, buf, 0, w.blockBytes, next())));
  } else if (variant === 'sanbox sync') {
    bench.add(variant, timed(w.op === 'read' ? () => dev.readSync(buf, next()) : () => dev.writeSync(buf, next())));
  } else {
    const op = w.op === 'read' ? (): Promise<void> => dev.read(buf, next()) : (): Promise<void> => dev.write(buf, next());
    bench.add(variant, async () => {
      const t0 = performance.now();
      for (let i = 0; i < OPS_PER_SAMPLE; i++) await op();
      const ms = performance.now() - t0;
      return { overriddenDuration: ms / OPS_PER_SAMPLE, overriddenIterationCost: ms };
    });
  }
  await bench.run();
  fs.closeSync(rawFd);
  dev.closeSync();
  const r = bench.tasks[0]!.result;
  if (r.state !== 'completed') throw new Error(`${w.name} / ${variant}: ${r.state}`);
  return 1000 / r.latency.p50; // ops per second from the median op latency
}

/** fio psync on the same image: the same job `sanbox bench` runs beside sanbox (src/perf/fio.ts). */
async function measureFio(file: string, w: Workload): Promise<number> {
  const r = await runFio({ kind: 'file', filename: file, offsetBytes: 0, sizeBytes: IMAGE_BYTES }, w, Math.max(1000, timeMs * 2));
  return r.iops;
}

function rate(w: Workload, iops: number): string {
  return w.blockBytes >= 1 << 20 ? `${((iops * w.blockBytes) / 1e6).toFixed(0)} MB/s` : `${(iops / 1000).toFixed(0)}k IOPS`;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanbox-bench-'));
  const img = path.join(dir, 'bench.img');
  const haveFio = have('fio', ['--version']);
  const samples = new Map<string, number[]>();
  const push = (k: string, v: number): void => void (samples.get(k) ?? samples.set(k, []).get(k)!).push(v);
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const w of WORKLOADS) {
        // Rotate the order each round so no variant always runs first on a cold machine.
        const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length]!);
        for (const v of order) {
          createImage(img, { sizeBytes: IMAGE_BYTES, force: true });
          if (w.pattern === 'random') prepSmallFolios(img);
          push(`${w.name}|${v}`, await measureNode(img, w, v));
        }
        if (haveFio) {
          createImage(img, { sizeBytes: IMAGE_BYTES, force: true });
          if (w.pattern === 'random') prepSmallFolios(img);
          push(`${w.name}|fio`, await measureFio(img, w));
        }
      }
      if (!asJson) process.stderr.write(`round ${round}/${rounds} done\n`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const rows = WORKLOADS.map((w) => {
    const m = (k: string): number => median(samples.get(`${w.name}|${k}`) ?? [NaN]);
    const raw = m('raw sync');
    const sync = m('sanbox sync');
    const prom = m('sanbox promise');
    const fio = haveFio ? m('fio') : NaN;
    return { workload: w.name, rawIops: raw, sanboxSyncIops: sync, sanboxPromiseIops: prom, fioIops: fio, syncVsRaw: sync / raw, promiseVsRaw: prom / raw, syncVsFio: sync / fio };
  });
  if (asJson) {
    process.stdout.write(JSON.stringify({ rounds, timeMs, fio: haveFio, rows }, null, 2) + '\n');
    return;
  }
  console.log(`\nsanbox disk benchmark: 1 GiB sparse image, median of ${rounds} rounds (${os.cpus().length} CPUs)${haveFio ? '' : ' — fio not installed, no fio column'}`);
  console.table(
    rows.map((r) => {
      const w = WORKLOADS.find((x) => x.name === r.workload)!;
      return {
        workload: r.workload,
        'raw readSync/writeSync': rate(w, r.rawIops),
        'sanbox sync': rate(w, r.sanboxSyncIops),
        'sanbox promise': rate(w, r.sanboxPromiseIops),
        'fio psync': haveFio ? rate(w, r.fioIops) : '-',
        'sync/raw': r.syncVsRaw.toFixed(2),
        'promise/raw': r.promiseVsRaw.toFixed(2),
        'sync/fio': haveFio ? r.syncVsFio.toFixed(2) : '-',
      };
    }),
  );
  const worst = Math.min(...rows.map((r) => r.syncVsRaw));
  console.log(`Goal: sanbox sync path within 10% of raw Node pread/pwrite — worst ratio ${worst.toFixed(2)} (${worst >= 0.9 ? 'met' : 'NOT met'}).`);
}

await main();
