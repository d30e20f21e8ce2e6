// NBD benchmark: the disk benchmark's workloads (bench/disk.bench.ts) through sanbox's NBD client
// against a real nbdkit (file plugin) on 127.0.0.1, beside the same image as a local file (the
// sanbox promise path) in the same run, and beside libnbd's own clients: fio's nbd engine (random
// and sequential, same queue depths) and nbdcopy (the sequential workloads).
//
// Page cache is controlled as in the disk benchmark (reference/baselines.md, trap T1): for the
// random workloads the sparse image is read once in random 4 KiB order (small folios); for the
// sequential ones it is filled with data first (so nbdcopy, which skips holes, copies it all).
// Every variant of a workload gets a freshly prepared image.
//
// Usage: npm run bench:nbd [-- --rounds N --time-ms MS --json]

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Bench } from 'tinybench';
import { FileDisk } from '../src/disk/index.js';
import { NbdDevice } from '../src/disk/nbd-device.js';
import type { BlockDevice } from '../src/disk/device.js';
import { startNbdkit, type Nbdkit } from '../test/helpers/nbdkit.js';
import { arg, fioIops, fioRw, have, makeOffsets, median, readPagesInRandomOrder, WORKLOADS, type Workload } from './common.js';

const MiB = 1024 * 1024;
/** Smaller than the disk benchmark's 1 GiB: every variant re-prepares the image, and the network path is the subject here. */
const IMAGE_BYTES = 256 * MiB;
const EXPORT = 'bench.img';
/** Operations per tinybench sample: a loopback NBD op is ~20-40 µs. */
const OPS_PER_SAMPLE = 64;
/** The pipelined variants keep this many requests in flight (nbdkit serves 16 in parallel by default). */
const QUEUE_DEPTH = 16;
const OFFSETS_COUNT = 1 << 16;

type Variant = 'local QD1' | 'nbd QD1' | `nbd QD${typeof QUEUE_DEPTH}`;
const VARIANTS: Variant[] = ['local QD1', 'nbd QD1', `nbd QD${QUEUE_DEPTH}`];

const rounds = Number(arg('rounds', '1'));
const timeMs = Number(arg('time-ms', '700'));
const asJson = process.argv.includes('--json');

function prepare(file: string, w: Workload): void {
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, '');
  fs.truncateSync(file, IMAGE_BYTES);
  const fd = fs.openSync(file, 'r+');
  if (w.pattern === 'random') {
    readPagesInRandomOrder(fd, IMAGE_BYTES);
  } else {
    const chunk = Buffer.alloc(MiB);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131 + 7) & 0xff;
    for (let off = 0; off < IMAGE_BYTES; off += MiB) fs.writeSync(fd, chunk, 0, MiB, off);
  }
  fs.closeSync(fd);
}

/** Ops per second of one variant, from the median per-op time of tinybench samples. */
async function measureNode(dev: BlockDevice, w: Workload, depth: number): Promise<number> {
  const offsets = makeOffsets(w, IMAGE_BYTES, OFFSETS_COUNT);
  let cursor = 0;
  const next = (): number => {
    const o = offsets[cursor]!;
    cursor = (cursor + 1) % OFFSETS_COUNT;
    return o;
  };
  const buffers = Array.from({ length: depth }, () => Buffer.alloc(w.blockBytes, 0x5a));
  const opsPerSample = OPS_PER_SAMPLE * depth;
  const bench = new Bench({ name: w.name, time: timeMs, warmupTime: 100 });
  bench.add(`${depth}`, async () => {
    const t0 = performance.now();
    await Promise.all(
      buffers.map(async (buf) => {
        for (let i = 0; i < OPS_PER_SAMPLE; i++) await (w.op === 'read' ? dev.read(buf, next()) : dev.write(buf, next()));
      }),
    );
    const ms = performance.now() - t0;
    return { overriddenDuration: ms / opsPerSample, overriddenIterationCost: ms };
  });
  await bench.run();
  const r = bench.tasks[0]!.result;
  if (r.state !== 'completed') throw new Error(`${w.name} QD${depth}: ${r.state}`);
  return 1000 / r.latency.p50;
}

/** fio's nbd engine (libnbd) against the same export. */
function measureFioNbd(uri: string, w: Workload, depth: number): number {
  const rw = fioRw(w);
  const out = execFileSync(
    'fio',
    [
      `--name=${rw}`, '--ioengine=nbd', `--uri=${uri}`, `--size=${IMAGE_BYTES}`, '--time_based',
      `--runtime=${Math.max(1, Math.round((timeMs * 2) / 1000))}`, '--norandommap', '--randrepeat=0',
      `--rw=${rw}`, `--bs=${w.blockBytes}`, `--iodepth=${depth}`, '--output-format=json',
    ],
    { encoding: 'utf8', maxBuffer: 16 << 20 },
  );
  return fioIops(out, w);
}

/** nbdcopy the whole export (read) or a local file onto it (write), 1 MiB requests, one connection, QD1. */
function measureNbdcopy(uri: string, w: Workload, localSource: string): number {
  const args = ['-C', '1', '-R', '1', '--request-size=1048576', '--no-extents', '--threads=1'];
  const t0 = performance.now();
  if (w.op === 'read') execFileSync('nbdcopy', [...args, uri, 'null:'], { stdio: 'ignore' });
  else execFileSync('nbdcopy', [...args, localSource, uri], { stdio: 'ignore' });
  const s = (performance.now() - t0) / 1000;
  return IMAGE_BYTES / w.blockBytes / s;
}

function rate(w: Workload, iops: number): string {
  if (!Number.isFinite(iops)) return '-';
  return w.blockBytes >= MiB ? `${((iops * w.blockBytes) / 1e6).toFixed(0)} MB/s` : `${(iops / 1000).toFixed(1)}k IOPS`;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanbox-nbd-bench-'));
  const img = path.join(dir, EXPORT);
  const source = path.join(os.tmpdir(), `sanbox-nbd-bench-src-${process.pid}.img`);
  const haveFio = have('fio', ['--enghelp=nbd']);
  const haveNbdcopy = have('nbdcopy', ['--version']);
  const samples = new Map<string, number[]>();
  const push = (k: string, v: number): void => void (samples.get(k) ?? samples.set(k, []).get(k)!).push(v);
  let srv: Nbdkit | undefined;
  try {
    srv = await startNbdkit({ dir });
    const uri = srv.uri(EXPORT);
    if (haveNbdcopy) {
      prepare(source, WORKLOADS[3]!); // a data-filled local source for the nbdcopy write
    }
    for (let round = 1; round <= rounds; round++) {
      for (const w of WORKLOADS) {
        const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length]!);
        for (const v of order) {
          prepare(img, w);
          const dev: BlockDevice = v === 'local QD1' ? FileDisk.open(img) : await NbdDevice.open(uri);
          try {
            push(`${w.name}|${v}`, await measureNode(dev, w, v === `nbd QD${QUEUE_DEPTH}` ? QUEUE_DEPTH : 1));
          } finally {
            await dev.close();
          }
        }
        if (haveFio) {
          for (const depth of [1, QUEUE_DEPTH]) {
            prepare(img, w);
            push(`${w.name}|fio QD${depth}`, measureFioNbd(uri, w, depth));
          }
        }
        if (haveNbdcopy && w.pattern === 'sequential') {
          prepare(img, w);
          push(`${w.name}|nbdcopy`, measureNbdcopy(uri, w, source));
        }
      }
      if (!asJson) process.stderr.write(`round ${round}/${rounds} done\n`);
    }
  } finally {
    await srv?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(source, { force: true });
  }
  const rows = WORKLOADS.map((w) => {
    const m = (k: string): number => median(samples.get(`${w.name}|${k}`) ?? [NaN]);
    const local = m('local QD1');
    const nbd1 = m('nbd QD1');
    const nbdQ = m(`nbd QD${QUEUE_DEPTH}`);
    const fio1 = m('fio QD1');
    const fioQ = m(`fio QD${QUEUE_DEPTH}`);
    const copy = m('nbdcopy');
    return {
      workload: w.name,
      localIops: local,
      nbdQd1Iops: nbd1,
      nbdQdIops: nbdQ,
      fioNbdQd1Iops: fio1,
      fioNbdQdIops: fioQ,
      nbdcopyIops: copy,
      nbdVsLocal: nbd1 / local,
      nbdVsFioQd1: nbd1 / fio1,
      nbdVsFioQd: nbdQ / fioQ,
      nbdVsNbdcopy: nbd1 / copy,
    };
  });
  if (asJson) {
    process.stdout.write(JSON.stringify({ rounds, timeMs, queueDepth: QUEUE_DEPTH, imageBytes: IMAGE_BYTES, fio: haveFio, nbdcopy: haveNbdcopy, rows }, null, 2) + '\n');
    return;
  }
  const fmt = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '-');
  console.log(
    `\nsanbox NBD benchmark: nbdkit file plugin on 127.0.0.1, ${IMAGE_BYTES / MiB} MiB image, median of ${rounds} round(s), ${os.cpus().length} CPUs` +
      `${haveFio ? '' : ' — fio nbd engine missing'}${haveNbdcopy ? '' : ' — nbdcopy missing'}`,
  );
  console.table(
    rows.map((r) => {
      const w = WORKLOADS.find((x) => x.name === r.workload)!;
      return {
        workload: r.workload,
        'local file QD1': rate(w, r.localIops),
        'nbd QD1': rate(w, r.nbdQd1Iops),
        [`nbd QD${QUEUE_DEPTH}`]: rate(w, r.nbdQdIops),
        'fio-nbd QD1': rate(w, r.fioNbdQd1Iops),
        [`fio-nbd QD${QUEUE_DEPTH}`]: rate(w, r.fioNbdQdIops),
        'nbdcopy QD1': rate(w, r.nbdcopyIops),
        'nbd/local': fmt(r.nbdVsLocal),
        'nbd/fio QD1': fmt(r.nbdVsFioQd1),
        [`nbd/fio QD${QUEUE_DEPTH}`]: fmt(r.nbdVsFioQd),
        'nbd/nbdcopy': fmt(r.nbdVsNbdcopy),
      };
    }),
  );
}

await main();
