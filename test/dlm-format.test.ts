// The lockspace codecs (src/format/lockspace.ts, version 2): round trips, exact offsets of a few
// fields (the layout table in the file header), the bucket layout, the refusal of version 1, and
// seeded fuzzing: random sectors, every single-bit flip of valid records, and re-sealed garbage
// may only ever produce the typed FormatError.

import test from 'ava';
import { crc32Zlib } from '../src/format/crc32.js';
import { FormatError } from '../src/errors.js';
import {
  bucketOf,
  capacityForRegion,
  decodeLockCell,
  decodeLockspaceHeader,
  decodeLvbCell,
  decodeNodeHeader,
  encodeLockCell,
  encodeLockspaceHeader,
  encodeLvbCell,
  encodeNodeHeader,
  headerForCapacity,
  lockCellOffset,
  LOCK_ENTRIES_PER_CELL,
  lockspaceLayout,
  lockspaceRegionBytes,
  lvbCellOffset,
  lvbEntriesPerCell,
  nodeHeaderOffset,
  type LockCell,
  type LockEntry,
  type LockspaceHeader,
  type LvbCell,
} from '../src/format/lockspace.js';
import { fuzzRandom, onlyFormatError } from './helpers/fuzz.js';

const where = { device: 'test.img', offsetBytes: 4096 };
const header: LockspaceHeader = headerForCapacity(512, 8, 32, { name: 'ls1' });
const entry: LockEntry = {
  state: 'converting',
  grantedMode: 3,
  requestedMode: 5,
  claim: true,
  lockId: 7,
  ticket: 12345678901234n,
  lvbSeqAtGrant: 99n,
  pid: 4242,
  resource: Buffer.from('inode-17'),
};
const lockCell: LockCell = {
  nodeId: 3,
  row: 17,
  generation: 0xfedcba9876543210n,
  seq: 42n,
  entries: [undefined, entry, undefined, { ...entry, state: 'granted', requestedMode: null, claim: false, resource: Buffer.from([0, 255]) }, undefined],
};
const lvbCell: LvbCell = {
  nodeId: 3,
  row: 17,
  generation: 5n,
  seq: 9n,
  entries: [{ resource: Buffer.from([0, 1, 2, 255]), valueSeq: 77n, value: Buffer.alloc(32, 0xab), invalidSeq: 12n }, undefined, { resource: Buffer.from('x'), valueSeq: null, value: Buffer.alloc(32), invalidSeq: 3n }, undefined],
};

test('round trips and field offsets', (t) => {
  t.is(LOCK_ENTRIES_PER_CELL, 5);
  t.is(lvbEntriesPerCell(32), 4);
  t.is(lvbEntriesPerCell(64), 3);
  for (const s of [512, 4096] as const) {
    const h = { ...header, sectorSizeBytes: s };
    const hb = encodeLockspaceHeader(h);
    t.is(hb.length, s);
    t.is(hb.readUInt16LE(4), 2, 'version 2');
    t.is(hb.readUInt32LE(24), 64, 'bucketCount at 24');
    t.deepEqual(decodeLockspaceHeader(hb, where), h);
    const lb = encodeLockCell(lockCell, s);
    t.deepEqual(decodeLockCell(lb, { nodeId: 3, row: 17 }, where), lockCell);
    t.is(lb.toString('latin1', 0, 4), 'SBLC');
    t.is(lb.readUInt32LE(12), 17, 'row at 12');
    t.is(lb.readBigUInt64LE(36 + 93 + 8), entry.ticket, 'entry 1 ticket at 36 + 93 + 8');
    t.is(lb.subarray(36 + 93 + 29, 36 + 93 + 37).toString(), 'inode-17');
    const vb = encodeLvbCell(lvbCell, s, 32);
    t.deepEqual(decodeLvbCell(vb, { nodeId: 3, row: 17 }, 32, where), lvbCell);
    t.is(vb.toString('latin1', 0, 4), 'SBLW');
    t.is(vb.readBigUInt64LE(36), 77n, 'entry 0 valueSeq at 36');
    const nb = encodeNodeHeader({ nodeId: 2, generation: 1n, seq: 2n, pid: 3, startedMs: 1700000000000 }, s);
    t.deepEqual(decodeNodeHeader(nb, 2, where), { nodeId: 2, generation: 1n, seq: 2n, pid: 3, startedMs: 1700000000000 });
  }
  t.is(decodeLockCell(Buffer.alloc(512), { nodeId: 0, row: 0 }, where), undefined, 'a blank sector is a cell with no entries');
});

test('layout: rows of per-node cells, a window is two contiguous rows, areas do not overlap', (t) => {
  const l = lockspaceLayout(header);
  t.is(header.bucketCount, 64);
  t.is(l.rows, 65, 'one overflow row after the last bucket');
  t.is(nodeHeaderOffset(l, 0), 512);
  t.is(lockCellOffset(l, 0, 0), 512 * 9);
  t.is(lockCellOffset(l, 1, 0) - lockCellOffset(l, 0, 7), 512, 'row 1 follows row 0: a window is one contiguous read');
  t.is(lockCellOffset(l, 64, 7) + 512, lvbCellOffset(l, 0, 0));
  t.is(lvbCellOffset(l, 64, 7) + 512, l.totalBytes);
  t.is(lockspaceRegionBytes(512, 8, 32), l.totalBytes);
  t.is(capacityForRegion(l.totalBytes, 512, 8), 32, 'the capacity a region was sized for is the one it gets back');
  t.is(capacityForRegion(l.totalBytes - 512, 512, 8), 31);
  // 4096 locks per node and 255 nodes fit the format (sparse).
  t.true(lockspaceRegionBytes(512, 255, 4096) < 2 ** 32);
  const seen = new Set<number>();
  for (let i = 0; i < 1000; i++) {
    const b = bucketOf(header, Buffer.from(`r${i}`));
    t.true(b >= 0 && b < 64);
    seen.add(b);
  }
  t.is(seen.size, 64, 'names spread over every bucket');
  t.is(bucketOf(header, Buffer.from('inode-17')), crc32Zlib(Buffer.from('inode-17')) % 64, 'bucket = zlib CRC-32 mod bucketCount');
});

test('a version 1 region is refused with an error naming the version', (t) => {
  // Version 1's header: same magic and framing, version 1, a different field set.
  const v1 = Buffer.alloc(512);
  v1.writeUInt32LE(0x484c4253, 0);
  v1.writeUInt16LE(1, 4);
  v1.writeUInt32LE(0xffffffff, 8);
  v1.writeUInt32LE(512, 12);
  v1.writeUInt32LE(8, 16);
  v1.writeUInt32LE(32, 20);
  v1.writeUInt32LE(32, 24);
  v1.writeUInt32LE(32, 28);
  v1.writeUInt8(3, 32);
  v1.write('ls1', 33);
  v1.writeUInt32LE(crc32Zlib(v1.subarray(0, 508)), 508);
  const e = t.throws(() => decodeLockspaceHeader(v1, where), { instanceOf: FormatError });
  t.regex(e!.message, /test\.img: lockspace header has version 1; this sanbox reads lockspace version 2 only .*cluster init.* at offset 4096/);
});

test('invalid records are refused with FormatError naming device and offset', (t) => {
  const b = encodeLockCell(lockCell, 512);
  b[100] ^= 1;
  const e = t.throws(() => decodeLockCell(b, { nodeId: 3, row: 17 }, where), { instanceOf: FormatError });
  t.regex(e!.message, /test\.img: lockspace lock cell record checksum mismatch .* at offset 4096/);
  t.throws(() => decodeLockCell(encodeLockCell(lockCell, 512), { nodeId: 4, row: 17 }, where), { instanceOf: FormatError, message: /names node 3/ });
  t.throws(() => decodeLockCell(encodeLockCell(lockCell, 512), { nodeId: 3, row: 18 }, where), { instanceOf: FormatError, message: /says row 17/ });
  t.throws(() => decodeLockspaceHeader(Buffer.alloc(512), where), { instanceOf: FormatError, message: /not formatted/ });
  t.throws(() => decodeLvbCell(encodeLvbCell(lvbCell, 512, 32), { nodeId: 3, row: 17 }, 64, where), { instanceOf: FormatError, message: /parameter 32/ });
  t.throws(() => encodeLockCell({ ...lockCell, entries: [{ ...entry, state: 'granted' }, undefined, undefined, undefined, undefined] }, 512), { instanceOf: RangeError });
  t.throws(() => encodeLockCell({ ...lockCell, entries: [{ ...entry, resource: Buffer.alloc(65) }, undefined, undefined, undefined, undefined] }, 512), { instanceOf: RangeError });
  t.throws(() => encodeLockCell({ ...lockCell, entries: [entry] }, 512), { instanceOf: RangeError });
  t.throws(() => encodeLockspaceHeader({ ...header, bucketCount: 63 }), { instanceOf: RangeError });
});

test('fuzz (seeded): random sectors, every single-bit flip and re-sealed garbage yield only FormatError', (t) => {
  const rnd = fuzzRandom(t);
  const bytes = (n: number) => rnd.bytes(n);
  const decoders: [string, Buffer, (b: Buffer) => unknown][] = [
    ['header', encodeLockspaceHeader(header), (b) => decodeLockspaceHeader(b, where)],
    ['node', encodeNodeHeader({ nodeId: 3, generation: 8n, seq: 1n, pid: 1, startedMs: 0 }, 512), (b) => decodeNodeHeader(b, 3, where)],
    ['lock cell', encodeLockCell(lockCell, 512), (b) => decodeLockCell(b, { nodeId: 3, row: 17 }, where)],
    ['value cell', encodeLvbCell(lvbCell, 512, 32), (b) => decodeLvbCell(b, { nodeId: 3, row: 17 }, 32, where)],
  ];
  let refused = 0;
  for (const [name, valid, decode] of decoders) {
    for (let bit = 0; bit < 512 * 8; bit++) {
      const b = Buffer.from(valid);
      b[bit >> 3]! ^= 1 << (bit & 7);
      const r = onlyFormatError(t, `${name}: flip of bit ${bit}`, () => decode(b));
      if (r === 'parsed') t.fail(`${name}: flip of bit ${bit} was accepted`);
      if (r === 'refused') refused++;
    }
    for (let i = 0; i < 2000; i++) onlyFormatError(t, `${name}: random input ${i}`, () => decode(bytes(512)));
    // Records with a valid CRC but nonsense fields: re-seal random field bytes.
    for (let i = 0; i < 4000; i++) {
      const b = Buffer.from(valid);
      bytes(8).copy(b, 8 + (i % 492));
      b.writeUInt32LE(crc32Zlib(b.subarray(0, 508)), 508);
      onlyFormatError(t, `${name}: resealed garbage ${i}`, () => decode(b));
    }
  }
  t.log(`${refused} bit flips refused`);
  t.pass();
});
