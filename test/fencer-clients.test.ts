// A fence ends its victim's clients (src/heartbeat/fencer.ts, src/node/clients.ts), each named by
// pid and start time, from the victim's record as read once the fence is in place. Real
// processes, a fake record. The power fence: the victim node and a stopped client are killed; an
// entry whose pid now belongs to another process (another start time: a reused pid) and one of a
// client that already exited are `gone`, and the process behind the reused pid lives on; a client
// the record names only after the kill (registered while the fence began) is killed too. The disk
// fence (issue 18: a stalled client kept the host's VG flock): the victim lives on, preempted; its
// stopped client is killed after the preempt, the reused pid again left alone; and a victim whose
// record says it runs on another machine (another boot id) has its clients left to itself.
// Review 7: the fence sends every SIGKILL in one pass and does not wait for the clients to go
// (M1): clients frozen in the kernel (D state: a cgroup v1 freezer, where a SIGKILL stays
// pending) do not delay the fence, and their ends are known after one shared deadline; a fencer
// that finds itself fenced before the kill kills nothing and its fence still stands (L1);
// killClients refuses clients of another machine's boot (L3).

import test, { type ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { killClients, readProcStat, selfIdentity } from '../src/disk/power-fence.js';
import { nodeKey, PersistentReservations } from '../src/disk/reservations.js';
import type { NodeClient, NodeRecord } from '../src/format/node-record.js';
import { clusterTag, initClusterImage, reservationSpec } from '../src/heartbeat/cluster-image.js';
import { Fencer, type FencePolicy, type FencerDeps } from '../src/heartbeat/fencer.js';
import { presetTiming } from '../src/timing.js';
import { freeze } from './helpers/frozen.js';
import { exited, spawnChild, tempDir } from './helpers/tmp.js';

/** Bound on a killed process being reaped. */
const EXIT_MS = 5000;
/** The victim's node number and generation in every test. */
const VICTIM = 2;
const GENERATION = 7n;

function idle(t: ExecutionContext): ChildProcess {
  return spawnChild(t, process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
}

function startTicks(c: ChildProcess): bigint {
  return readProcStat(c.pid!)!.startTicks;
}

function clientOf(c: ChildProcess): NodeClient {
  return { pid: c.pid!, startTicks: startTicks(c) };
}

/** The victim's record: process `victim` on the machine of `bootId`, with `clients`. */
function recordOf(victim: ChildProcess, clients: NodeClient[], bootId = selfIdentity().bootId): NodeRecord {
  return { nodeId: VICTIM, generation: GENERATION, pid: victim.pid!, pidStartTicks: startTicks(victim), bootId, joinedAtMs: 0, prKey: 0n, name: 'n2', hostname: 'h', clients };
}

/**
 * A stopped client, a reused pid's entry (the stranger's pid with another start time: a client
 * that exited and whose pid was reused) and an exited client's entry, with the processes behind them.
 */
async function clientEntries(t: ExecutionContext): Promise<{ client: ChildProcess; stranger: ChildProcess; goneId: NodeClient; entries: NodeClient[] }> {
  const client = idle(t);
  const stranger = idle(t);
  const gone = spawnChild(t, process.execPath, ['-e', '']);
  const goneId = clientOf(gone);
  await exited(gone, EXIT_MS);
  client.kill('SIGSTOP');
  return { client, stranger, goneId, entries: [clientOf(client), { pid: stranger.pid!, startTicks: startTicks(stranger) + 1n }, goneId] };
}

function fencerOf(t: ExecutionContext, policy: FencePolicy, readNodeRecord: () => Promise<NodeRecord>, reservations: PersistentReservations[] = [], tag = 1, more: Partial<FencerDeps> = {}): Fencer {
  return new Fencer({ selfNodeId: 0, selfKey: nodeKey(tag, 0, 1n), clusterTag: tag, reservations, readNodeRecord, timing: presetTiming('local'), policy, log: (m) => t.log(m), ...more });
}

/** The cluster image's reservation state with the fencer (node 0) and the victim registered. */
async function reservations(t: ExecutionContext): Promise<{ pr: PersistentReservations; tag: number; victimKey: bigint }> {
  const img = path.join(tempDir(t), 'c.img');
  const info = await initClusterImage(img, { clusterName: 'clients', nodeCount: 3, timing: presetTiming('local') });
  const pr = new PersistentReservations(reservationSpec(info));
  t.teardown(() => pr.close());
  const tag = clusterTag(info);
  const victimKey = nodeKey(tag, VICTIM, GENERATION);
  await pr.register(0, nodeKey(tag, 0, 1n), 100);
  await pr.register(VICTIM, victimKey, 100);
  return { pr, tag, victimKey };
}

test('the power fence kills the clients its victim recorded, by pid and start time: a reused pid and an exited client are left alone', async (t) => {
  const victim = idle(t);
  const late = idle(t);
  const { client, stranger, goneId, entries } = await clientEntries(t);
  // Read before the kill: without the late client; after it, the record the node wrote last.
  const before = recordOf(victim, entries);
  const after = recordOf(victim, [...entries, clientOf(late)]);
  let reads = 0;
  const out = await fencerOf(t, 'power', async () => (reads++ === 0 ? before : after)).fence(VICTIM, GENERATION);
  t.log(out.steps.join(', '));
  t.deepEqual(out.steps, [
    `power:killed(pid ${victim.pid})`,
    `client:sigkill(pid ${client.pid})`,
    `client:gone(pid ${stranger.pid})`,
    `client:gone(pid ${goneId.pid})`,
    `client:sigkill(pid ${late.pid})`,
  ]);
  t.deepEqual((await out.clientsEnded)?.map((e) => e.outcome), ['killed', 'gone', 'gone', 'killed']);
  t.is((await exited(victim, EXIT_MS)).signal, 'SIGKILL');
  t.is((await exited(client, EXIT_MS)).signal, 'SIGKILL', 'the stopped client was killed');
  t.is((await exited(late, EXIT_MS)).signal, 'SIGKILL', 'the client recorded while the fence began was killed');
  t.is(stranger.exitCode, null, 'the process behind the reused pid lives');
  t.not(readProcStat(stranger.pid!), null, 'and is still there');
});

test('the disk fence kills its victim\'s clients on this machine once the victim is preempted; the victim lives on and a reused pid is left alone', async (t) => {
  const victim = idle(t);
  const { client, stranger, goneId, entries } = await clientEntries(t);
  const { pr, tag, victimKey } = await reservations(t);
  // The record as read after the preempt: the client is killed only once the fence is in place.
  const preemptedAtReads: boolean[] = [];
  const out = await fencerOf(t, 'disk', async () => {
    preemptedAtReads.push(pr.readState().preempted[VICTIM] === victimKey);
    return recordOf(victim, entries);
  }, [pr], tag).fence(VICTIM, GENERATION);
  t.log(out.steps.join(', '));
  t.deepEqual(out.steps.map((s) => s.split('(')[0]), ['preempt:preempted', 'client:sigkill', 'client:gone', 'client:gone']);
  t.deepEqual(out.steps.slice(1), [`client:sigkill(pid ${client.pid})`, `client:gone(pid ${stranger.pid})`, `client:gone(pid ${goneId.pid})`]);
  t.is(preemptedAtReads.at(-1), true, 'the clients were read after the preempt');
  t.is((await exited(client, EXIT_MS)).signal, 'SIGKILL', 'the stopped client was killed');
  t.is(victim.exitCode, null, 'the disk-fenced victim lives on');
  t.is(stranger.exitCode, null, 'the process behind the reused pid lives');
  t.not(readProcStat(stranger.pid!), null, 'and is still there');
});

test('the disk fence of a victim on another machine leaves its clients to it (it ends them when it finds itself fenced)', async (t) => {
  const victim = idle(t);
  const client = idle(t);
  const { pr, tag } = await reservations(t);
  const otherBoot = Buffer.from(selfIdentity().bootId.map((b) => b ^ 0xff));
  const out = await fencerOf(t, 'disk', async () => recordOf(victim, [clientOf(client)], otherBoot), [pr], tag).fence(VICTIM, GENERATION);
  t.deepEqual(out.steps.map((s) => s.split('(')[0]), ['preempt:preempted']);
  t.is(client.exitCode, null, 'the client (a process of this machine by that pid) lives');
  t.not(readProcStat(client.pid!), null);
});

test('clients that cannot die at once (frozen in the kernel: SIGKILL stays pending) do not delay the fence, and are waited for against one deadline after it', async (t) => {
  const victim = idle(t);
  const stopped = idle(t);
  const frozen = [idle(t), idle(t), idle(t)];
  // SIGKILL without the freezer: these would be gone in a millisecond. Frozen, each is in D state.
  for (const f of frozen) await freeze(t, f.pid!);
  stopped.kill('SIGSTOP');
  const { pr, tag } = await reservations(t);
  const logs: string[] = [];
  const { powerFenceWaitMs } = presetTiming('local');
  const entries = [...frozen, stopped].map(clientOf);
  const out = await fencerOf(t, 'disk', async () => recordOf(victim, entries), [pr], tag, { log: (m) => void logs.push(m) }).fence(VICTIM, GENERATION);
  const fencedAt = performance.now();
  t.log(`fenced in ${out.durationMs.toFixed(1)} ms: ${out.steps.join(', ')}`);
  t.deepEqual(out.steps.map((s) => s.split('(')[0]), ['preempt:preempted', 'client:sigkill', 'client:sigkill', 'client:sigkill', 'client:sigkill']);
  t.deepEqual(out.steps.slice(1), entries.map((e) => `client:sigkill(pid ${e.pid})`));
  // Without M1's fix the fence waited powerFenceWaitMs for each frozen client in turn.
  t.true(out.durationMs < powerFenceWaitMs, `the fence took ${out.durationMs.toFixed(0)} ms, below one power fence wait (${powerFenceWaitMs} ms)`);
  t.is((await exited(stopped, EXIT_MS)).signal, 'SIGKILL', 'the stopped client died of its SIGKILL meanwhile');
  const ends = await out.clientsEnded;
  const waitedMs = performance.now() - fencedAt;
  t.log(`their ends known ${waitedMs.toFixed(0)} ms after the fence: ${JSON.stringify(ends)}`);
  t.deepEqual(ends?.map((e) => e.outcome), ['survived', 'survived', 'survived', 'killed']);
  t.true(ends?.slice(0, 3).every((e) => e.why === `still running ${powerFenceWaitMs} ms after SIGKILL`));
  // One shared deadline: about one wait in all, not one per frozen client (that would be 3 × the wait).
  t.true(waitedMs < 2 * powerFenceWaitMs, `the ends were known ${waitedMs.toFixed(0)} ms after the fence, within one deadline (${powerFenceWaitMs} ms) and far from one per client`);
  t.deepEqual(logs.filter((l) => l.startsWith('after fencing')), [
    ...frozen.map((f) => `after fencing node ${VICTIM}: its client pid ${f.pid} was not ended: still running ${powerFenceWaitMs} ms after SIGKILL`),
    `after fencing node ${VICTIM}: its client pid ${stopped.pid} killed`,
  ]);
  for (const f of frozen) t.is(readProcStat(f.pid!)?.state, 'D', `frozen client ${f.pid} is still there, its SIGKILL pending`);
});

test('a fencer that finds itself fenced when it comes to the clients kills none, and its completed fence stands', async (t) => {
  const victim = idle(t);
  const client = idle(t);
  const { pr, tag, victimKey } = await reservations(t);
  // This node fences itself once the victim's preempt is done (before the clients' kill).
  const selfFencedReason = (): string | undefined => (pr.readState().preempted[VICTIM] === victimKey ? 'test: its heartbeat was refused meanwhile' : undefined);
  const out = await fencerOf(t, 'disk', async () => recordOf(victim, [clientOf(client)]), [pr], tag, { selfFencedReason }).fence(VICTIM, GENERATION);
  t.log(out.steps.join(', '));
  t.deepEqual(out.steps.map((s) => s.split('(')[0]), ['preempt:preempted', 'clients:stopped']);
  t.is(out.clientsEnded, undefined);
  t.is(client.exitCode, null, 'the client was not killed');
  t.not(readProcStat(client.pid!), null);
});

test('killClients refuses clients named with another machine\'s boot id, and kills nothing', (t) => {
  const client = idle(t);
  const otherBoot = Buffer.from(selfIdentity().bootId.map((b) => b ^ 0xff));
  const err = t.throws(() => killClients([clientOf(client)], otherBoot, 1000));
  t.is((err as { code?: string }).code, 'EFENCED');
  t.regex(err?.message ?? '', /another machine/);
  t.is(client.exitCode, null, 'the process behind that pid on this machine lives');
  t.not(readProcStat(client.pid!), null);
});
