// Child process for the heartbeat-over-NBD test: one node that opens a cluster image through
// openDevice (so by an nbd:// URI), runs the heartbeat loop and membership of src/heartbeat on its
// heartbeat region, and prints one JSON line per event on stdout:
//   {"event":"joined","node":N}                        after the first heartbeat write
//   {"event":"up"|"down"|"fenced","node":M,"of":N}    membership events about peers
//   {"event":"self-fence","node":N,"reason":"…"}       when its own writes stop landing
// It runs without a fencer (nobody is power-fenced by a test) and stops on SIGTERM.
// Usage: node nbd-heartbeat-node.js SPEC NODE_ID

import { openDevice } from '../../src/disk/open.js';
import { readClusterImageFrom } from '../../src/heartbeat/cluster-image.js';
import { Heartbeat, newGeneration, type HeartbeatRegion } from '../../src/heartbeat/heartbeat.js';
import { MembershipService } from '../../src/heartbeat/membership.js';

const [spec, nodeText] = process.argv.slice(2);
const nodeId = Number(nodeText);
const say = (o: Record<string, unknown>): void => void process.stdout.write(JSON.stringify(o) + '\n');

const device = await openDevice(spec!, { guard: 'shared' });
const info = await readClusterImageFrom(device, spec!);
const hb = info.regions.get('heartbeat')!;
const region: HeartbeatRegion = {
  name: `${spec}:heartbeat`,
  device,
  offsetBytes: hb.payloadOffsetBytes,
  blockBytes: info.header.sectorSizeBytes,
  slotCount: info.config.nodeCount,
};
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
process.on('SIGTERM', () => {
  void heartbeat
    .stop(true)
    .then(() => device.close())
    .finally(() => process.exit(0));
});
