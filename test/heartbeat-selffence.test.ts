// Self-fencing: a node whose heartbeat writes stall (or fail) stops all its I/O before its peers
// can declare it dead; a node that sees its own slot overwritten by someone else stops.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { writeControlFile } from '../src/disk/fault-device.js';
import { encodeO2hbBlock } from '../src/format/o2hb-block.js';
import { readClusterImage } from '../src/heartbeat/cluster-image.js';
import { clusterInit, isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { tempDir } from './helpers/tmp.js';

for (const action of ['stall', 'eio'] as const) {
  test(`heartbeat writes that ${action === 'stall' ? 'never finish' : 'fail with EIO'}: the node fences itself before the others declare it dead`, async (t) => {
    const dir = tempDir(t);
    const img = path.join(dir, 'c.img');
    await clusterInit(t, [img, '--nodes', '3', '--name', 'sf']);
    const info = await readClusterImage(img);
    const control = path.join(dir, 'faults.json');
    writeControlFile(control, []);
    const nodes = [0, 1].map((n) => spawnNode(t, img, n));
    const victim = spawnNode(t, img, 2, [], { SANBOX_FAULTS: control });
    await Promise.all([0, 1].map((n) => nodes[n]!.waitLine(isEvent('up', 2), 10_000, 'node 2 up')));
    const slotOffset = info.regions.get('heartbeat')!.payloadOffsetBytes + 2 * info.header.sectorSizeBytes;
    writeControlFile(control, [{ id: 'hb', op: 'write', action, offsetBytes: slotOffset, lengthBytes: info.header.sectorSizeBytes }]);
    const faultAt = Date.now();
    const selfFence = await victim.waitLine((l) => /SELF-FENCED/.test(l.msg ?? ''), 5000, 'self-fence');
    const downs = await Promise.all([0, 1].map((n) => nodes[n]!.waitLine(isEvent('down', 2), 5000, 'node 2 down')));
    const firstDown = Math.min(...downs.map((d) => d.atMs));
    t.log(`self-fenced ${selfFence.atMs - faultAt} ms after the fault (${selfFence.msg}); peers declared it dead ${firstDown - faultAt} ms after`);
    t.true(selfFence.atMs < firstDown, 'self-fence came before any peer declared the node dead');
    t.is((await victim.exited).code, 3);
    // Peers still fence it (it might only look dead); the order of events is the same.
    await Promise.all([0, 1].map((n) => nodes[n]!.waitLine(isEvent('fenced', 2), 5000, 'node 2 fenced')));
  });
}

test('a node that sees its own slot overwritten by another writer stops', async (t) => {
  const img = path.join(tempDir(t), 'c.img');
  await clusterInit(t, [img, '--nodes', '2', '--name', 'ow']);
  const info = await readClusterImage(img);
  const node = spawnNode(t, img, 1);
  await node.waitLine((l) => /ready/.test(l.msg ?? ''), 10_000, 'ready');
  // Someone else heartbeats in slot 1 with another generation.
  const fd = fs.openSync(img, 'r+');
  const blk = encodeO2hbBlock({ seq: BigInt(Date.now()) + 1_000_000n, nodeId: 1, generation: 0x1234n, deadMs: 1500 }, 512);
  fs.writeSync(fd, blk, 0, 512, info.regions.get('heartbeat')!.payloadOffsetBytes + 512);
  fs.closeSync(fd);
  const l = await node.waitLine((x) => /SELF-FENCED/.test(x.msg ?? ''), 3000, 'self-fence');
  t.regex(l.msg!, /Heartbeat generation mismatch .*ondisk \(1:0000000000001234/);
  t.is((await node.exited).code, 3);
});

test('a heartbeat write slower than the I/O timeout that lands later is neither a death nor a slot mismatch', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '2', '--name', 'slow']);
  const info = await readClusterImage(img);
  const control = path.join(dir, 'faults.json');
  writeControlFile(control, []);
  const peer = spawnNode(t, img, 0);
  const slow = spawnNode(t, img, 1, [], { SANBOX_FAULTS: control });
  await peer.waitLine(isEvent('up', 1), 10_000, 'node 1 up');
  const slotOffset = info.regions.get('heartbeat')!.payloadOffsetBytes + info.header.sectorSizeBytes;
  // One write 700 ms late (I/O timeout 500 ms): it counts as failed, then lands.
  writeControlFile(control, [{ id: 'slow', op: 'write', action: 'latency', latencyMs: 700, count: 1, offsetBytes: slotOffset, lengthBytes: 512 }]);
  await slow.waitLine((l) => /did not finish within 500 ms/.test(l.msg ?? ''), 5000, 'a timed-out write');
  await new Promise((r) => setTimeout(r, 2500));
  t.false(slow.lines.some((l) => /SELF-FENCED/.test(l.msg ?? '')), slow.lines.map((l) => l.msg).join('\n'));
  t.false(peer.lines.some((l) => l.event === 'down'));
  t.is(slow.child.exitCode, null);
});
