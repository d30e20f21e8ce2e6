// The ocfs2-volume home of the heartbeat: `sanbox node --volume VOL` writes o2hb blocks into the
// heartbeat system file of a volume made by the REAL mkfs.ocfs2, the REAL debugfs.ocfs2 -R hb
// decodes them (seq, node, generation, checksum, dead_ms), and a kernel-style peer (seq in
// seconds, dead_ms 62000) on the volume joins the same membership without a false death.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openDevice } from '../src/disk/open.js';
import { PersistentReservations, sidecarStoreSpec } from '../src/disk/reservations.js';
import { decodeO2hbBlock, encodeO2hbBlock, hex32, hex64 } from '../src/format/o2hb-block.js';
import { heartbeatRegion } from '../src/fs/heartbeat-region.js';
import { clusterInit, isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { tempDir } from './helpers/tmp.js';

function mkfs(dir: string): string {
  const vol = path.join(dir, 'vol.img');
  fs.closeSync(fs.openSync(vol, 'w'));
  fs.truncateSync(vol, 64 * 1024 * 1024);
  execFileSync('mkfs.ocfs2', ['-q', '-F', '-N', '4', '-b', '4096', '-C', '4096', '-L', 'hbvol', '-M', 'local', vol], { stdio: 'ignore', timeout: 30_000 });
  return vol;
}

test('real debugfs.ocfs2 -R hb decodes the blocks of live sanbox nodes on a real mkfs.ocfs2 volume; kill -9 is fenced on the volume too', async (t) => {
  const dir = tempDir(t);
  const vol = mkfs(dir);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '4', '--name', 'ocfs2hb']);
  const nodes = [1, 2].map((n) => spawnNode(t, img, n, ['--volume', vol]));
  await Promise.all([nodes[0]!.waitLine(isEvent('up', 2), 10_000, 'up'), nodes[1]!.waitLine(isEvent('up', 1), 10_000, 'up')]);
  const gens = nodes.map((p) => /generation ([0-9a-f]+)/.exec(p.lines.find((l) => /joined cluster/.test(l.msg ?? ''))!.msg!)![1]!.padStart(16, '0'));

  const dev = await openDevice(vol, { guard: 'none', readOnly: true });
  const where = await heartbeatRegion(dev);
  await dev.close();
  // Hold both writers still (well below the dead time) so debugfs and our read see the same bytes.
  for (const p of nodes) p.child.kill('SIGSTOP');
  let out: string;
  const blocks = new Map<number, Buffer>();
  try {
    out = execFileSync('debugfs.ocfs2', ['-R', 'hb', vol], { encoding: 'utf8', timeout: 30_000 });
    const fd = fs.openSync(vol, 'r');
    for (const n of [1, 2]) {
      const b = Buffer.alloc(512);
      fs.readSync(fd, b, 0, 512, where.offsetBytes + n * 512);
      blocks.set(n, b);
    }
    fs.closeSync(fd);
  } finally {
    for (const p of nodes) p.child.kill('SIGCONT');
  }
  t.log(out.trim());
  const rows = new Map(
    out
      .split('\n')
      .map((l) => /^\s*(\d+):\s+(\d+)\s+([0-9a-f]{16})\s+([0-9a-f]{16})\s+([0-9a-f]{8})\s+(\d+)/.exec(l))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [Number(m[1]), m] as const),
  );
  t.deepEqual([...rows.keys()].sort(), [1, 2]);
  for (const [i, n] of [1, 2].entries()) {
    const row = rows.get(n)!;
    t.is(Number(row[2]), n, 'hb_node');
    t.is(row[4], gens[i], 'hb_generation is the node\'s join generation');
    t.is(Number(row[6]), 2000, 'hb_dead_ms is our dead time');
    const seqMs = Number(BigInt('0x' + row[3]));
    t.true(Math.abs(Date.now() - seqMs) < 10_000, 'hb_seq is recent wall-clock ms');
    // The checksum debugfs printed is the one on disk, and it is valid for the block (debugfs
    // itself does not verify; we check with the kernel's crc32_le formula).
    const d = decodeO2hbBlock(blocks.get(n)!);
    t.is(hex64(d.seq), row[3]);
    t.is(row[5], hex32(d.cksumStored));
    t.true(d.cksumValid);
  }

  nodes[1]!.child.kill('SIGKILL');
  const f = await nodes[0]!.waitLine(isEvent('fenced', 2), 8000, 'node 2 fenced');
  t.truthy(f);
  const fenceMsg = nodes[0]!.lines.find((l) => /node 2 fenced/.test(l.msg ?? ''))!.msg!;
  t.log(fenceMsg);
  t.regex(fenceMsg, /vol\.img/, 'preempted on the volume as well');
  const pr = new PersistentReservations(sidecarStoreSpec(vol));
  const s = pr.readState();
  pr.close();
  t.is(hex64(s.preempted[2]! & 0xffffffffn).slice(8), gens[1]!.slice(8), 'the volume reservations record node 2 as preempted');
});

test('a kernel-style peer on the volume (seq in seconds, dead_ms 62000) joins the one membership and is not declared dead by our 2 s threshold', async (t) => {
  t.timeout(30_000);
  const dir = tempDir(t);
  const vol = mkfs(dir);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '4', '--name', 'mixed']);
  const node = spawnNode(t, img, 0, ['--volume', vol]);
  await node.waitLine((l) => /ready/.test(l.msg ?? ''), 10_000, 'ready');
  const dev = await openDevice(vol, { guard: 'none' });
  const where = await heartbeatRegion(dev);
  await dev.close();
  // Write node 3's block the way the kernel does: seq = wall-clock seconds, dead_ms 62000.
  const fd = fs.openSync(vol, 'r+');
  t.teardown(() => fs.closeSync(fd));
  const write = (seqS: number) => fs.writeSync(fd, encodeO2hbBlock({ seq: BigInt(seqS), nodeId: 3, generation: 0xc0ffeen, deadMs: 62_000 }, 512), 0, 512, where.offsetBytes + 3 * 512);
  let seq = Math.floor(Date.now() / 1000);
  write(seq);
  await new Promise((r) => setTimeout(r, 300));
  write(++seq);
  await node.waitLine(isEvent('up', 3), 3000, 'kernel-style node 3 up');
  // It "writes every 2 s": leave it unchanged for 3.5 s, longer than our 2 s dead time.
  await new Promise((r) => setTimeout(r, 3500));
  t.false(node.lines.some((l) => l.event === 'down'), 'no false death: its dead_ms (62000) rules');
  // A clean stop (generation 0) is seen at once.
  fs.writeSync(fd, encodeO2hbBlock({ seq: BigInt(++seq), nodeId: 3, generation: 0n, deadMs: 62_000 }, 512), 0, 512, where.offsetBytes + 3 * 512);
  const left = await node.waitLine((l) => /node 3 down .*left/.test(l.msg ?? ''), 2000, 'node 3 left');
  t.truthy(left);
});
