// The o2hb block codec: the notes' test vector, round trips, fuzzing (only FormatError may come
// out), and the real debugfs.ocfs2 decoding blocks we wrote into a volume made by the real mkfs.ocfs2.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { FormatError } from '../src/errors.js';
import { crc32Le } from '../src/format/crc32.js';
import { decodeO2hbBlock, encodeO2hbBlock, hex32, hex64, parseO2hbBlock } from '../src/format/o2hb-block.js';
import { tempDir } from './helpers/tmp.js';
import { fuzzRandom } from './helpers/fuzz.js';

test('crc32_le with seed 0 matches the kernel check value', (t) => {
  t.is(crc32Le(0, Buffer.from('123456789')), 0x2dfd2d88);
});

test('the test vector from reference/ocfs2.md §4.3 encodes to checksum 0x4AA8CF68', (t) => {
  const buf = encodeO2hbBlock({ seq: 0x6b01a001n, nodeId: 3, generation: 0xdeadbeefcafef00dn, deadMs: 62000 }, 512);
  t.is(buf.length, 512);
  t.deepEqual([...buf.subarray(0x0c, 0x10)], [0x68, 0xcf, 0xa8, 0x4a]);
  t.is(buf.readUInt32LE(0x0c), 0x4aa8cf68);
  t.true(buf.subarray(0x1c).every((b) => b === 0));
  const d = parseO2hbBlock(buf, { device: 'x', offsetBytes: 0 }, 3);
  t.is(d.seq, 0x6b01a001n);
  t.is(d.nodeId, 3);
  t.is(d.generation, 0xdeadbeefcafef00dn);
  t.is(d.deadMs, 62000);
  t.true(d.cksumValid);
  t.true(d.tailZero);
});

test('round trip at 512 and 4096 bytes with extreme values', (t) => {
  for (const bytes of [512, 1024, 4096]) {
    const b = { seq: (1n << 64n) - 1n, nodeId: 254, generation: (1n << 63n) + 5n, deadMs: 0xffffffff };
    const d = parseO2hbBlock(encodeO2hbBlock(b, bytes), {}, 254);
    t.is(d.seq, b.seq);
    t.is(d.generation, b.generation);
    t.is(d.deadMs, b.deadMs);
  }
});

test('encode refuses values that do not fit', (t) => {
  t.throws(() => encodeO2hbBlock({ seq: 1n << 64n, nodeId: 0, generation: 1n, deadMs: 0 }, 512), { instanceOf: FormatError });
  t.throws(() => encodeO2hbBlock({ seq: 1n, nodeId: 255, generation: 1n, deadMs: 0 }, 512), { instanceOf: FormatError });
  t.throws(() => encodeO2hbBlock({ seq: 1n, nodeId: 0, generation: -1n, deadMs: 0 }, 512), { instanceOf: FormatError });
  t.throws(() => encodeO2hbBlock({ seq: 1n, nodeId: 0, generation: 1n, deadMs: 2 ** 32 }, 512), { instanceOf: FormatError });
  t.throws(() => encodeO2hbBlock({ seq: 1n, nodeId: 0, generation: 1n, deadMs: 0 }, 768), { instanceOf: FormatError });
});

test('a bad checksum is reported by decode and thrown by parse with device and offset', (t) => {
  const buf = encodeO2hbBlock({ seq: 7n, nodeId: 1, generation: 9n, deadMs: 1500 }, 512);
  buf[0x100] = 1;
  const d = decodeO2hbBlock(buf);
  t.false(d.cksumValid);
  t.false(d.tailZero);
  const err = t.throws(() => parseO2hbBlock(buf, { device: 'img', offsetBytes: 4096 }), { instanceOf: FormatError });
  t.is(err?.offsetBytes, 4096 + 0x0c); // hb_cksum
  t.regex(err?.message ?? '', /^img: heartbeat block has a bad checksum: .* at offset 4108$/);
  const other = encodeO2hbBlock({ seq: 7n, nodeId: 1, generation: 9n, deadMs: 1500 }, 512);
  t.throws(() => parseO2hbBlock(other, { device: 'img', offsetBytes: 0 }, 2), { instanceOf: FormatError, message: /names node 1/ });
});

test('an all-zero sector is a valid free slot', (t) => {
  const d = parseO2hbBlock(Buffer.alloc(512), {}, 5);
  t.is(d.seq, 0n);
  t.true(d.cksumValid);
});

test('fuzz: random and bit-flipped sectors yield only FormatError', (t) => {
  const rnd = fuzzRandom(t);
  const good = encodeO2hbBlock({ seq: 123456n, nodeId: 7, generation: 0x1234n, deadMs: 2000 }, 512);
  let rejected = 0;
  for (let i = 0; i < 3000; i++) {
    let buf: Buffer;
    if (i % 3 === 0) buf = rnd.bytes([512, 4096, 100, 0, 513][i % 5]!);
    else {
      buf = Buffer.from(good);
      const bit = rnd.int(512 * 8);
      buf[bit >> 3]! ^= 1 << (bit & 7);
    }
    try {
      parseO2hbBlock(buf, { device: 'fuzz', offsetBytes: 0 }, 7);
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      rejected++;
    }
  }
  // Every single bit flip changes the CRC, so every flipped sector must be refused.
  t.true(rejected >= 2000);
});

/** Makes a real ocfs2 volume and returns the byte offset of its heartbeat file (one extent). */
function mkfsOcfs2(dir: string): { img: string; hbOffsetBytes: number } {
  const img = path.join(dir, 'vol.img');
  fs.closeSync(fs.openSync(img, 'w'));
  fs.truncateSync(img, 64 * 1024 * 1024);
  execFileSync('mkfs.ocfs2', ['-q', '-F', '-N', '4', '-b', '4096', '-C', '4096', '-L', 'hbtest', '-M', 'local', img], { stdio: 'ignore', timeout: 30_000 });
  const stat = execFileSync('debugfs.ocfs2', ['-R', 'stat //heartbeat', img], { encoding: 'utf8', timeout: 30_000 });
  // The extent row: "0  0  256  273  0x0" (index, offset, clusters, block#, flags).
  const m = /^\s*0\s+0\s+\d+\s+(\d+)\s+0x/m.exec(stat);
  if (!m) throw new Error(`no heartbeat extent in debugfs output:\n${stat}`);
  return { img, hbOffsetBytes: Number(m[1]) * 4096 };
}

test('the real debugfs.ocfs2 -R hb decodes sanbox blocks written into a real mkfs.ocfs2 volume', (t) => {
  const { img, hbOffsetBytes } = mkfsOcfs2(tempDir(t));
  const blocks = [
    { nodeId: 0, seq: 1n, generation: 0x0123456789abcdefn, deadMs: 2000 },
    { nodeId: 3, seq: 0x6b01a001n, generation: 0xdeadbeefcafef00dn, deadMs: 62000 },
    { nodeId: 17, seq: 0xfedcba9876543210n, generation: 1n, deadMs: 1500 },
  ];
  const fd = fs.openSync(img, 'r+');
  const sums = new Map<number, number>();
  for (const b of blocks) {
    const buf = encodeO2hbBlock(b, 512);
    sums.set(b.nodeId, buf.readUInt32LE(0x0c));
    fs.writeSync(fd, buf, 0, 512, hbOffsetBytes + b.nodeId * 512);
  }
  fs.closeSync(fd);
  const out = execFileSync('debugfs.ocfs2', ['-R', 'hb', img], { encoding: 'utf8', timeout: 30_000 });
  t.log(out.trim());
  const rows = out
    .split('\n')
    .map((l) => /^\s*(\d+):\s+(\d+)\s+([0-9a-f]{16})\s+([0-9a-f]{16})\s+([0-9a-f]{8})\s+(\d+)/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null);
  t.is(rows.length, blocks.length);
  for (const b of blocks) {
    const row = rows.find((r) => Number(r[1]) === b.nodeId);
    t.truthy(row, `slot ${b.nodeId} listed`);
    t.is(Number(row![2]), b.nodeId);
    t.is(row![3], hex64(b.seq));
    t.is(row![4], hex64(b.generation));
    t.is(row![5], hex32(sums.get(b.nodeId)!));
    t.is(Number(row![6]), b.deadMs);
  }
});
