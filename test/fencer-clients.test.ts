// The power fence kills a node's clients (src/heartbeat/fencer.ts, src/node/clients.ts), each named
// by pid and start time, from the node's record as read again after the node's kill. Real
// processes, a fake record: the victim node and a stopped client are killed; an entry whose pid now
// belongs to another process (another start time: a reused pid) and one of a client that already
// exited are `gone`, and the process behind the reused pid lives on; a client the record names only
// after the kill (registered while the fence began) is killed too.

import test from 'ava';
import type { ChildProcess } from 'node:child_process';
import { readProcStat, selfIdentity } from '../src/disk/power-fence.js';
import type { NodeRecord } from '../src/format/node-record.js';
import { Fencer } from '../src/heartbeat/fencer.js';
import { presetTiming } from '../src/timing.js';
import { exited, spawnChild } from './helpers/tmp.js';

/** Bound on a killed process being reaped. */
const EXIT_MS = 5000;

function idle(t: import('ava').ExecutionContext): ChildProcess {
  return spawnChild(t, process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
}

function startTicks(c: ChildProcess): bigint {
  return readProcStat(c.pid!)!.startTicks;
}

test('the power fence kills the clients its victim recorded, by pid and start time: a reused pid and an exited client are left alone', async (t) => {
  const victim = idle(t);
  const client = idle(t);
  const late = idle(t);
  const stranger = idle(t);
  const gone = spawnChild(t, process.execPath, ['-e', '']);
  const goneId = { pid: gone.pid!, startTicks: startTicks(gone) };
  await exited(gone, EXIT_MS);
  client.kill('SIGSTOP');
  const generation = 7n;
  const record = (clients: NonNullable<NodeRecord['clients']>): NodeRecord => ({
    nodeId: 2, generation, pid: victim.pid!, pidStartTicks: startTicks(victim), bootId: selfIdentity().bootId, joinedAtMs: 0, prKey: 0n, name: 'n2', hostname: 'h', clients,
  });
  const early = [
    { pid: client.pid!, startTicks: startTicks(client) },
    // The stranger's pid with another start time: a client that exited and whose pid was reused.
    { pid: stranger.pid!, startTicks: startTicks(stranger) + 1n },
    goneId,
  ];
  // Read before the kill: without the late client; after it, the record the node wrote last.
  const before = record(early);
  const after = record([...early, { pid: late.pid!, startTicks: startTicks(late) }]);
  let reads = 0;
  const fencer = new Fencer({
    selfNodeId: 0,
    selfKey: 1n,
    clusterTag: 1,
    reservations: [],
    readNodeRecord: async () => (reads++ === 0 ? before : after),
    timing: presetTiming('local'),
    policy: 'power',
    log: (m) => t.log(m),
  });
  const out = await fencer.fence(2, generation);
  t.log(out.steps.join(', '));
  t.deepEqual(out.steps, [
    `power:killed(pid ${victim.pid})`,
    `client:killed(pid ${client.pid})`,
    `client:gone(pid ${stranger.pid})`,
    `client:gone(pid ${goneId.pid})`,
    `client:killed(pid ${late.pid})`,
  ]);
  t.is((await exited(victim, EXIT_MS)).signal, 'SIGKILL');
  t.is((await exited(client, EXIT_MS)).signal, 'SIGKILL', 'the stopped client was killed');
  t.is((await exited(late, EXIT_MS)).signal, 'SIGKILL', 'the client recorded while the fence began was killed');
  t.is(stranger.exitCode, null, 'the process behind the reused pid lives');
  t.not(readProcStat(stranger.pid!), null, 'and is still there');
});
