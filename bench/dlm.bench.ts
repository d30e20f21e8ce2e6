// Lock manager benchmark (issue 16), one run, with its baselines measured in the same run:
//   1. uncontended EX lock+unlock latency (tinybench): sanbox dlm on a cluster image (this process
//      is a real node: heartbeat, fence gate) vs flock(2) LOCK_EX/LOCK_UN on a local file vs
//      `sanlock direct acquire` + `sanlock direct release` (two process spawns; direct mode has no
//      daemon, reference/locking.md §1.13);
//   2. the same latency with 1, 8 and 32 nodes configured (up to 8 running: the others are real
//      node processes) and 0 or 4000 locks held by the other nodes: the ratio best-to-worst;
//   3. EX hand-offs on one resource between 2, 4 and 8 processes (each a real node), vs a flock(2)
//      mutex between the same number of processes, and the hand-off latency p50 of both;
//   4. lock+unlock on independent resources (4 processes, one resource each) vs 4x the rate of one
//      process measured the same way in the same run; flock's same ratio is the machine's ceiling;
//   5. resident memory of a node process holding 4096 locks, vs the same node holding none after
//      the same number of lock+unlocks (V8's young generation grows under a burst of requests
//      whether or not they are held, and the window caches fill: costs of being busy, not of
//      holding), and the live heap per held lock (after a full GC);
//   6. syscalls per uncontended EX lock+unlock, counted by strace in a node process (the one
//      measure here that does not depend on how loaded the machine is).
// It ends with the targets of issue 16, each with its goal and met/missed.
// For 3 and 4 every holder, inside its critical section, reads and writes a shared "last owner"
// word and the time it lets go, so hand-offs (acquisitions by a different process than the
// previous holder) and their latency are counted the same way for both.
//
// Usage: npm run bench:dlm [-- --duration-ms 1500 --json --only latency,scale,handoff,independent,memory --handoff-procs 2,4,8]
// (--only runs the named sections; the closing table then has only their rows.)

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
import { deriveTiming } from '../src/timing.js';
import { startNode, type RunningNode } from '../src/node/node.js';
import { arg, median, SYSCALL_MARK_END, SYSCALL_MARK_START, syscallsPerOp, targetTable, type TargetRow } from './common.js';

const SELF = fileURLToPath(import.meta.url);
/**
 * The local preset's heartbeat interval (so the lock manager polls as it does there: lockPollMaxMs
 * is half the interval) with a 10 s dead time: on a shared, loaded machine a bench node starved of
 * CPU for the local preset's 2 s would be declared dead and fenced (power fence: killed) mid-run.
 * Liveness timing does not enter the cost of a lock.
 */
const BENCH_TIMING = deriveTiming({ intervalMs: 100, deadThreshold: 100, ioTimeoutMs: 2000 }, 'bench');
const NODES = 9; // 8 bench workers + this process
const HANDOFF_PROCS = arg('handoff-procs', '2,4,8').split(',').map(Number);
const INDEPENDENT_PROCS = 4;
const SCALE_CONFIGURED = [1, 8, 32];
const SCALE_RUNNING_MAX = 8;
const SCALE_HELD = [0, 4000];
const RSS_LOCKS = 4096;
/**
 * Uncontended lock+unlocks each worker does before the clock starts (on a resource of its own):
 * without them a worker's first second is mostly JIT compilation, which weighs most on the
 * workers that get the fewest operations in (4 processes sharing 2 CPUs).
 */
const WARMUP_OPS = 2000;
/** How far ahead of the go file's writing the workers' common window starts (they poll for it every 2 ms). */
const GO_LEAD_MS = 50;
/** Operations counted under strace (after as many unstraced ones to warm up). */
const SYSCALL_OPS = 2000;

const durationMs = Number(arg('duration-ms', '1500'));
const asJson = process.argv.includes('--json');
const SECTIONS = ['latency', 'scale', 'handoff', 'independent', 'memory'] as const;
type Section = (typeof SECTIONS)[number];
const only = arg('only', SECTIONS.join(',')).split(',');
for (const o of only) if (!(SECTIONS as readonly string[]).includes(o)) throw new Error(`--only: unknown section "${o}" (sections: ${SECTIONS.join(', ')})`);
const runs = (s: Section) => only.includes(s);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/**
 * An uncontended lock+unlock never leaves the microtask queue (its I/O is synchronous), so a loop
 * of them starves the node's own timers, its heartbeat first: after selfFenceMs (1.7 s local) the
 * node fences itself. Every loop here lets the event loop turn at least every YIELD_EVERY_MS
 * (by time, not by count: on a loaded machine 64 cold lock requests took over a second).
 */
const YIELD_EVERY_MS = 5;
let lastYieldMs = performance.now();
function maybeYield(): Promise<void> | undefined {
  if (performance.now() - lastYieldMs < YIELD_EVERY_MS) return undefined;
  return new Promise((r) =>
    setImmediate(() => {
      lastYieldMs = performance.now();
      r();
    }),
  );
}

/** A clock shared by every process on the machine (ms, sub-µs resolution). */
const wallMs = () => performance.timeOrigin + performance.now();

/**
 * The critical section both contenders run: read the last owner and when it let go, count a
 * hand-off and its latency, then write ourselves. `leave()` stamps the time we let go.
 */
class Shared {
  private readonly word = Buffer.alloc(16);
  constructor(private readonly fd: number, private readonly id: number) {}
  /** Returns the hand-off latency in ms, or undefined when we held it last. */
  enter(): number | undefined {
    fs.readSync(this.fd, this.word, 0, 16, 0);
    const last = this.word.readUInt32LE(0);
    const releasedAt = this.word.readDoubleLE(8);
    this.word.writeUInt32LE(this.id, 0);
    fs.writeSync(this.fd, this.word, 0, 4, 0);
    return last !== this.id && last !== 0 ? wallMs() - releasedAt : undefined;
  }
  leave(): void {
    this.word.writeDoubleLE(wallMs(), 8);
    fs.writeSync(this.fd, this.word, 8, 8, 8);
  }
}

/**
 * A worker's result goes to the file named by `--result`, not to stdout: a line of every hand-off
 * latency can be far larger than a pipe's buffer, and the worker exits right after it.
 */
function emitResult(r: unknown): void {
  fs.writeFileSync(arg('result', ''), JSON.stringify(r));
}

async function openNode(img: string, id: number): Promise<{ node: RunningNode; ls: Lockspace }> {
  const node = await startNode({ clusterImage: img, nodeId: id, control: false, ...(process.env.SANBOX_BENCH_LOG ? { log: (m: string) => process.stderr.write(`[node ${id} pid ${process.pid}] ${m}\n`) } : {}) });
  const ls = await Lockspace.open(await openRegion(node.device, 'lockspace'), { membership: node.membership, hintDir: path.join(node.info.config.runDir, 'dlm') });
  return { node, ls };
}

// ---------------------------------------------------------------------------------------------
// Worker modes (this file re-executed):
//   --worker dlm|flock TARGET ID RESOURCE OWNERFILE GOFILE   contend (or not) on RESOURCE
//   --worker hold IMG ID COUNT STOPFILE                      join, hold COUNT locks, wait
//   --worker rss IMG ID COUNT                                report memory idle, after COUNT lock+unlocks, holding COUNT locks
//   --worker syscalls IMG ID COUNT MARKDIR                   COUNT lock+unlocks between two markers

async function worker(): Promise<void> {
  const i = process.argv.indexOf('--worker');
  const kind = process.argv[i + 1];
  if (kind === 'hold' || kind === 'rss') return holder(kind, process.argv.slice(i + 2));
  if (kind === 'syscalls') return syscallWorker(process.argv.slice(i + 2));
  const [target, idText, resource, ownerFile, goFile] = process.argv.slice(i + 2);
  const id = Number(idText);
  const shared = new Shared(fs.openSync(ownerFile!, 'r+'), id);
  let acquisitions = 0;
  const handoffMs: number[] = [];
  /** Waits for the common start (the go file holds it, wall clock) and returns the common end (performance.now() scale). */
  const waitGo = async (): Promise<number> => {
    process.stdout.write('ready\n');
    await waitForFile(goFile!, 2);
    const startMs = Number(fs.readFileSync(goFile!, 'utf8')) - performance.timeOrigin;
    while (performance.now() < startMs) await sleep(Math.max(0, Math.min(2, startMs - performance.now())));
    return startMs + durationMs;
  };
  const count = (lat: number | undefined) => {
    acquisitions++;
    if (lat !== undefined) handoffMs.push(lat);
  };
  if (kind === 'flock') {
    const fd = fs.openSync(target!, 'r');
    for (let k = 0; k < WARMUP_OPS; k++) {
      fsExt.flockSync(fd, 'ex');
      fsExt.flockSync(fd, 'un');
    }
    const end = await waitGo();
    while (performance.now() < end) {
      fsExt.flockSync(fd, 'ex');
      count(shared.enter());
      shared.leave();
      fsExt.flockSync(fd, 'un');
      await maybeYield(); // as the lock manager's loop does
    }
    emitResult({ acquisitions, handoffMs });
    return;
  }
  const { node, ls } = await openNode(target!, id);
  for (let k = 0; k < WARMUP_OPS; k++) {
    await (await ls.lock(`warm-${id}`, Mode.EX)).unlock();
    await maybeYield();
  }
  const end = await waitGo();
  const before = { ...ls.stats, wakeups: ls.wakeups, hintsSent: ls.hintsSent };
  const cpuBefore = process.cpuUsage();
  while (performance.now() < end) {
    const lock = await ls.lock(resource!, Mode.EX, { timeoutMs: 10_000 });
    count(shared.enter());
    shared.leave();
    await lock.unlock();
    await maybeYield();
  }
  const cpu = process.cpuUsage(cpuBefore);
  const after = { ...ls.stats, wakeups: ls.wakeups, hintsSent: ls.hintsSent };
  const counters: WorkCounters = { cpuUs: cpu.user + cpu.system, windowReads: after.windowReads - before.windowReads, writes: after.writes - before.writes, sleeps: after.waits - before.waits, spinPasses: after.spins - before.spins, spinsDeclined: after.spinsDeclined - before.spinsDeclined, wakeups: after.wakeups - before.wakeups, hintsSent: after.hintsSent - before.hintsSent };
  emitResult({ acquisitions, handoffMs, counters });
  await ls.close();
  await node.stop();
}

interface MemorySample {
  rss: number;
  /** V8 heap in use plus array buffers, after a full GC: what stays live. */
  liveBytes: number;
}

interface MemoryResult {
  rssIdle: number;
  /** After as many lock+unlocks of distinct resources as it then holds, holding none. */
  busy: MemorySample | undefined;
  holding: MemorySample;
  locks: number;
}

async function memorySample(): Promise<MemorySample> {
  (globalThis as { gc?: () => void }).gc?.();
  await sleep(200);
  const m = process.memoryUsage();
  return { rss: m.rss, liveBytes: m.heapUsed + m.arrayBuffers };
}

async function holder(kind: 'hold' | 'rss', args: string[]): Promise<void> {
  const [img, idText, countText, stopFile] = args;
  const id = Number(idText);
  const n = Number(countText);
  const { node, ls } = await openNode(img!, id);
  const rssIdle = process.memoryUsage().rss;
  let busy: MemorySample | undefined;
  if (kind === 'rss') {
    for (let k = 0; k < n; k++) {
      await (await ls.lock(`churn-${id}-${k}`, Mode.EX, { timeoutMs: 10_000 })).unlock();
      await maybeYield();
    }
    busy = await memorySample();
  }
  const held = [];
  for (let k = 0; k < n; k++) {
    held.push(await ls.lock(`held-${id}-${k}`, Mode.EX, { timeoutMs: 10_000 }));
    await maybeYield();
  }
  if (kind === 'rss') {
    const holding = await memorySample();
    emitResult({ rssIdle, busy, holding, locks: held.length } satisfies MemoryResult);
  } else {
    process.stdout.write('ready\n');
    await waitForFile(stopFile!, 20);
  }
  await ls.close();
  await node.stop();
}

/**
 * A worker waits for its parent's go or stop file at most this long: a parent that died (killed,
 * or a node of it fenced and killed) would otherwise leave its workers waiting forever.
 */
const WORKER_WAIT_MS_MAX = 10 * 60_000;

async function waitForFile(file: string, pollMs: number): Promise<void> {
  const deadline = performance.now() + WORKER_WAIT_MS_MAX;
  while (!fs.existsSync(file)) {
    if (performance.now() > deadline) {
      process.stderr.write(`bench worker ${process.pid}: no ${path.basename(file)} within ${WORKER_WAIT_MS_MAX / 1000} s; its parent is gone\n`);
      process.exit(1);
    }
    await sleep(pollMs);
  }
}

/** Uncontended lock+unlocks between two marker syscalls, for strace (syscallsPerOp). */
async function syscallWorker(args: string[]): Promise<void> {
  const [img, idText, countText, markDir] = args;
  const { node, ls } = await openNode(img!, Number(idText));
  const n = Number(countText);
  const run = async () => {
    for (let k = 0; k < n; k++) {
      await (await ls.lock('syscalls', Mode.EX)).unlock();
      await maybeYield();
    }
  };
  await run();
  fs.existsSync(path.join(markDir!, SYSCALL_MARK_START));
  await run();
  fs.existsSync(path.join(markDir!, SYSCALL_MARK_END));
  await ls.close();
  await node.stop();
}

// ---------------------------------------------------------------------------------------------

interface Child {
  c: ReturnType<typeof spawn>;
  out: () => string;
  closed: Promise<void>;
  /** The file the worker writes its result to (emitResult). */
  result: string;
}

let resultSeq = 0;

function spawnWorker(args: string[]): Child {
  const result = path.join(os.tmpdir(), `sanbox-bench-dlm-result-${process.pid}-${resultSeq++}.json`);
  const c = spawn(process.execPath, ['--expose-gc', SELF, '--worker', ...args, '--duration-ms', String(durationMs), '--result', result], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  c.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
  return { c, out: () => out, closed, result };
}

async function waitFor(children: Child[], word: string, boundMs: number): Promise<void> {
  const deadline = performance.now() + boundMs;
  while (!children.every((ch) => ch.out().includes(word))) {
    if (performance.now() > deadline) throw new Error(`bench workers did not say '${word}' within ${boundMs} ms`);
    if (children.some((ch) => ch.c.exitCode !== null && !ch.out().includes(word))) throw new Error('a bench worker exited early');
    await sleep(10);
  }
}

function lastJson<T>(ch: Child): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = () => {
      if (ch.c.exitCode !== 0) return reject(new Error(`bench worker exited ${ch.c.exitCode}`));
      try {
        resolve(JSON.parse(fs.readFileSync(ch.result, 'utf8')) as T);
      } catch (err) {
        reject(err as Error);
      } finally {
        fs.rmSync(ch.result, { force: true });
      }
    };
    void ch.closed.then(done);
  });
}

/** What a lock manager worker did while the clock ran (all its threads' CPU; the lock manager's counters). */
interface WorkCounters {
  cpuUs: number;
  windowReads: number;
  writes: number;
  /** Waits on the waker (a sleep until a hint or the poll bound). */
  sleeps: number;
  /** Passes of the pump that re-read at once instead of sleeping (SPIN_MS). */
  spinPasses: number;
  /** Spins not started because the CPUs had no room (src/dlm/cpu-room.ts). */
  spinsDeclined: number;
  /** Early wake-ups: hints, new requests, membership events. */
  wakeups: number;
  hintsSent: number;
}

interface PhaseResult {
  acquisitionsPerS: number;
  handoffsPerS: number;
  handoffP50Us: number | null;
  perProcess: number[];
  /** Lock manager workers: their counters summed over all of them, per acquisition. */
  perAcquisition?: WorkCounters;
}

async function phase(kind: 'dlm' | 'flock', procs: number, dir: string, img: string, sharedResource: boolean): Promise<PhaseResult> {
  const tag = `${kind}-${procs}-${sharedResource}-${Math.random().toString(36).slice(2, 8)}`;
  // On independent resources each process has its own "last owner" word: one shared file would
  // add contention (its inode lock, its page) that belongs to the benchmark, not to the lock.
  const ownerFileOf = (id: number) => path.join(dir, sharedResource ? `owner-${tag}` : `owner-${tag}-${id}`);
  const goFile = path.join(dir, `go-${tag}`);
  const children = Array.from({ length: procs }, (_, i) => {
    const id = i + 1; // node 0 is this process
    const target = kind === 'dlm' ? img : path.join(dir, sharedResource ? `flock-shared-${tag}` : `flock-${tag}-${id}`);
    if (kind === 'flock') fs.writeFileSync(target, '');
    if (!fs.existsSync(ownerFileOf(id))) fs.writeFileSync(ownerFileOf(id), Buffer.alloc(4096));
    return spawnWorker([kind, target, String(id), sharedResource ? 'hot' : `res-${id}`, ownerFileOf(id), goFile]);
  });
  await waitFor(children, 'ready', 30_000);
  // Let every node see every other up before the clock starts.
  await sleep(kind === 'dlm' ? 400 : 0);
  // Every worker counts over the same window, from a start a little ahead (written whole: a
  // worker may see the file as soon as it exists). A worker that sees it late, or is not
  // scheduled, loses operations, not window: the sum over workers is a rate over one window.
  fs.writeFileSync(`${goFile}.tmp`, String(wallMs() + GO_LEAD_MS));
  fs.renameSync(`${goFile}.tmp`, goFile);
  const results = await Promise.all(children.map((ch) => lastJson<{ acquisitions: number; handoffMs: number[]; counters?: WorkCounters }>(ch)));
  const seconds = durationMs / 1000;
  const lat = results.flatMap((r) => r.handoffMs);
  const acquisitions = results.reduce((a, r) => a + r.acquisitions, 0);
  let perAcquisition: WorkCounters | undefined;
  if (kind === 'dlm' && acquisitions > 0) {
    const sum = (k: keyof WorkCounters) => results.reduce((a, r) => a + r.counters![k], 0) / acquisitions;
    perAcquisition = { cpuUs: sum('cpuUs'), windowReads: sum('windowReads'), writes: sum('writes'), sleeps: sum('sleeps'), spinPasses: sum('spinPasses'), spinsDeclined: sum('spinsDeclined'), wakeups: sum('wakeups'), hintsSent: sum('hintsSent') };
  }
  return {
    acquisitionsPerS: acquisitions / seconds,
    handoffsPerS: lat.length / seconds,
    handoffP50Us: lat.length > 0 ? median(lat) * 1000 : null,
    perProcess: results.map((r) => r.acquisitions),
    ...(perAcquisition !== undefined ? { perAcquisition } : {}),
  };
}

/** p50 of an uncontended EX lock+unlock by node 0 with `configured` nodes, some running and holding locks. */
async function scaleCase(dir: string, configured: number, heldByOthers: number): Promise<{ configured: number; running: number; heldByOthers: number; p50Us: number; windowReads: number }> {
  const img = path.join(dir, `scale-${configured}-${heldByOthers}.img`);
  await initClusterImage(img, { clusterName: 'scale', nodeCount: configured, timing: BENCH_TIMING, runDir: path.join(dir, `run-scale-${configured}-${heldByOthers}`) });
  const running = Math.min(SCALE_RUNNING_MAX, configured);
  const stopFile = path.join(dir, `stop-${configured}-${heldByOthers}`);
  const others = running - 1;
  const helpers = Array.from({ length: others }, (_, i) => {
    const share = Math.floor(heldByOthers / others) + (i < heldByOthers % others ? 1 : 0);
    return spawnWorker(['hold', img, String(i + 1), String(share), stopFile]);
  });
  try {
    await waitFor(helpers, 'ready', 120_000);
    const { node, ls } = await openNode(img, 0);
    // Alone in the cluster, "locks held by others" are this node's own (there is no other node).
    const own = others === 0 ? heldByOthers : 0;
    const mine = [];
    for (let k = 0; k < own; k++) {
      mine.push(await ls.lock(`own-${k}`, Mode.EX));
      await maybeYield();
    }
    const bench = new Bench({ time: durationMs, warmupTime: 200 });
    bench.add('lock+unlock', async () => {
      const l = await ls.lock('scale-probe', Mode.EX);
      await l.unlock();
      await maybeYield();
    });
    await bench.run();
    const t = bench.tasks[0]!.result as { latency: { p50: number } };
    // I/O per operation, counted over a fixed number of them (tinybench's warm-up is not in its count).
    const reads = ls.stats.windowReads;
    const COUNTED_OPS = 200;
    for (let k = 0; k < COUNTED_OPS; k++) {
      await (await ls.lock('scale-probe', Mode.EX)).unlock();
      await maybeYield();
    }
    const perOp = (ls.stats.windowReads - reads) / COUNTED_OPS;
    await ls.close();
    await node.stop();
    return { configured, running, heldByOthers, p50Us: t.latency.p50 * 1000, windowReads: Math.round(perOp * 100) / 100 };
  } finally {
    fs.writeFileSync(stopFile, '');
    await Promise.all(helpers.map((h) => new Promise((r) => (h.c.exitCode !== null ? r(undefined) : h.c.once('exit', r)))));
    fs.rmSync(img, { force: true });
  }
}

const startedMs = performance.now();
/** One line per phase on stderr, so a long run shows where it is. */
function progress(phase: string): void {
  process.stderr.write(`[${((performance.now() - startedMs) / 1000).toFixed(0).padStart(3)} s] ${phase}\n`);
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanbox-bench-dlm-'));
  const img = path.join(dir, 'cluster.img');
  await initClusterImage(img, { clusterName: 'bench', nodeCount: NODES, timing: BENCH_TIMING, runDir: path.join(dir, 'run') });
  const report: Record<string, unknown> = {};
  try {
    // 1. Uncontended latency.
    if (runs('latency')) {
      progress('uncontended latency');
      const { node, ls } = await openNode(img, 0);
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
      // The node runs only while its own task does: the baselines' loops are synchronous and would
      // starve its heartbeat (a node silent for selfFenceMs fences itself, and its peers kill it).
      const bench = new Bench({ name: 'uncontended lock+unlock', time: durationMs, warmupTime: 200 });
      bench.add('sanbox dlm EX lock+unlock (node on a cluster image)', async () => {
        const l = await ls.lock('uncontended', Mode.EX);
        await l.unlock();
        await maybeYield();
      });
      await bench.run();
      report.dlmCountersDuringLatency = { ...ls.stats };
      await ls.close();
      await node.stop();
      const baselines = new Bench({ name: 'baselines', time: durationMs, warmupTime: 200 });
      baselines.add('flock(2) LOCK_EX+LOCK_UN (baseline)', () => {
        fsExt.flockSync(flockFd, 'ex');
        fsExt.flockSync(flockFd, 'un');
      });
      if (sanlockOk) {
        baselines.add('sanlock direct acquire+release (baseline, 2 spawns)', () => {
          execFileSync('sanlock', ['direct', 'acquire', '-r', slSpec, '-i', '1', '-g', '1'], { stdio: 'pipe' });
          execFileSync('sanlock', ['direct', 'release', '-r', slSpec, '-i', '1', '-g', '1'], { stdio: 'pipe' });
        });
      }
      await baselines.run();
      type Lat = { latency: { p50: number; mean: number; samplesCount: number } };
      const tasks = [...bench.tasks, ...baselines.tasks];
      for (const t of tasks) if ((t.result as { error?: unknown }).error !== undefined) throw new Error(`benchmark task "${t.name}" failed: ${String((t.result as { error?: unknown }).error)}`);
      report.latency = tasks.map((t) => ({ name: t.name, p50Us: (t.result as Lat).latency.p50 * 1000, meanUs: (t.result as Lat).latency.mean * 1000, samples: (t.result as Lat).latency.samplesCount }));
      fs.closeSync(flockFd);
      progress('syscalls per lock+unlock (strace)');
      report.syscalls = syscallsPerOp([SELF, '--worker', 'syscalls', img, '1', String(SYSCALL_OPS), dir], dir, SYSCALL_OPS) ?? null;

    }
    // 2. Cost against cluster size and locks held elsewhere.
    if (runs('scale')) {
      progress('1/8/32 nodes, 0/4000 locks held elsewhere');
      const scale = [];
      for (const configured of SCALE_CONFIGURED) for (const held of SCALE_HELD) scale.push(await scaleCase(dir, configured, held));
      report.scale = scale;
    }

    // 3. Hand-off rate and latency on one resource.
    if (runs('handoff')) {
      progress('hand-offs');
      const handoff: Record<string, unknown>[] = [];
      for (const n of HANDOFF_PROCS) {
        const d = await phase('dlm', n, dir, img, true);
        const f = await phase('flock', n, dir, img, true);
        handoff.push({ processes: n, dlm: d, flock: f });
      }
      report.handoff = handoff;
    }

    // 4. Independent resources, against 4x one process.
    if (runs('independent')) {
      progress('independent resources');
      report.independent = {
        processes: INDEPENDENT_PROCS,
        dlm: await phase('dlm', INDEPENDENT_PROCS, dir, img, false),
        dlmOne: await phase('dlm', 1, dir, img, false),
        flock: await phase('flock', INDEPENDENT_PROCS, dir, img, false),
        flockOne: await phase('flock', 1, dir, img, false),
      };
    }

    // 5. Memory of a node holding 4096 locks.
    if (runs('memory')) {
      progress('memory');
      report.memory = await lastJson<MemoryResult>(spawnWorker(['rss', img, '1', String(RSS_LOCKS)]));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }

  if (asJson) {
    process.stdout.write(JSON.stringify({ ...report, targets: targetRows(report), loadAverage: os.loadavg()[0] }, null, 2) + '\n');
    return;
  }
  printReport(report);
}

function workText(c: WorkCounters | undefined): string {
  if (c === undefined) return '-';
  return `CPU ${c.cpuUs.toFixed(0)} µs, ${c.windowReads.toFixed(2)} window reads, ${c.writes.toFixed(2)} writes, ${c.spinPasses.toFixed(1)} spin passes, ${c.spinsDeclined.toFixed(2)} spins declined, ${c.sleeps.toFixed(2)} sleeps, ${c.wakeups.toFixed(2)} early wake-ups, ${c.hintsSent.toFixed(2)} hints sent`;
}

type Latency = { name: string; p50Us: number; meanUs: number; samples: number };
type ScaleRow = { configured: number; running: number; heldByOthers: number; p50Us: number; windowReads: number };
type HandoffRow = { processes: number; dlm: PhaseResult; flock: PhaseResult };
type Independent = { processes: number; dlm: PhaseResult; dlmOne: PhaseResult; flock: PhaseResult; flockOne: PhaseResult };

/**
 * The highest ratio N processes can reach on this machine if each needs at least the CPU per
 * lock+unlock that one alone needs (it does not fall with more processes: see perAcquisition of the
 * two runs): one process keeps `busy` CPUs busy (its CPU per operation, every thread of it, times its
 * rate), N of them would want N x busy, and the machine has os.cpus() to give, fewer when others load
 * it. `usedN` is the N-process run's own use: near os.cpus(), that run was CPU-bound. Undefined when
 * the CPU per operation was not counted.
 */
function cpuCeiling(ind: Independent): { busy: number; usedN: number; ceiling: number } | undefined {
  const one = ind.dlmOne.perAcquisition;
  const all = ind.dlm.perAcquisition;
  if (one === undefined || all === undefined) return undefined;
  const busy = (one.cpuUs * ind.dlmOne.acquisitionsPerS) / 1e6;
  const usedN = (all.cpuUs * ind.dlm.acquisitionsPerS) / 1e6;
  return { busy, usedN, ceiling: Math.min(1, os.cpus().length / (ind.processes * busy)) };
}

function ceilingText(ind: Independent): string {
  const c = cpuCeiling(ind);
  if (c === undefined) return '';
  const cpus = os.cpus().length;
  return `one process alone keeps ${c.busy.toFixed(2)} CPU busy, so ${ind.processes} such on ${cpus} CPUs can reach at most ${c.ceiling.toFixed(2)}x (if none needs less CPU per operation than one alone); the ${ind.processes}-process run used ${c.usedN.toFixed(2)} of ${cpus} CPUs (load average ${os.loadavg()[0]!.toFixed(1)})`;
}

/** Independent resources: N processes' rate over N x one process's, for the lock and for flock (the machine's ceiling). */
function independentRatios(ind: Independent): { dlm: number; flock: number } {
  return {
    dlm: ind.dlm.acquisitionsPerS / (ind.processes * ind.dlmOne.acquisitionsPerS),
    flock: ind.flock.acquisitionsPerS / (ind.processes * ind.flockOne.acquisitionsPerS),
  };
}

function printReport(report: Record<string, unknown>): void {
  const w = (s: string) => process.stdout.write(s);
  w(`\nsanbox dlm benchmark (${os.cpus().length} CPUs, load ${os.loadavg()[0]!.toFixed(1)}, ${durationMs} ms per phase${only.length < SECTIONS.length ? `; sections ${only.join(', ')}` : ''})\n`);
  const lat = report.latency as Latency[] | undefined;
  if (lat !== undefined) {
    const ours = lat[0]!;
    w('\n1. Uncontended EX lock+unlock latency (tinybench; target p50 <= 50 µs)\n');
    for (const l of lat) {
      const ratio = l === ours ? '' : `  dlm/baseline = ${(ours.p50Us / l.p50Us).toFixed(2)}x`;
      w(`  ${l.name.padEnd(56)} p50 ${l.p50Us.toFixed(1).padStart(9)} µs  mean ${l.meanUs.toFixed(1).padStart(9)} µs  (${l.samples} samples)${ratio}\n`);
    }
  }
  const scale = report.scale as ScaleRow[] | undefined;
  if (scale !== undefined) {
    w('\n2. The same with N nodes configured, up to 8 running, 0 or 4000 locks held by the others (target best-to-worst <= 1.5x)\n');
    for (const s of scale) w(`  ${String(s.configured).padStart(2)} configured, ${s.running} running, ${String(s.heldByOthers).padStart(4)} held elsewhere: p50 ${s.p50Us.toFixed(1).padStart(7)} µs, ${s.windowReads} window reads per lock+unlock\n`);
    const p50s = scale.map((s) => s.p50Us);
    w(`  best-to-worst: ${(Math.max(...p50s) / Math.min(...p50s)).toFixed(2)}x\n`);
  }
  const hand = report.handoff as HandoffRow[] | undefined;
  if (hand !== undefined) {
    w('\n3. EX hand-off on one resource (hand-offs = acquisitions by a different process than the previous holder; target dlm/flock >= 0.5x)\n');
    for (const h of hand) {
      const p = (x: number | null) => (x === null ? '-' : `${x.toFixed(0)} µs`);
      w(
        `  ${String(h.processes).padStart(2)} processes: dlm ${h.dlm.handoffsPerS.toFixed(0).padStart(6)} hand-offs/s (p50 ${p(h.dlm.handoffP50Us)}, ${h.dlm.acquisitionsPerS.toFixed(0)} acq/s) | flock ${h.flock.handoffsPerS.toFixed(0).padStart(6)} hand-offs/s (p50 ${p(h.flock.handoffP50Us)}, ${h.flock.acquisitionsPerS.toFixed(0)} acq/s) | dlm/flock hand-offs ${(h.dlm.handoffsPerS / Math.max(1, h.flock.handoffsPerS)).toFixed(2)}x | per process dlm ${h.dlm.perProcess.join('/')} flock ${h.flock.perProcess.join('/')}\n` +
          `      dlm, all processes, per acquisition: ${workText(h.dlm.perAcquisition)}\n`,
      );
    }
  }
  const ind = report.independent as Independent | undefined;
  if (ind !== undefined) {
    const r = independentRatios(ind);
    w(`\n4. Independent resources (target >= 0.7x of ${ind.processes}x one process)\n  dlm ${ind.processes} processes ${ind.dlm.acquisitionsPerS.toFixed(0)} lock+unlock/s, 1 process ${ind.dlmOne.acquisitionsPerS.toFixed(0)}/s: ratio ${r.dlm.toFixed(2)}x\n  flock ${ind.processes} processes ${ind.flock.acquisitionsPerS.toFixed(0)}/s, 1 process ${ind.flockOne.acquisitionsPerS.toFixed(0)}/s: ratio ${r.flock.toFixed(2)}x (the machine's ceiling for ${ind.processes} processes on ${os.cpus().length} CPUs)\n  dlm's ratio over flock's: ${(r.dlm / r.flock).toFixed(2)}\n  ${ceilingText(ind) || 'CPU per lock+unlock not counted'}\n  dlm per lock+unlock, 4 processes: ${workText(ind.dlm.perAcquisition)}; 1 process: ${workText(ind.dlmOne.perAcquisition)}\n`);
  }
  const mem = report.memory as MemoryResult | undefined;
  if (mem !== undefined) {
    const mib = (b: number) => (b / 2 ** 20).toFixed(1);
    const perLockKiB = (a: number, b: number) => ((b - a) / mem.locks / 1024).toFixed(2);
    w(`\n5. Memory: a node process holding ${mem.locks} locks: RSS ${mib(mem.holding.rss)} MiB (${mib(mem.rssIdle)} MiB idle: ${perLockKiB(mem.rssIdle, mem.holding.rss)} KiB per lock`);
    w(mem.busy === undefined ? ')\n' : `; ${mib(mem.busy.rss)} MiB holding none after ${mem.locks} lock+unlocks: ${perLockKiB(mem.busy.rss, mem.holding.rss)} KiB per held lock; live heap ${perLockKiB(mem.busy.liveBytes, mem.holding.liveBytes)} KiB per held lock)\n`);
  }
  const sc = report.syscalls as { total: number; byName: Record<string, number> } | null | undefined;
  if (sc !== undefined) {
    const scText = sc === null ? 'not counted (strace is not installed)' : `${sc.total.toFixed(1)} (${Object.entries(sc.byName).sort((a, b) => b[1] - a[1]).filter(([, v]) => v >= 0.05).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')})`;
    w(`\n6. Syscalls per uncontended EX lock+unlock, every thread of a node process (strace -f over ${SYSCALL_OPS} operations): ${scText}\n`);
  }
  w('\n  sanlock direct: no hand-off or multi-process rows — another host id cannot acquire (-241) and direct release never frees (reference/locking.md §1.13).\n');
  w(targetTable(`Targets of issue 16 (load average ${os.loadavg()[0]!.toFixed(1)} at the end; timings on a loaded machine are shares of a CPU)`, targetRows(report)));
}

/** The issue's targets from a report (the sections that ran): goal, measured, met (printed last, and in --json). */
function targetRows(report: Record<string, unknown>): TargetRow[] {
  const rows: TargetRow[] = [];
  const lat = report.latency as Latency[] | undefined;
  if (lat !== undefined) {
    const ours = lat[0]!;
    rows.push({ target: 'uncontended EX lock+unlock p50', measured: `${ours.p50Us.toFixed(1)} µs`, goal: '<= 50 µs', met: ours.p50Us <= 50, note: `${(ours.p50Us / lat[1]!.p50Us).toFixed(0)}x flock(2)` });
  }
  const scale = report.scale as ScaleRow[] | undefined;
  if (scale !== undefined) {
    const p50s = scale.map((s) => s.p50Us);
    rows.push({ target: 'best-to-worst over 1/8/32 nodes, 0/4000 held elsewhere', measured: `${(Math.max(...p50s) / Math.min(...p50s)).toFixed(2)}x`, goal: '<= 1.5x', met: Math.max(...p50s) / Math.min(...p50s) <= 1.5 });
  }
  for (const h of (report.handoff as HandoffRow[] | undefined) ?? []) {
    const x = h.dlm.handoffsPerS / Math.max(1, h.flock.handoffsPerS);
    rows.push({ target: `EX hand-offs/s vs a flock mutex, ${h.processes} processes`, measured: `${x.toFixed(2)}x`, goal: '>= 0.5x', met: x >= 0.5, note: `hand-off p50 ${h.dlm.handoffP50Us === null ? '-' : `${h.dlm.handoffP50Us.toFixed(0)} µs`}` });
  }
  const ind = report.independent as Independent | undefined;
  if (ind !== undefined) {
    const r = independentRatios(ind);
    const ceiling = ceilingText(ind);
    rows.push({ target: `${ind.processes} processes on independent resources vs ${ind.processes}x one`, measured: `${r.dlm.toFixed(2)}x`, goal: '>= 0.7x', met: r.dlm >= 0.7, note: `flock's own ratio in this run: ${r.flock.toFixed(2)}x (the ceiling of ${ind.processes} processes on ${os.cpus().length} CPUs); dlm/flock ratio ${(r.dlm / r.flock).toFixed(2)}${ceiling ? `; ${ceiling}` : ''}` });
  }
  return rows;
}

if (process.argv.includes('--worker')) {
  await worker();
  process.exit(0);
} else {
  await main();
  process.exit(0);
}
