// A node process stopped (SIGSTOP) past its death is fenced by the survivors, and after SIGCONT
// it writes nothing more: once with the disk fence alone (its writes are refused by its gate and
// it exits 3), once with the power fence (it is SIGKILLed by pid + start time).

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { readClusterImage } from '../src/heartbeat/cluster-image.js';
import { clusterInit, isEvent, statusJson, spawnNode } from './helpers/heartbeat-nodes.js';
import { tempDir } from './helpers/tmp.js';

/** Every byte node `n` owns on the image: its heartbeat slot and its node-record sector. */
async function ownedBytes(img: string, n: number): Promise<Buffer> {
  const info = await readClusterImage(img);
  const s = info.header.sectorSizeBytes;
  const fd = fs.openSync(img, 'r');
  try {
    const hb = Buffer.alloc(s);
    const rec = Buffer.alloc(s);
    fs.readSync(fd, hb, 0, s, info.regions.get('heartbeat')!.payloadOffsetBytes + n * s);
    fs.readSync(fd, rec, 0, s, info.regions.get('nodes')!.payloadOffsetBytes + n * s);
    return Buffer.concat([hb, rec]);
  } finally {
    fs.closeSync(fd);
  }
}

for (const policy of ['disk', 'power'] as const) {
  test(`SIGSTOP past the dead time: fenced (${policy}); after SIGCONT the node writes nothing`, async (t) => {
    const img = path.join(tempDir(t), 'c.img');
    await clusterInit(t, [img, '--nodes', '3', '--name', 'stall']);
    const nodes = [0, 1, 2].map((n) => spawnNode(t, img, n, ['--fence', policy]));
    await Promise.all([nodes[0]!.waitLine(isEvent('up', 2), 10_000, 'up'), nodes[1]!.waitLine(isEvent('up', 2), 10_000, 'up')]);
    const victim = nodes[2]!;
    victim.child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    const fenced = await Promise.all([0, 1].map((n) => nodes[n]!.waitLine(isEvent('fenced', 2), 8000, 'node 2 fenced')));
    t.log(`fenced ${Math.min(...fenced.map((f) => f.atMs)) - stoppedAt} ms after SIGSTOP`);
    const snapshot = await ownedBytes(img, 2);
    victim.child.kill('SIGCONT');
    const { code, signal } = await victim.exited;
    if (policy === 'power') {
      t.is(signal, 'SIGKILL', 'the power fence killed it');
    } else {
      t.is(code, 3, 'it stops with exit code 3 after fencing itself');
      t.true(victim.lines.some((l) => /SELF-FENCED/.test(l.msg ?? '')), 'it logged its self-fence');
    }
    await new Promise((r) => setTimeout(r, 300));
    t.true((await ownedBytes(img, 2)).equals(snapshot), 'not one byte of its slot or record changed after the fence');
    const status = await statusJson(t, img);
    t.deepEqual(status.slots.map((s) => s.state), ['up', 'up', 'fenced']);
    // The survivors saw no other death, and still have quorum (2 of 3).
    for (const s of [nodes[0]!, nodes[1]!]) t.deepEqual(s.lines.filter((l) => l.event === 'down').map((l) => l.peer), [2]);
  });
}
