// A node that finds itself fenced kills its own clients (src/node/node.ts onSelfFenced,
// src/node/clients.ts), review 7's findings on it. One node started in this process on a fresh
// cluster image; its clients are real processes registered over its control socket
// (`client-register`, as `ctl … lvm` does); the node is fenced as a peer's disk fence does it (its key
// preempted on the cluster image), and its heartbeat, refused, fences it.
//   L2: a client whose registration the node refused (its record write refused: the node is
//       fenced) is not killed by the node's own kill; one registered before is.
//   M1: clients that cannot die at once (frozen in the kernel, D state: a cgroup v1 freezer keeps
//       their SIGKILL pending) are all signalled in one pass and awaited against one deadline:
//       the node knows every client's end one powerFenceWaitMs after its self-fence, not one such
//       wait per client; and its stop waits for none of their control connections (still open:
//       a client that cannot die keeps its own open), so the fenced node's process can end.

import test, { type ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { readProcStat } from '../src/disk/power-fence.js';
import { nodeKey, PersistentReservations } from '../src/disk/reservations.js';
import { clusterTag, initClusterImage, reservationSpec } from '../src/heartbeat/cluster-image.js';
import { connectNode } from '../src/node/ctl.js';
import { startNode, type RunningNode } from '../src/node/node.js';
import { deriveTiming, type Timing } from '../src/timing.js';
import { freeze } from './helpers/frozen.js';
import { exited, spawnChild, tempDir, waitFor } from './helpers/tmp.js';

/** The node under test; node 0 is the peer that preempts it. */
const NODE = 1;
/**
 * A 2 s heartbeat interval: the node's next heartbeat write (which finds the fence) comes two
 * seconds after the last, time enough for a registration to be refused first. powerFenceWaitMs is 2 s.
 */
const TIMING: Timing = deriveTiming({ intervalMs: 2000, deadThreshold: 10, ioTimeoutMs: 400 });
/** Bound on the node finding itself fenced (its next heartbeat write, an interval away), with room. */
const SELF_FENCE_MS = 10_000;
/** Bound on a fenced node's stop: one power fence wait for its clients' ends, the rest bounded by an I/O timeout each, with room. */
const STOP_MS = 4 * TIMING.powerFenceWaitMs;
/** Bound on a killed process being reaped. */
const EXIT_MS = 5000;

interface LogLine {
  atMs: number;
  msg: string;
}

async function nodeOf(t: ExecutionContext): Promise<{ node: RunningNode; image: string; logs: LogLine[] }> {
  const dir = tempDir(t);
  const image = path.join(dir, 'c.img');
  await initClusterImage(image, { clusterName: 'own', nodeCount: 3, timing: TIMING, runDir: path.join(dir, 'run') });
  const logs: LogLine[] = [];
  const node = await startNode({ clusterImage: image, nodeId: NODE, log: (msg) => void logs.push({ atMs: performance.now(), msg }) });
  t.teardown(() => node.stop());
  return { node, image, logs };
}

function idle(t: ExecutionContext): ChildProcess {
  return spawnChild(t, process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
}

/**
 * Registers `c` as a client of the node over a connection of its own, left open as the client's
 * own would be (the registration lasts while it is; a client that cannot die keeps it open).
 */
async function register(t: ExecutionContext, image: string, c: ChildProcess): Promise<void> {
  const conn = await connectNode(image, NODE);
  t.teardown(() => conn.close());
  await conn.request({ cmd: 'client-register', pid: c.pid!, startTicks: readProcStat(c.pid!)!.startTicks.toString() }, undefined, true);
}

/** Node 0 registered on the cluster image's reservations; the returned function preempts the node's key (what a peer's disk fence does). */
async function preempter(t: ExecutionContext, node: RunningNode): Promise<() => Promise<void>> {
  const pr = new PersistentReservations(reservationSpec(node.info));
  t.teardown(() => pr.close());
  const key0 = nodeKey(clusterTag(node.info), 0, 1n);
  await pr.register(0, key0, 100);
  return async () => {
    const r = await pr.preemptAndAbort(0, key0, NODE, node.key, TIMING.fenceGateWaitMs);
    t.not(r, null, "the preempt got the node's gate");
  };
}

/**
 * Once the node has fenced itself, its stop, bounded: it waits for its clients' ends (one deadline)
 * and for no control connection, though the clients' are still open. Returns how long it took.
 */
async function stopFenced(t: ExecutionContext, node: RunningNode): Promise<number> {
  await waitFor(() => node.heartbeat.fencedReason !== undefined, SELF_FENCE_MS, 'the node to fence itself');
  const t0 = performance.now();
  const stopped = await Promise.race([node.stop().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), STOP_MS))]);
  t.true(stopped, `the fenced node stopped within ${STOP_MS} ms, its clients' connections open`);
  return performance.now() - t0;
}

test.serial('a client whose registration the fenced node refused is not killed by it; one registered before is', async (t) => {
  const { node, image, logs } = await nodeOf(t);
  const before = idle(t);
  const refused = idle(t);
  await register(t, image, before);
  const preempt = await preempter(t, node);
  // Right after a heartbeat write: the next one, which finds the fence, is an interval away.
  const { stats } = node.heartbeat;
  const writes = stats.writesOk;
  await waitFor(() => stats.writesOk > writes, 5 * TIMING.intervalMs, 'a heartbeat write', 1);
  await preempt();
  const err = await t.throwsAsync(register(t, image, refused));
  t.is((err as { code?: string }).code, 'EFENCED', `the registration is refused as fenced: ${err?.message}`);
  t.is(node.heartbeat.fencedReason, undefined, 'the node had not fenced itself when it refused the registration (the case under test)');
  await stopFenced(t, node);
  const ends = logs.filter((l) => l.msg.includes('fenced itself: its client')).map((l) => l.msg);
  t.deepEqual(ends, [`node ${NODE} fenced itself: its client pid ${before.pid} killed`]);
  t.is((await exited(before, EXIT_MS)).signal, 'SIGKILL', 'the client registered before the fence was killed');
  t.is(refused.exitCode, null, 'the client whose registration was refused lives (it reports the fence itself)');
  t.not(readProcStat(refused.pid!), null);
});

test.serial('a fenced node signals all its clients at once and knows their ends after one deadline, however many cannot die at once', async (t) => {
  const { node, image, logs } = await nodeOf(t);
  const stopped = idle(t);
  const frozen = [idle(t), idle(t), idle(t)];
  for (const c of [stopped, ...frozen]) await register(t, image, c);
  for (const f of frozen) await freeze(t, f.pid!);
  stopped.kill('SIGSTOP');
  await (await preempter(t, node))();
  const stopMs = await stopFenced(t, node);
  t.log(`the fenced node stopped in ${stopMs.toFixed(0)} ms`);
  const selfFencedAt = logs.find((l) => l.msg.startsWith('SELF-FENCED'))?.atMs;
  const ends = logs.filter((l) => l.msg.includes('fenced itself: its client'));
  t.log(ends.map((l) => l.msg).join('\n'));
  t.deepEqual(ends.map((l) => l.msg), [
    `node ${NODE} fenced itself: its client pid ${stopped.pid} killed`,
    ...frozen.map((f) => `node ${NODE} fenced itself: its client pid ${f.pid} was not ended: still running ${TIMING.powerFenceWaitMs} ms after SIGKILL`),
  ]);
  t.is((await exited(stopped, EXIT_MS)).signal, 'SIGKILL');
  const tookMs = ends.at(-1)!.atMs - selfFencedAt!;
  // One deadline for all: about one wait; one wait per frozen client would be three.
  t.true(tookMs < 2 * TIMING.powerFenceWaitMs, `every client's end was known ${tookMs.toFixed(0)} ms after the self-fence (one wait: ${TIMING.powerFenceWaitMs} ms)`);
  for (const f of frozen) t.is(readProcStat(f.pid!)?.state, 'D', `frozen client ${f.pid} is still there, its SIGKILL pending`);
});
