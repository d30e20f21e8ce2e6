// `sanbox lock … -- COMMAND`: the command lives and dies with its node. kill -9 of the node
// process: its command is gone before the lock is granted elsewhere (the fencer kills the node's
// recorded process group before it preempts). `sanbox lock --node N` while node N runs goes
// through that node's control channel.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { groupMembers } from '../src/disk/power-fence.js';
import { clusterInit, isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { runSanbox, SANBOX_BIN, spawnChild, tempDir, waitFor, exited } from './helpers/tmp.js';

const UP_TIMEOUT_MS = 10_000;
/** The local preset's dead time (2 s), fencing, and a loaded machine's slack. */
const TAKEOVER_TIMEOUT_MS = 15_000;

function readTicks(file: string): bigint[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => /^\d+$/.test(l))
    .map((l) => BigInt(l));
}

/** The command's group is killed at the end of the test whatever happened (the test must leave no process). */
function killGroupAtTeardown(t: import('ava').ExecutionContext, pgid: number): void {
  t.teardown(() => {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // gone, as it should be
    }
  });
}

test('kill -9 of the node of `sanbox lock -- COMMAND`: COMMAND is gone before the lock is granted elsewhere; the new holder goes through running node 1', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'cluster.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'lockrun']);
  const nodes = [0, 1].map((n) => spawnNode(t, img, n));
  await nodes[0]!.waitLine(isEvent('up', 1), UP_TIMEOUT_MS, 'node 1 up');

  // Node 2's command appends a nanosecond timestamp every 10 ms, after writing its pid.
  const ticks = path.join(dir, 'ticks');
  const pidFile = path.join(dir, 'pid');
  const holder = spawnChild(t, process.execPath, [SANBOX_BIN, 'lock', '--cluster', img, '--node', '2', 'res', '--', 'sh', '-c', `echo $$ > ${pidFile}; while :; do date +%s%N >> ${ticks}; sleep 0.01; done`]);
  await waitFor(() => fs.existsSync(ticks) && readTicks(ticks).length > 5, UP_TIMEOUT_MS, 'the command running under the lock');
  const commandPid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  killGroupAtTeardown(t, commandPid);
  await nodes[0]!.waitLine(isEvent('up', 2), UP_TIMEOUT_MS, 'node 2 up');

  holder.kill('SIGKILL');
  await exited(holder, 5000);
  // Node 1 runs: this goes through its control channel (no duplicate-node refusal), and its
  // command runs only once node 2 is fenced, which kills node 2's command group first.
  const granted = path.join(dir, 'granted');
  const r = await runSanbox(t, ['lock', '--cluster', img, '--node', '1', '--timeout', '15s', 'res', '--', 'sh', '-c', `date +%s%N > ${granted}`], { timeoutMs: TAKEOVER_TIMEOUT_MS + 5000 });
  t.is(r.code, 0, r.stderr);
  const grantedAt = readTicks(granted)[0]!;
  const last = readTicks(ticks).at(-1)!;
  t.true(last < grantedAt, `node 2's command wrote its last tick (${last}) before node 1 was granted (${grantedAt})`);
  t.deepEqual(groupMembers(commandPid), [], 'nothing of node 2\'s command group is left');
  // Both survivors fence node 2; whichever came first killed the group (the other finds it gone).
  const fenceLines = [...nodes[0]!.lines, ...nodes[1]!.lines].filter((l) => /node 2 fenced/.test(l.msg ?? '')).map((l) => l.msg!);
  t.true(fenceLines.some((m) => /commands:killed\(group \d+\)/.test(m)), fenceLines.join('\n'));
  // Nothing appended after the takeover either.
  const n = readTicks(ticks).length;
  await new Promise((res) => setTimeout(res, 200));
  t.is(readTicks(ticks).length, n);
});

test('a `sanbox lock` node that fences itself (its heartbeat writes stall) kills its command and exits 3', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'cluster.img');
  await clusterInit(t, [img, '--nodes', '2', '--name', 'selffence']);
  const control = path.join(dir, 'faults.json');
  const ticks = path.join(dir, 'ticks');
  const pidFile = path.join(dir, 'pid');
  const holder = spawnChild(t, process.execPath, [SANBOX_BIN, 'lock', '--cluster', img, '--node', '0', 'res', '--', 'sh', '-c', `echo $$ > ${pidFile}; while :; do date +%s%N >> ${ticks}; sleep 0.01; done`], {
    env: { ...process.env, SANBOX_FAULTS: control },
  });
  const io = { err: '' };
  holder.stderr!.on('data', (d: Buffer) => (io.err += d.toString()));
  await waitFor(() => fs.existsSync(ticks) && readTicks(ticks).length > 5, UP_TIMEOUT_MS, 'the command running under the lock');
  const commandPid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  killGroupAtTeardown(t, commandPid);
  // Every write of the node stalls: no heartbeat lands, so it fences itself within its self-fence deadline.
  const set = await runSanbox(t, ['fault', 'set', control, '--action', 'stall', '--op', 'write', '--device', 'cluster.img']);
  t.is(set.code, 0, set.stderr);
  const ex = await exited(holder, TAKEOVER_TIMEOUT_MS);
  t.is(ex.code, 3, io.err);
  t.regex(io.err, /lost its lock on res .*killing the command/);
  t.deepEqual(groupMembers(commandPid), [], 'the command group is gone');
});
