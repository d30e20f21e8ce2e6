// Child process for the heartbeat-over-NBD test: one node that opens a cluster image through
// openDevice (so by an nbd:// URI), runs the heartbeat loop and membership of src/heartbeat on its
// heartbeat region, and prints one JSON line per event on stdout:
//   {"event":"joined","node":N}                        after the first heartbeat write
//   {"event":"up"|"down"|"fenced","node":M,"of":N}    membership events about peers
//   {"event":"self-fence","node":N,"reason":"…"}       when its own writes stop landing
// It runs without a fencer (nobody is power-fenced by a test) and stops on SIGTERM.
// With COUNTER_SPEC and ROUNDS it also takes an EX lock on resource "counter" in the cluster
// image's lockspace (src/dlm) ROUNDS times, once the peer PEER_ID is up; under the lock it reads a
// u64 counter at byte 0 of COUNTER_SPEC (another device, e.g. another NBD export), waits a little
// and writes it back plus one. If mutual exclusion holds, no increment is lost. Then it prints
//   {"event":"done","node":N,"rounds":R}
// Both nodes start their rounds at the wall-clock time START_AT_MS, so their rounds overlap and a
// missing lock would show as lost increments.
// Usage: node nbd-heartbeat-node.js SPEC NODE_ID [COUNTER_SPEC ROUNDS PEER_ID START_AT_MS]

import { openDevice } from '../../src/disk/open.js';
import { Mode } from '../../src/dlm/compat-matrix.js';
import { Lockspace } from '../../src/dlm/lock-manager.js';
import { clusterHeartbeatRegion, openRegion, readClusterImageFrom } from '../../src/heartbeat/cluster-image.js';
import { Heartbeat, newGeneration, type HeartbeatRegion } from '../../src/heartbeat/heartbeat.js';
import { MembershipService } from '../../src/heartbeat/membership.js';

const [spec, nodeText, counterSpec, roundsText, peerText, startAtText] = process.argv.slice(2);
const nodeId = Number(nodeText);
/** Time spent inside the critical section per round, so an overlap would lose an increment. */
const HOLD_MS = 3;
/** Bound on waiting for the peer and on each lock request. */
const WAIT_MS_MAX = 20_000;
const say = (o: Record<string, unknown>): void => void process.stdout.write(JSON.stringify(o) + '\n');

const device = await openDevice(spec!, { guard: 'shared' });
const info = await readClusterImageFrom(device, spec!);
const region: HeartbeatRegion = clusterHeartbeatRegion(info, device);
const generation = newGeneration();
const membership = new MembershipService({
  localNodeId: nodeId,
  localGeneration: generation,
  nodeCount: info.config.nodeCount,
  timing: info.timing,
  fencer: null,
  log: () => {},
});
membership.subscribe((ev) => say({ event: ev.kind, node: ev.nodeId, of: nodeId }));
const heartbeat = new Heartbeat({
  region,
  nodeId,
  generation,
  timing: info.timing,
  membership,
  gate: null,
  log: (msg) => process.stderr.write(`${msg}\n`),
  onSelfFence: (reason) => say({ event: 'self-fence', node: nodeId, reason }),
});
await heartbeat.start();
say({ event: 'joined', node: nodeId });

if (counterSpec !== undefined) {
  const rounds = Number(roundsText);
  const peer = Number(peerText);
  const t0 = performance.now();
  while (!membership.members().some((m) => m.nodeId === peer && m.state === 'up')) {
    if (performance.now() - t0 > WAIT_MS_MAX) throw new Error(`node ${nodeId}: peer ${peer} not up within ${WAIT_MS_MAX} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const counter = await openDevice(counterSpec, { guard: 'shared' });
  const ls = await Lockspace.open(await openRegion(device, 'lockspace'), { membership });
  const startAtMs = Number(startAtText);
  const waitMs = startAtMs - Date.now();
  // Late on a loaded machine: start now. The rounds overlap less, but the lock is still checked.
  if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
  else process.stderr.write(`node ${nodeId}: ready ${-waitMs} ms after the common start time\n`);
  const b = Buffer.alloc(512);
  for (let r = 0; r < rounds; r++) {
    const lock = await ls.lock('counter', Mode.EX, { timeoutMs: WAIT_MS_MAX });
    await counter.read(b, 0);
    const value = b.readBigUInt64LE(0);
    await new Promise((res) => setTimeout(res, HOLD_MS));
    b.writeBigUInt64LE(value + 1n, 0);
    await counter.write(b, 0);
    await lock.unlock();
  }
  await ls.close();
  await counter.close();
  say({ event: 'done', node: nodeId, rounds });
}
process.on('SIGTERM', () => {
  void heartbeat
    .stop(true)
    .then(() => device.close())
    .finally(() => process.exit(0));
});
