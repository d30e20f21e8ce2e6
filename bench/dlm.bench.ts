// Lock manager benchmark, one run, with its baselines measured in the same run:
//   1. uncontended lock+unlock latency (tinybench): sanbox dlm EX on a cluster image (this process
//      is a real node: heartbeat, fence gate) vs flock(2) LOCK_EX/LOCK_UN on a local file vs
//      `sanlock direct acquire` + `sanlock direct release` on a file (two process spawns; direct
//      mode has no daemon, reference/locking.md §1.13);
//   2. EX hand-off rate on one resource between 2, 4 and 8 processes (each a real node), vs a
//      flock(2) mutex between the same number of processes;
//   3. throughput on independent resources (4 processes, one resource each), vs flock on one file
//      per process.
// For 2 and 3 every holder, inside its critical section, reads and writes a shared "last owner"
// word, so hand-offs (acquisitions by a different process than the previous holder) are counted
// the same way for both. sanlock direct cannot hand off at all: an acquire by another host id
// fails with -241 and `direct release` never frees (§1.13), so it has no row in 2 and 3.
//
// Usage: npm run bench:dlm [-- --duration-ms 1500 --json]

import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fsExt from 'fs-ext';
import { Bench } from 'tinybench';
import { Mode } from '../src/dlm/compat-matrix.js';
import { Lockspace } from '../src/dlm/lock-manager.js';
import { initClusterImage, openRegion } from '../src/heartbeat/cluster-image.js';
import { presetTiming } from '../src/heartbeat/timing.js';
import { startNode } from '../src/node/node.js';
import { arg } from './common.js';

const SELF = fileURLToPath(import.meta.url);
const NODES = 9; // 8 bench workers + this process
const HANDOFF_PROCS = [2, 4, 8];
const INDEPENDENT_PROCS = 4;

const durationMs = Number(arg('duration-ms', '1500'));
const asJson = process.argv.includes('--json');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The critical section both contenders run: read the last owner, count a hand-off, write ourselves. */
function criticalSection(ownerFd: number, id: number, word: Buffer): boolean {
  fs.readSync(ownerFd, word, 0, 4, 0);
  const handoff = word.readUInt32LE(0) !== id;
  word.writeUInt32LE(id, 0);
  fs.writeSync(ownerFd, word, 0, 4, 0);
  return handoff;
}

// ---------------------------------------------------------------------------------------------
// Worker modes (this file re-executed): --worker dlm|flock IMG_OR_FILE ID RESOURCE OWNERFILE GOFILE

async function worker(): Promise<void> {
  const i = process.argv.indexOf('--worker');
  const [kind, target, idText, resource, ownerFile, goFile] = process.argv.slice(i + 1);
  const id = Number(idText);
  const ownerFd = fs.openSync(ownerFile!, 'r+');
  const word = Buffer.alloc(4);
  let acquisitions = 0;
  let handoffs = 0;
  const waitGo = async () => {
    process.stdout.write('ready\n');
    while (!fs.existsSync(goFile!)) await sleep(2);
  };
  if (kind === 'flock') {
    const fd = fs.openSync(target!, 'r');
    await waitGo();
    const end = performance.now() + durationMs;
    while (performance.now() < end) {
      fsExt.flockSync(fd, 'ex');
      acquisitions++;
      if (criticalSection(ownerFd, id, word)) handoffs++;
      fsExt.flockSync(fd, 'un');
    }
  } else {
    const node = await startNode({ clusterImage: target!, nodeId: id, control: false });
    const ls = await Lockspace.open(await openRegion(node.device, 'lockspace'), { membership: node.membership, hintDir: path.join(node.info.config.runDir, 'dlm') });
    await waitGo();
    const end = performance.now() + durationMs;
    while (performance.now() < end) {
      const lock = await ls.lock(resource!, Mode.EX, { timeoutMs: 10_000 });
      acquisitions++;
      if (criticalSection(ownerFd, id, word)) handoffs++;
      await lock.unlock();
    }
    process.stdout.write(JSON.stringify({ acquisitions, handoffs, stats: ls.stats, wakeups: ls.wakeups }) + '\n');
    await ls.close();
    await node.stop();
    return;
  }
  process.stdout.write(JSON.stringify({ acquisitions, handoffs }) + '\n');
}

// ---------------------------------------------------------------------------------------------

interface PhaseResult {
  acquisitionsPerS: number;
  handoffsPerS: number;
  perProcess: number[];
}

async function phase(kind: 'dlm' | 'flock', procs: number, dir: string, img: string, sharedResource: boolean): Promise<PhaseResult> {
  const ownerFile = path.join(dir, `owner-${kind}-${procs}-${sharedResource}`);
  fs.writeFileSync(ownerFile, Buffer.alloc(4096));
  const goFile = path.join(dir, `go-${kind}-${procs}-${sharedResource}`);
  const children = Array.from({ length: procs }, (_, i) => {
    const id = i + 1; // node 0 is this process
    const target = kind === 'dlm' ? img : path.join(dir, sharedResource ? 'flock-shared' : `flock-${id}`);
    if (kind === 'flock') fs.writeFileSync(target, '');
    const resource = sharedResource ? 'hot' : `res-${id}`;
    const c = spawn(process.execPath, [SELF, '--worker', kind, target, String(id), resource, ownerFile, goFile, '--duration-ms', String(durationMs)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    return { c, out: () => out };
  });
  const deadline = performance.now() + 30_000;
  while (!children.every((ch) => ch.out().includes('ready'))) {
    if (performance.now() > deadline) throw new Error('bench workers did not start');
    await sleep(10);
  }
  // Let every node see every other up before the clock starts.
  await sleep(kind === 'dlm' ? 400 : 0);
  fs.writeFileSync(goFile, '');
  const results = await Promise.all(
    children.map(
      (ch) =>
        new Promise<{ acquisitions: number; handoffs: number }>((resolve, reject) => {
          ch.c.once('exit', (code) => {
            const line = ch.out().trim().split('\n').pop() ?? '';
            if (code !== 0) reject(new Error(`bench worker exited ${code}`));
            else resolve(JSON.parse(line) as { acquisitions: number; handoffs: number });
          });
        }),
    ),
  );
  const seconds = durationMs / 1000;
  return {
    acquisitionsPerS: results.reduce((a, r) => a + r.acquisitions, 0) / seconds,
    handoffsPerS: results.reduce((a, r) => a + r.handoffs, 0) / seconds,
    perProcess: results.map((r) => r.acquisitions),
  };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanbox-bench-dlm-'));
  const img = path.join(dir, 'cluster.img');
  await initClusterImage(img, { clusterName: 'bench', nodeCount: NODES, timing: presetTiming('local'), runDir: path.join(dir, 'run') });
  const report: Record<string, unknown> = {};
  try {
    // 1. Uncontended latency.
    const node = await startNode({ clusterImage: img, nodeId: 0, control: false });
    const ls = await Lockspace.open(await openRegion(node.device, 'lockspace'), { membership: node.membership, hintDir: path.join(node.info.config.runDir, 'dlm') });
    const flockFile = path.join(dir, 'flock-latency');
    fs.writeFileSync(flockFile, '');
    const flockFd = fs.openSync(flockFile, 'r');
    const slImg = path.join(dir, 'sanlock.img');
    fs.writeFileSync(slImg, '');
    fs.truncateSync(slImg, 8 * 1024 * 1024);
    const slSpec = `LS:RES:${slImg}:0`;
    let sanlockOk = true;
    try {
      execFileSync('sanlock', ['direct', 'init', '-r', slSpec], { stdio: 'pipe' });
    } catch (err) {
      sanlockOk = false;
      process.stderr.write(`sanlock direct init failed, skipping that baseline LOUDLY: ${(err as Error).message}\n`);
    }
    const bench = new Bench({ name: 'uncontended lock+unlock', time: 1500, warmupTime: 200 });
    bench.add('sanbox dlm EX lock+unlock (node on a cluster image)', async () => {
      const l = await ls.lock('uncontended', Mode.EX);
      await l.unlock();
    });
    bench.add('flock(2) LOCK_EX+LOCK_UN (baseline)', () => {
      fsExt.flockSync(flockFd, 'ex');
      fsExt.flockSync(flockFd, 'un');
    });
    if (sanlockOk) {
      bench.add('sanlock direct acquire+release (baseline, 2 spawns)', () => {
        execFileSync('sanlock', ['direct', 'acquire', '-r', slSpec, '-i', '1', '-g', '1'], { stdio: 'pipe' });
        execFileSync('sanlock', ['direct', 'release', '-r', slSpec, '-i', '1', '-g', '1'], { stdio: 'pipe' });
      }, { });
    }
    await bench.run();
    const lat = bench.tasks.map((t) => ({ name: t.name, p50Us: (t.result as { latency: { p50: number } }).latency.p50 * 1000, meanUs: (t.result as { latency: { mean: number } }).latency.mean * 1000, samples: (t.result as { latency: { samplesCount: number } }).latency.samplesCount }));
    const dlmStats = { ...ls.stats };
    await ls.close();
    await node.stop();
    fs.closeSync(flockFd);
    report.latency = lat;
    report.dlmCountersDuringLatency = dlmStats;

    // 2. Hand-off rate on one resource.
    const handoff: Record<string, unknown>[] = [];
    for (const n of HANDOFF_PROCS) {
      const d = await phase('dlm', n, dir, img, true);
      const f = await phase('flock', n, dir, img, true);
      handoff.push({ processes: n, dlm: d, flock: f });
    }
    report.handoff = handoff;

    // 3. Independent resources.
    const d = await phase('dlm', INDEPENDENT_PROCS, dir, img, false);
    const f = await phase('flock', INDEPENDENT_PROCS, dir, img, false);
    report.independent = { processes: INDEPENDENT_PROCS, dlm: d, flock: f };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }

  if (asJson) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const lat = report.latency as { name: string; p50Us: number; meanUs: number; samples: number }[];
  const ours = lat[0]!;
  process.stdout.write(`\nsanbox dlm benchmark (${os.cpus().length} CPUs, ${durationMs} ms per multi-process phase)\n\n1. Uncontended lock+unlock latency (tinybench)\n`);
  for (const l of lat) {
    const ratio = l === ours ? '' : `  dlm/baseline = ${(ours.p50Us / l.p50Us).toFixed(2)}x`;
    process.stdout.write(`  ${l.name.padEnd(56)} p50 ${l.p50Us.toFixed(1).padStart(9)} µs  mean ${l.meanUs.toFixed(1).padStart(9)} µs  (${l.samples} samples)${ratio}\n`);
  }
  process.stdout.write('\n2. EX hand-off on one resource (acquisitions/s, hand-offs/s = acquisitions by a different process than the previous holder)\n');
  for (const h of report.handoff as { processes: number; dlm: PhaseResult; flock: PhaseResult }[]) {
    process.stdout.write(
      `  ${String(h.processes).padStart(2)} processes: dlm ${h.dlm.acquisitionsPerS.toFixed(0).padStart(7)} acq/s ${h.dlm.handoffsPerS.toFixed(0).padStart(7)} hand-offs/s | flock ${h.flock.acquisitionsPerS.toFixed(0).padStart(8)} acq/s ${h.flock.handoffsPerS.toFixed(0).padStart(7)} hand-offs/s | ratio dlm/flock hand-offs ${(h.dlm.handoffsPerS / Math.max(1, h.flock.handoffsPerS)).toFixed(3)}x, acquisitions ${(h.dlm.acquisitionsPerS / h.flock.acquisitionsPerS).toFixed(3)}x | per-process dlm ${h.dlm.perProcess.join('/')} flock ${h.flock.perProcess.join('/')}\n`,
    );
  }
  const ind = report.independent as { processes: number; dlm: PhaseResult; flock: PhaseResult };
  process.stdout.write(`\n3. Independent resources, ${ind.processes} processes (one resource each)\n  dlm ${ind.dlm.acquisitionsPerS.toFixed(0)} lock+unlock/s | flock ${ind.flock.acquisitionsPerS.toFixed(0)} lock+unlock/s | ratio ${(ind.dlm.acquisitionsPerS / ind.flock.acquisitionsPerS).toFixed(3)}x\n`);
  process.stdout.write('\n  sanlock direct: no hand-off or multi-process rows — another host id cannot acquire (-241) and direct release never frees (reference/locking.md §1.13).\n');
}

if (process.argv.includes('--worker')) {
  await worker();
  process.exit(0);
} else {
  await main();
  process.exit(0);
}
