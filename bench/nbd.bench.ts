// NBD benchmark: the disk benchmark's workloads (bench/disk.bench.ts) through sanbox's NBD client
// against two real servers on 127.0.0.1, nbdkit (file plugin) and qemu-nbd, side by side in one
// run with libnbd's own clients on the same server: fio's nbd engine (same queue depths) and
// nbdcopy (the sequential workloads); and the same image as a local file (the sanbox promise path).
//
// Fairness: every cell (workload, server, queue depth) is measured in several short rounds, each
// round one sanbox run and one fio run back to back, their order alternating by round. Both clients
// get exactly the same treatment: the same server process and TCP address, the same image prepared
// the same way before each run (write workloads) or once for the cell (read workloads, which do not
// change it), the same warm-up (fio's --ramp_time; not counted by either) and the same measured
// time, and both report the operations completed in that time over that time (fio's IOPS). Each
// round gives one paired ratio (sanbox over the fio run next to it), which cancels most of a shared
// machine's load drift; a cell's ratio is the median of its rounds' ratios, printed with their
// spread (lowest-highest). No round is dropped. Page cache is controlled
// as in the disk benchmark (reference/baselines.md, trap T1): for the random workloads the sparse
// image is read once in random 4 KiB order (small folios); for the sequential ones it is filled with
// data first (so nbdcopy, which skips holes, copies it all). The image is prepared in place
// (truncated, not replaced), because qemu-nbd keeps its file open. The local file and nbdcopy
// columns are references, measured once per workload (and server).
//
// Also measured in the same rounds, as a third run beside the pair (when fio is there): a bare Node
// client (bench/nbd-floor.ts: structured replies and the same receive and send strategy as sanbox's client,
// without its request machinery), so that a cell's gap to fio splits into what sanbox's client adds
// (sanbox / floor) and what a minimal Node client already costs here (floor / fio). sanbox / floor is
// (sanbox / fio) / (floor / fio) of the same round, so it carries the noise of both. `--no-floor`
// leaves it out.
//
// Also counted, independently of the machine's load: the client's syscalls per 4 KiB read at QD1
// (strace of a client process; the server is not traced).
// It ends with the target of issue 16 for every workload, server and queue depth: sanbox's client
// at >= 0.9x fio-nbd, met or missed.
//
// Usage: npm run bench:nbd [-- --rounds N --time-ms MS --only randread-4k,write-1m,… --servers nbdkit,qemu-nbd --depths 1,16 --no-floor --json]

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FileDisk } from '../src/disk/index.js';
import { NbdDevice } from '../src/disk/nbd-device.js';
import type { BlockDevice } from '../src/disk/device.js';
import { NBD_SERVER_KINDS, startNbdServer, type NbdServer, type NbdServerKind } from '../test/helpers/nbdkit.js';
import { fileURLToPath } from 'node:url';
import { workloadId } from '../src/perf/workloads.js';
import { measureFloor } from './nbd-floor.js';
import { arg, fioIops, fioRw, have, makeOffsets, median, readPagesInRandomOrder, SYSCALL_MARK_END, SYSCALL_MARK_START, syscallsPerOp, targetTable, WORKLOADS, type TargetRow, type Workload } from './common.js';

const MiB = 1024 * 1024;
/** Smaller than the disk benchmark's 1 GiB: every variant re-prepares the image, and the network path is the subject here. */
const IMAGE_BYTES = 256 * MiB;
const EXPORT = 'bench.img';
/** The pipelined variants keep this many requests in flight (nbdkit serves 16 in parallel by default). */
const QUEUE_DEPTH = 16;
const OFFSETS_COUNT = 1 << 16;

const DEPTHS = [1, QUEUE_DEPTH] as const;
/** Issue 16: sanbox's NBD client at least this fraction of fio's nbd engine, every workload, both depths. */
const TARGET_VS_FIO = 0.9;

/** Requests counted under strace (after as many untraced ones). */
const SYSCALL_OPS = 2000;
const SELF = fileURLToPath(import.meta.url);

/** Warm-up before each measured run, for both clients alike (not counted; fio's --ramp_time). */
const WARMUP_MS = 100;

// Five short rounds per cell by default: on a 2-CPU machine shared by the server, the client and
// fio, one pair moves by more than the gap being measured, and a median of five paired ratios
// shrugs off one or two starved pairs without dropping them (about 3.5 minutes in all).
const rounds = Number(arg('rounds', '5'));
const timeMs = Number(arg('time-ms', '400'));
/** A subset of the workloads (their names, comma-separated) and servers, for probing one cell. */
const only = arg('only', '').split(',').filter((x) => x !== '');
/** A workload's name on the command line: randread-4k, write-1m, … (workloadId without its queue depth). */
const cliName = (w: Workload): string => workloadId(w).replace(/-qd\d+$/, '');
const serverKinds = arg('servers', NBD_SERVER_KINDS.join(',')).split(',') as NbdServerKind[];
const asJson = process.argv.includes('--json');
const floorWanted = !process.argv.includes('--no-floor');
for (const k of serverKinds) if (!NBD_SERVER_KINDS.includes(k)) throw new Error(`--servers: unknown server '${k}' (${NBD_SERVER_KINDS.join(', ')})`);
const workloads = WORKLOADS.filter((w) => only.length === 0 || only.includes(cliName(w)));
if (workloads.length === 0) throw new Error(`--only: no workload named ${only.join(', ')} (${WORKLOADS.map(cliName).join(', ')})`);
const depths = arg('depths', DEPTHS.join(',')).split(',').map(Number) as (typeof DEPTHS)[number][];
for (const d of depths) if (!DEPTHS.includes(d)) throw new Error(`--depths: ${d} is not one of ${DEPTHS.join(', ')}`);

function prepare(file: string, w: Workload): void {
  const fd = fs.openSync(file, fs.existsSync(file) ? 'r+' : 'w+');
  // Truncating to 0 drops the data and its page cache; the inode (open in qemu-nbd) stays.
  fs.ftruncateSync(fd, 0);
  fs.ftruncateSync(fd, IMAGE_BYTES);
  if (w.pattern === 'random') {
    readPagesInRandomOrder(fd, IMAGE_BYTES);
  } else {
    const chunk = Buffer.alloc(MiB);
    for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131 + 7) & 0xff;
    for (let off = 0; off < IMAGE_BYTES; off += MiB) fs.writeSync(fd, chunk, 0, MiB, off);
    // Written back now, not by the kernel's flusher 30 s later (dirty_expire_centisecs) in the middle
    // of whichever run is measuring then: a read workload's image lives for all its rounds.
    fs.fdatasyncSync(fd);
  }
  fs.closeSync(fd);
}

/**
 * Ops per second of one variant, counted as fio counts them: `depth` workers keep the queue full;
 * after WARMUP_MS (fio's --ramp_time), the completions during the next `timeMs` over that time
 * (fio's IOs over its runtime). (Draining the queue at the end of a sample would add a stall fio
 * never sees: with qemu-nbd, the last replies of a drained queue waited ~40 ms, as Nagle's
 * algorithm on the server waits for a delayed ACK.)
 *
 * Not tinybench samples of "the time the next N completions take", as before the fourth round:
 * replies come in bursts (one socket read carries many small replies), and the completions of a
 * burst after a sample's last one fell between two samples, counted in neither, while their time
 * was counted. At 1 MiB x QD16 writes, where a sample was 16 completions and a burst up to 15,
 * that under-counted sanbox by up to half (0.5-0.65x fio under SCHED_FIFO, where the same client
 * counted by the wall clock was at 0.95x; docs/nbd.md, "1 MiB requests").
 */
async function measureNode(dev: BlockDevice, w: Workload, depth: number): Promise<number> {
  const offsets = makeOffsets(w, IMAGE_BYTES, OFFSETS_COUNT);
  let cursor = 0;
  const next = (): number => {
    const o = offsets[cursor]!;
    cursor = (cursor + 1) % OFFSETS_COUNT;
    return o;
  };
  let completed = 0;
  let stop = false;
  const workers = Array.from({ length: depth }, async () => {
    const buf = Buffer.alloc(w.blockBytes, 0x5a);
    while (!stop) {
      await (w.op === 'read' ? dev.read(buf, next()) : dev.write(buf, next()));
      completed++;
    }
  });
  try {
    await sleep(WARMUP_MS);
    const [ops0, t0] = [completed, performance.now()];
    await sleep(timeMs);
    const [ops1, t1] = [completed, performance.now()];
    if (ops1 === ops0) throw new Error(`${w.name} QD${depth}: no request completed in ${timeMs} ms`);
    return (ops1 - ops0) / ((t1 - t0) / 1000);
  } finally {
    stop = true;
    await Promise.all(workers);
  }
}

/** fio's nbd engine (libnbd) against the same export. */
function measureFioNbd(uri: string, w: Workload, depth: number): number {
  const rw = fioRw(w);
  const out = execFileSync(
    'fio',
    [
      `--name=${rw}`, '--ioengine=nbd', `--uri=${uri}`, `--size=${IMAGE_BYTES}`, '--time_based',
      `--runtime=${timeMs}ms`, `--ramp_time=${WARMUP_MS}ms`, '--norandommap', '--randrepeat=0',
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

/** The sample key of one measurement. */
type Measure = 'local QD1' | `${NbdServerKind} ${'sanbox' | 'fio' | 'floor'} QD${(typeof DEPTHS)[number]}` | `${NbdServerKind} nbdcopy`;

/** The spread of a cell's per-round ratios, as printed: "0.95 (0.88-1.02)". */
function ratioText(xs: readonly number[]): string {
  if (xs.length === 0) return '-';
  const m = median([...xs]).toFixed(2);
  return xs.length === 1 ? m : `${m} (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`;
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanbox-nbd-bench-'));
  const img = path.join(dir, EXPORT);
  const source = path.join(os.tmpdir(), `sanbox-nbd-bench-src-${process.pid}.img`);
  const haveFio = have('fio', ['--enghelp=nbd']);
  const haveNbdcopy = have('nbdcopy', ['--version']);
  // The floor is a third run in fio's rounds: without fio there are no rounds to put it in.
  const withFloor = floorWanted && haveFio;
  const samples = new Map<string, number[]>();
  const ratios = new Map<string, number[]>();
  const add = (m: Map<string, number[]>, k: string, v: number): void => void (m.get(k) ?? m.set(k, []).get(k)!).push(v);
  const push = (w: Workload, k: Measure, v: number): void => add(samples, `${w.name}|${k}`, v);
  const servers: NbdServer[] = [];
  const syscalls: Partial<Record<NbdServerKind, { total: number; byName: Record<string, number> } | null>> = {};
  const loadAtStart = os.loadavg()[0]!;
  // qemu-nbd does not exit with its parent: stop the servers if the run is interrupted.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const srv of servers) srv.child.kill('SIGKILL');
      process.exit(130);
    });
  }
  try {
    prepare(img, WORKLOADS[0]!);
    for (const kind of serverKinds) servers.push(await startNbdServer(kind, img));
    for (const srv of servers) {
      syscalls[srv.kind] = syscallsPerOp([SELF, '--syscall-worker', srv.uri(EXPORT), String(SYSCALL_OPS), dir], dir, SYSCALL_OPS) ?? null;
    }
    if (haveNbdcopy && workloads.some((w) => w.pattern === 'sequential' && w.op === 'write')) prepare(source, WORKLOADS[3]!); // a data-filled local source for the nbdcopy write
    // A write changes the image (a random write fills holes), so each write run gets a freshly
    // prepared image; a read run leaves it as it was, so a read workload is prepared once.
    const prepareRun = (w: Workload): void => {
      if (w.op === 'write') prepare(img, w);
    };
    for (const w of workloads) {
      prepare(img, w);
      const local = FileDisk.open(img);
      try {
        push(w, 'local QD1', await measureNode(local, w, 1));
      } finally {
        await local.close();
      }
      for (const srv of servers) {
        const uri = srv.uri(EXPORT);
        for (const depth of depths) {
          const sanbox = async (): Promise<void> => {
            prepareRun(w);
            const dev = await NbdDevice.open(uri);
            try {
              push(w, `${srv.kind} sanbox QD${depth}`, await measureNode(dev, w, depth));
            } finally {
              await dev.close();
            }
          };
          const fio = async (): Promise<void> => {
            prepareRun(w);
            push(w, `${srv.kind} fio QD${depth}`, measureFioNbd(uri, w, depth));
          };
          const floor = async (): Promise<void> => {
            prepareRun(w);
            const offsets = makeOffsets(w, IMAGE_BYTES, OFFSETS_COUNT);
            push(w, `${srv.kind} floor QD${depth}`, await measureFloor({ uri, op: w.op, blockBytes: w.blockBytes, depth, offsets, warmupMs: WARMUP_MS, timeMs }));
          };
          for (let round = 1; round <= rounds; round++) {
            if (!haveFio) {
              await sanbox();
              continue;
            }
            // sanbox and fio back to back, their order alternating; the floor after the pair in odd
            // rounds and before it in even ones, so no client always follows the same one.
            const pair = round % 2 === 1 ? [sanbox, fio] : [fio, sanbox];
            for (const run of withFloor ? (round % 2 === 1 ? [...pair, floor] : [floor, ...pair]) : pair) await run();
            // The pair's ratio: measured back to back, it cancels most of the machine's load drift.
            const last = (k: Measure): number => samples.get(`${w.name}|${k}`)?.at(-1) ?? NaN;
            add(ratios, `${w.name}|${srv.kind} QD${depth}`, last(`${srv.kind} sanbox QD${depth}`) / last(`${srv.kind} fio QD${depth}`));
            if (withFloor) {
              add(ratios, `${w.name}|${srv.kind} floor/fio QD${depth}`, last(`${srv.kind} floor QD${depth}`) / last(`${srv.kind} fio QD${depth}`));
              add(ratios, `${w.name}|${srv.kind} sanbox/floor QD${depth}`, last(`${srv.kind} sanbox QD${depth}`) / last(`${srv.kind} floor QD${depth}`));
            }
          }
        }
        if (haveNbdcopy && w.pattern === 'sequential') {
          prepare(img, w);
          push(w, `${srv.kind} nbdcopy`, measureNbdcopy(uri, w, source));
        }
      }
      if (!asJson) process.stderr.write(`${w.name} done (load average ${os.loadavg()[0]!.toFixed(1)})\n`);
    }
  } finally {
    for (const srv of servers) await srv.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(source, { force: true });
  }
  const rows = workloads.flatMap((w) =>
    serverKinds.map((server) => {
      const m = (k: Measure): number => median(samples.get(`${w.name}|${k}`) ?? [NaN]);
      /** A cell's per-round ratios: sanbox / fio, or (`what`) floor/fio or sanbox/floor. */
      const r = (depth: number, what = ''): number[] => ratios.get(`${w.name}|${server} ${what === '' ? '' : `${what} `}QD${depth}`) ?? [];
      const nbd1 = m(`${server} sanbox QD1`);
      const copy = m(`${server} nbdcopy`);
      return {
        workload: w.name,
        server,
        localIops: m('local QD1'),
        nbdQd1Iops: nbd1,
        fioNbdQd1Iops: m(`${server} fio QD1`),
        nbdVsFioQd1: r(1).length > 0 ? median(r(1)) : NaN,
        nbdVsFioQd1Rounds: r(1),
        nbdQdIops: m(`${server} sanbox QD${QUEUE_DEPTH}`),
        fioNbdQdIops: m(`${server} fio QD${QUEUE_DEPTH}`),
        nbdVsFioQd: r(QUEUE_DEPTH).length > 0 ? median(r(QUEUE_DEPTH)) : NaN,
        nbdVsFioQdRounds: r(QUEUE_DEPTH),
        nbdcopyIops: copy,
        nbdVsNbdcopy: nbd1 / copy,
        floorQd1Iops: m(`${server} floor QD1`),
        floorQdIops: m(`${server} floor QD${QUEUE_DEPTH}`),
        floorVsFio: { qd1: r(1, 'floor/fio'), qd: r(QUEUE_DEPTH, 'floor/fio') },
        sanboxVsFloor: { qd1: r(1, 'sanbox/floor'), qd: r(QUEUE_DEPTH, 'sanbox/floor') },
      };
    }),
  );
  const load = `load average ${loadAtStart.toFixed(1)} at the start, ${os.loadavg()[0]!.toFixed(1)} at the end`;
  if (asJson) {
    process.stdout.write(
      JSON.stringify({ rounds, timeMs, warmupMs: WARMUP_MS, queueDepth: QUEUE_DEPTH, imageBytes: IMAGE_BYTES, fio: haveFio, nbdcopy: haveNbdcopy, floor: withFloor, loadAverage: { start: loadAtStart, end: os.loadavg()[0] }, rows, syscallsPer4KiBReadQd1: syscalls }, null, 2) + '\n',
    );
    return;
  }
  const fmt = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '-');
  console.log(
    `\nsanbox NBD benchmark: ${serverKinds.join(' and ')} on 127.0.0.1 (TCP), ${IMAGE_BYTES / MiB} MiB image, ${rounds} round(s) of ${timeMs} ms per cell after ${WARMUP_MS} ms of warm-up, ${os.cpus().length} CPUs, ${load}` +
      `${haveFio ? '' : ' — fio nbd engine missing'}${haveNbdcopy ? '' : ' — nbdcopy missing'}`,
  );
  console.log('Rates: the median over the rounds. nbd/fio: the median of the rounds\' paired ratios (lowest-highest round). local and nbdcopy: one run each.');
  console.table(
    rows.map((r) => {
      const w = WORKLOADS.find((x) => x.name === r.workload)!;
      return {
        workload: r.workload,
        server: r.server,
        'local QD1': rate(w, r.localIops),
        'nbd QD1': rate(w, r.nbdQd1Iops),
        'fio-nbd QD1': rate(w, r.fioNbdQd1Iops),
        'nbd/fio QD1': ratioText(r.nbdVsFioQd1Rounds),
        [`nbd QD${QUEUE_DEPTH}`]: rate(w, r.nbdQdIops),
        [`fio-nbd QD${QUEUE_DEPTH}`]: rate(w, r.fioNbdQdIops),
        [`nbd/fio QD${QUEUE_DEPTH}`]: ratioText(r.nbdVsFioQdRounds),
        nbdcopy: rate(w, r.nbdcopyIops),
        'nbd/nbdcopy': fmt(r.nbdVsNbdcopy),
        ...(withFloor ? { 'floor QD1': rate(w, r.floorQd1Iops), [`floor QD${QUEUE_DEPTH}`]: rate(w, r.floorQdIops) } : {}),
      };
    }),
  );
  for (const [kind, sc] of Object.entries(syscalls)) {
    const text = sc === null || sc === undefined ? 'not counted (strace is not installed)' : `${sc.total.toFixed(1)} (${Object.entries(sc.byName).sort((a, b) => b[1] - a[1]).filter(([, v]) => v >= 0.05).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')})`;
    process.stdout.write(`Client syscalls per 4 KiB read at QD1 against ${kind}, every thread of the client (strace -f over ${SYSCALL_OPS} requests): ${text}\n`);
  }
  const targets: TargetRow[] = rows.flatMap((r) =>
    ([[1, r.nbdVsFioQd1Rounds, r.floorVsFio.qd1, r.sanboxVsFloor.qd1], [QUEUE_DEPTH, r.nbdVsFioQdRounds, r.floorVsFio.qd, r.sanboxVsFloor.qd]] as const)
      .filter(([depth]) => depths.includes(depth))
      .map(([depth, xs, floorXs, overFloorXs]) => {
        const x = xs.length > 0 ? median(xs) : NaN;
        const floorNote = floorXs.length > 0 ? `Node floor / fio ${ratioText(floorXs)}; sanbox / floor ${ratioText(overFloorXs)}` : '';
        return {
          target: `${r.workload}, ${r.server}, QD${depth}: sanbox / fio-nbd`,
          measured: Number.isFinite(x) ? `${x.toFixed(2)}x (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})` : '-',
          goal: `>= ${TARGET_VS_FIO}x`,
          met: Number.isFinite(x) ? x >= TARGET_VS_FIO : null,
          ...(haveFio ? (floorNote ? { note: floorNote } : {}) : { note: 'fio nbd engine missing' }),
        };
      }),
  );
  process.stdout.write(targetTable(`Targets of issue 16 (${load}; per cell ${rounds} round(s) of ${timeMs} ms; a ratio is the median of the rounds' back-to-back pairs, with the lowest and highest round${withFloor ? `; the note: a bare Node client's ratios in the same rounds (bench/nbd-floor.ts)` : ''})`, targets));
}

/** Worker (this file re-executed under strace): COUNT 4 KiB reads at QD1 from URI between two markers. */
async function syscallWorker(uri: string, count: number, markDir: string): Promise<void> {
  const dev = await NbdDevice.open(uri);
  const buf = Buffer.alloc(4096);
  const offsets = makeOffsets(WORKLOADS[0]!, IMAGE_BYTES, OFFSETS_COUNT);
  const run = async () => {
    for (let k = 0; k < count; k++) await dev.read(buf, offsets[k % OFFSETS_COUNT]!);
  };
  await run();
  fs.existsSync(path.join(markDir, SYSCALL_MARK_START));
  await run();
  fs.existsSync(path.join(markDir, SYSCALL_MARK_END));
  await dev.close();
}

const w = process.argv.indexOf('--syscall-worker');
if (w >= 0) await syscallWorker(process.argv[w + 1]!, Number(process.argv[w + 2]), process.argv[w + 3]!);
else await main();
