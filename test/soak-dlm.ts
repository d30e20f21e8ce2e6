// `npm run soak:dlm`: the lock manager under a long, hostile load (issue 16). Rounds of 16 node
// processes (test/helpers/dlm-worker.ts: real nodes with heartbeat, membership, fencing) run
// random lock/convert/unlock operations on a few resources of one cluster image; in every round
// one holder is killed with SIGKILL and another is stopped with SIGSTOP while it holds a lock (the
// cluster fences it; SIGCONT afterwards). Each round's history is checked by the same checker as
// test/dlm-multiprocess (mutual exclusion, FIFO, completeness, fresh value blocks). Rounds run until
// at least --ops operations (requests, conversions and releases) were recorded. Prints every
// violation and exits 1 if there was any, or if a survivor failed.
//
// Usage: npm run soak:dlm [-- --processes 16 --ops 100000 --resources 8 --ops-per-process 700]

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { initClusterImage } from '../src/heartbeat/cluster-image.js';
import { deriveTiming } from '../src/timing.js';
import { checkHistory, readHistory, summary } from './helpers/dlm-history.js';

const WORKER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers/dlm-worker.js');

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
  return v;
}

const PROCESSES = arg('processes', 16);
const OPS_TARGET = arg('ops', 100_000);
const RESOURCES = arg('resources', 8);
const OPS_PER_PROCESS = arg('ops-per-process', 700);
/** A request waits at most this long; a dead holder is fenced within ~3 s at the local preset. */
const REQUEST_TIMEOUT_MS = 30_000;
/** Every bounded wait of the soak (start, a victim caught holding, fencing seen, a round's end). */
const JOIN_BOUND_MS = 120_000;
const CATCH_HOLDING_MS = 10_000;
const FENCE_SEEN_MS = 20_000;
const ROUND_BOUND_MS = 30 * 60_000;

/**
 * Heartbeat timing of the soak: 16 node processes plus their workload on a 2-CPU machine stall for
 * longer than the local preset's 500 ms I/O timeout, and a node that stalls is (rightly) fenced. The
 * soak is about the lock manager, so it gives heartbeats room: 200 ms interval, dead after 6 s.
 * (Nodes fenced anyway are counted as crashed: the power fence killed them.)
 */
const SOAK_TIMING = deriveTiming({ intervalMs: 200, deadThreshold: 30, ioTimeoutMs: 2_000 }, 'soak');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(cond: () => boolean, boundMs: number, what: string): Promise<boolean> {
  const end = performance.now() + boundMs;
  while (!cond()) {
    if (performance.now() > end) {
      process.stdout.write(`  (gave up waiting for ${what} after ${boundMs} ms)\n`);
      return false;
    }
    await sleep(20);
  }
  return true;
}

function lastLine(file: string): string {
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
  return lines[lines.length - 1] ?? '';
}

const holding = (file: string) => /"ev":"(granted|converted)"/.test(lastLine(file)) && !/"mode":"NL"/.test(lastLine(file));

interface RoundResult {
  ops: number;
  violations: string[];
  survivorsFailed: string[];
  summary: string;
}

async function round(n: number, seed: number): Promise<RoundResult> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sanbox-soak-dlm-${n}-`));
  const img = path.join(dir, 'cluster.img');
  await initClusterImage(img, { clusterName: 'soak', nodeCount: PROCESSES, timing: SOAK_TIMING, runDir: path.join(dir, 'run') });
  const workers: ChildProcess[] = [];
  const outs: string[] = [];
  const errs: string[] = [];
  try {
    for (let i = 0; i < PROCESSES; i++) {
      const c = spawn(process.execPath, [WORKER, img, String(i), String(PROCESSES), path.join(dir, `h-${i}.jsonl`), String(seed + i * 7919), String(OPS_PER_PROCESS), String(RESOURCES), String(REQUEST_TIMEOUT_MS)], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, DLM_JOIN_BOUND_MS: String(JOIN_BOUND_MS) },
      });
      outs.push('');
      errs.push('');
      c.stdout!.on('data', (d: Buffer) => (outs[i] += d.toString()));
      c.stderr!.on('data', (d: Buffer) => (errs[i] += d.toString()));
      workers.push(c);
    }
    const ready = await waitUntil(() => outs.every((o, i) => o.includes('ready') || workers[i]!.exitCode !== null), JOIN_BOUND_MS, 'all workers ready');
    const notStarted = workers.flatMap((w, i) => (outs[i]!.includes('ready') ? [] : [`node ${i} (exit ${w.exitCode}): ${errs[i]!.trim().split('\n').slice(-3).join(' | ') || 'no output'}`]));
    if (!ready || notStarted.length > 0) throw new Error(`round ${n}: workers did not start:\n${notStarted.join('\n')}`);
    fs.writeFileSync(path.join(dir, 'go'), '');

    // Chaos: one SIGKILL and one SIGSTOP of a process caught holding a lock.
    const crashed = new Set<number>();
    const pick = () => {
      const live = workers.map((w, i) => i).filter((i) => workers[i]!.exitCode === null && !crashed.has(i));
      return live[Math.floor(Math.random() * live.length)];
    };
    await sleep(1000 + Math.random() * 2000);
    const victim = pick();
    if (victim !== undefined) {
      await waitUntil(() => holding(path.join(dir, `h-${victim}.jsonl`)), CATCH_HOLDING_MS, `node ${victim} holding a lock`);
      workers[victim]!.kill('SIGKILL');
      crashed.add(victim);
      process.stdout.write(`  round ${n}: SIGKILL node ${victim}\n`);
    }
    await sleep(1000 + Math.random() * 2000);
    const stopped = pick();
    if (stopped !== undefined) {
      await waitUntil(() => holding(path.join(dir, `h-${stopped}.jsonl`)), CATCH_HOLDING_MS, `node ${stopped} holding a lock`);
      workers[stopped]!.kill('SIGSTOP');
      crashed.add(stopped);
      process.stdout.write(`  round ${n}: SIGSTOP node ${stopped}\n`);
      await waitUntil(() => readHistory(dir).some((e) => e.ev === 'fenced' && e.victim === stopped), FENCE_SEEN_MS, `node ${stopped} fenced`);
      workers[stopped]!.kill('SIGCONT');
    }

    const exits = await Promise.all(
      workers.map(
        (w) =>
          new Promise<number | null>((resolve) => {
            if (w.exitCode !== null || w.signalCode !== null) return resolve(w.exitCode);
            const t = setTimeout(() => {
              w.kill('SIGKILL');
              resolve(-1);
            }, ROUND_BOUND_MS);
            w.once('exit', (code) => {
              clearTimeout(t);
              resolve(code);
            });
          }),
      ),
    );
    const events = readHistory(dir);
    // A node the cluster fenced on its own (a stall under load) was killed by the power fence or
    // stopped by its gate: it is a crash like ours, and its unanswered requests are allowed.
    // (A node that finished and left is reported fenced too; that one is not a crash.)
    const doneAt = new Map(events.filter((e) => e.ev === 'done').map((e) => [e.node, e.t]));
    for (const e of events) if (e.ev === 'fenced' && e.victim !== undefined && !crashed.has(e.victim) && !((doneAt.get(e.victim) ?? e.t + 1n) < e.t)) {
      crashed.add(e.victim);
      process.stdout.write(`  round ${n}: node ${e.victim} was fenced by the cluster (not by the soak)\n`);
    }
    const survivorsFailed = exits.flatMap((code, i) => (crashed.has(i) || code === 0 ? [] : [`round ${n} node ${i} exited ${code}: ${errs[i]!.trim().split('\n').pop()}`]));
    const r = checkHistory(events, crashed);
    const ops = events.filter((e) => e.ev === 'request' || e.ev === 'convert-request' || e.ev === 'release-start').length;
    return { ops, violations: r.violations.map((v) => `round ${n}: ${v}`), survivorsFailed, summary: summary(r) };
  } finally {
    for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const seed = Date.now() % 1_000_000;
  process.stdout.write(`dlm soak: ${PROCESSES} processes per round, ${RESOURCES} resources, ${OPS_PER_PROCESS} operations per process, until ${OPS_TARGET} operations; seed base ${seed}\n`);
  let ops = 0;
  let rounds = 0;
  const violations: string[] = [];
  const failed: string[] = [];
  while (ops < OPS_TARGET) {
    rounds++;
    const r = await round(rounds, seed + rounds * 104729);
    ops += r.ops;
    violations.push(...r.violations);
    failed.push(...r.survivorsFailed);
    process.stdout.write(`  round ${rounds}: ${r.ops} operations (${ops} in all), ${r.violations.length} violations; ${r.summary}\n`);
  }
  const s = ((performance.now() - t0) / 1000).toFixed(0);
  process.stdout.write(`\n${ops} operations in ${rounds} rounds (${s} s), ${rounds} SIGKILLs and ${rounds} SIGSTOPs of holders: ${violations.length} violations, ${failed.length} failed survivors\n`);
  for (const v of violations) process.stdout.write(`VIOLATION ${v}\n`);
  for (const f of failed) process.stdout.write(`FAILED ${f}\n`);
  process.exit(violations.length === 0 && failed.length === 0 ? 0 : 1);
}

await main();
