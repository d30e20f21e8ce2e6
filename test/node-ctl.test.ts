// `sanbox ctl` against running node processes (separate OS processes on one cluster image):
// status, fault set/ls/clear on the node's own devices (stall, EIO, release), locks held in the
// node, a stalled node declared dead and fenced, and a clear one-line error within the bound once
// it is gone.

import test from 'ava';
import path from 'node:path';
import { clusterInit, isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { runSanbox, tempDir } from './helpers/tmp.js';
import { CTL_ANSWER_TIMEOUT_MS, CTL_CONNECT_TIMEOUT_MS, ctlRequest } from '../src/node/ctl.js';

const UP_TIMEOUT_MS = 10_000;
/** The local preset's dead time (2 s), plus fencing and a loaded machine's slack. */
const FENCED_TIMEOUT_MS = 8000;

async function cluster(t: import('ava').ExecutionContext, nodes: number): Promise<string> {
  const img = path.join(tempDir(t), 'cluster.img');
  await clusterInit(t, [img, '--nodes', String(nodes), '--name', 'ctl', '--node-names', Array.from({ length: nodes }, (_, i) => `n${i}`).join(',')]);
  return img;
}

async function ctlJson<T>(t: import('ava').ExecutionContext, args: string[]): Promise<T> {
  const r = await runSanbox(t, ['ctl', ...args, '--json']);
  t.is(r.code, 0, `sanbox ctl ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

interface Status {
  nodeId: number;
  state: string;
  quorum: boolean;
  members: { nodeId: number; state: string }[];
  devices: { name: string; gate: string; io: { reads: number; writes: number; errors: number } }[];
  locks: { resource: string; mode: string | null; state: string }[];
}

test('ctl status shows membership, devices with their gate and I/O counters; fault rules stall, fail and release the node\'s I/O; ls marks a shadowed rule', async (t) => {
  const img = await cluster(t, 2);
  const nodes = [0, 1].map((n) => spawnNode(t, img, n));
  await nodes[0]!.waitLine(isEvent('up', 1), UP_TIMEOUT_MS, 'node 1 up');
  await nodes[1]!.waitLine(isEvent('up', 0), UP_TIMEOUT_MS, 'node 0 up');

  const s = await ctlJson<Status>(t, [img, '0', 'status']);
  t.is(s.state, 'up');
  t.true(s.quorum);
  t.deepEqual(s.members.map((m) => m.state), ['up', 'up']);
  t.is(s.devices.length, 1);
  t.is(s.devices[0]!.name, img);
  t.is(s.devices[0]!.gate, 'open');
  t.true(s.devices[0]!.io.writes > 0);

  // EIO on writes: the counter of failed I/O moves while the rule is in force.
  await ctlJson(t, [img, '0', 'fault', 'set', '--action', 'eio', '--op', 'write', '--id', 'fail', '--count', '3']);
  // A later rule the first one always beats is shown as shadowed (an unlimited one).
  await ctlJson(t, [img, '0', 'fault', 'set', '--action', 'latency', '--latency', '1ms', '--id', 'slow']);
  await ctlJson(t, [img, '0', 'fault', 'set', '--action', 'eio', '--op', 'read', '--device', 'cluster', '--id', 'hidden']);
  const rules = await ctlJson<{ id: string; shadowedBy: string | null; devices: string[] }[]>(t, [img, '0', 'fault', 'ls']);
  t.deepEqual(rules.map((r) => [r.id, r.shadowedBy]), [['fail', null], ['slow', null], ['hidden', 'slow']]);
  t.deepEqual(rules[0]!.devices, [img]);
  const deadline = Date.now() + 3000;
  let errors = 0;
  while (errors < 3 && Date.now() < deadline) {
    errors = (await ctlJson<Status>(t, [img, '0', 'status'])).devices[0]!.io.errors;
  }
  t.true(errors >= 3, `three injected write errors counted (${errors})`);
  t.is((await ctlJson<{ cleared: number }>(t, [img, '0', 'fault', 'clear'])).cleared, 3);

  // Stall every write for a moment, then release: no write completes meanwhile, then they resume.
  // Driven in-process (the same requests the CLI sends) so the stall stays well inside the
  // node's self-fence deadline (1.7 s) whatever the CLI's start-up time on a loaded machine.
  const completed = async (): Promise<number> => {
    const st = (await ctlRequest(img, 0, { cmd: 'status' })).status as Status;
    return st.devices[0]!.io.writes - st.devices[0]!.io.errors;
  };
  await ctlRequest(img, 0, { cmd: 'fault-set', action: 'stall', op: 'write', id: 'hold' });
  await new Promise((r) => setTimeout(r, 150));
  const w1 = await completed();
  await new Promise((r) => setTimeout(r, 400));
  const w2 = await completed();
  t.true(w2 - w1 <= 1, `no write completes while stalled (${w1} → ${w2})`);
  await ctlRequest(img, 0, { cmd: 'fault-clear', id: 'hold' });
  await new Promise((r) => setTimeout(r, 400));
  const w3 = await completed();
  t.true(w3 > w2 + 1, `writes resume after the release (${w2} → ${w3})`);
  // Released well inside the self-fence deadline: nobody was declared dead.
  t.false(nodes[1]!.lines.some((l) => l.event === 'down'));
});

test('ctl lock/unlock: a lock held in the node conflicts with another node\'s request until it is released; status lists it', async (t) => {
  const img = await cluster(t, 2);
  const nodes = [0, 1].map((n) => spawnNode(t, img, n));
  await nodes[0]!.waitLine(isEvent('up', 1), UP_TIMEOUT_MS, 'node 1 up');
  await nodes[1]!.waitLine(isEvent('up', 0), UP_TIMEOUT_MS, 'node 0 up');
  t.like(await ctlJson(t, [img, '0', 'lock', 'res1', '--mode', 'PW']), { resource: 'res1', mode: 'PW' });
  t.deepEqual((await ctlJson<Status>(t, [img, '0', 'status'])).locks.map((l) => [l.resource, l.mode, l.state]), [['res1', 'PW', 'granted']]);
  const busy = await runSanbox(t, ['ctl', img, '1', 'lock', 'res1', '--mode', 'PR', '--timeout', '300ms']);
  t.is(busy.code, 1);
  t.regex(busy.stderr, /node 1 .*res1/);
  t.is(busy.stderr.trim().split('\n').length, 1, 'one line');
  await ctlJson(t, [img, '0', 'unlock', 'res1']);
  t.like(await ctlJson(t, [img, '1', 'lock', 'res1', '--mode', 'PR', '--timeout', '5s']), { mode: 'PR' });
  await ctlJson(t, [img, '1', 'unlock', 'res1']);
});

test('a node whose heartbeat writes are stalled through ctl is declared dead and fenced; ctl on it then fails in one line within its bound', async (t) => {
  const img = await cluster(t, 3);
  const nodes = [0, 1, 2].map((n) => spawnNode(t, img, n));
  for (const a of nodes) for (const b of nodes) if (a !== b) await a.waitLine(isEvent('up', b.nodeId), UP_TIMEOUT_MS, `node ${b.nodeId} up`);
  await ctlJson(t, [img, '2', 'fault', 'set', '--action', 'stall', '--op', 'write']);
  await Promise.all([0, 1].map((n) => nodes[n]!.waitLine(isEvent('down', 2), FENCED_TIMEOUT_MS, 'node 2 down')));
  await Promise.any([0, 1].map((n) => nodes[n]!.waitLine(isEvent('fenced', 2), FENCED_TIMEOUT_MS, 'node 2 fenced')));
  // The stalled node fenced itself first (exit 3) or the power fence killed it: either way it is gone.
  const ex = await nodes[2]!.exited;
  t.true(ex.code === 3 || ex.signal === 'SIGKILL', `gone: ${JSON.stringify(ex)}`);
  const t0 = Date.now();
  const r = await runSanbox(t, ['ctl', img, '2', 'status']);
  const tookMs = Date.now() - t0;
  t.is(r.code, 1);
  t.is(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  t.regex(r.stderr, /node 2 \(n2\) of cluster 'ctl' is not running \(its slot says fenced\)/);
  // Process start-up is part of tookMs; the bound itself is connect + answer.
  t.true(tookMs < CTL_CONNECT_TIMEOUT_MS + CTL_ANSWER_TIMEOUT_MS, `answered within the bound (${tookMs} ms)`);
});

test('ctl on a node that is stopped (SIGSTOP) answers with a one-line error within its bound', async (t) => {
  const img = await cluster(t, 2);
  const nodes = [0, 1].map((n) => spawnNode(t, img, n, ['--fence', 'disk']));
  await nodes[0]!.waitLine(isEvent('up', 1), UP_TIMEOUT_MS, 'node 1 up');
  // Node 0 is stopped first: else it declares node 1 dead after 2 s and, if node 1 was stopped
  // holding its fence gate, escalates to the power fence, whose kill makes ctl fail early (a
  // closed socket, not the answer timeout this test is about).
  for (const n of [0, 1]) {
    nodes[n]!.child.kill('SIGSTOP');
    t.teardown(() => void nodes[n]!.child.kill('SIGCONT'));
  }
  const t0 = Date.now();
  const r = await runSanbox(t, ['ctl', img, '1', 'status']);
  const tookMs = Date.now() - t0;
  t.is(r.code, 1);
  t.regex(r.stderr, /node 1 \(n1\) of cluster 'ctl' gave no answer to 'status'/);
  t.is(r.stderr.trim().split('\n').length, 1);
  t.true(tookMs >= CTL_ANSWER_TIMEOUT_MS - 100 && tookMs < CTL_CONNECT_TIMEOUT_MS + CTL_ANSWER_TIMEOUT_MS + 5000, `within the bound (${tookMs} ms)`);
});
