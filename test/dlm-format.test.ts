// The lockspace record codecs (src/format/lockspace.ts): round trips, exact offsets of a few
// fields (the layout table in the file header), checksums, and fuzzing: random sectors and every
// single-bit flip of valid records may only ever produce the typed FormatError (or, for a flip that
// the CRC cannot see — none exist for single bits — the identical record).

import test from 'ava';
import crypto from 'node:crypto';
import { crc32Zlib } from '../src/format/crc32.js';
import { FormatError } from '../src/errors.js';
import {
  decodeLockRecord,
  decodeLockspaceHeader,
  decodeLvbRecord,
  decodeNodeHeader,
  encodeLockRecord,
  encodeLockspaceHeader,
  encodeLvbRecord,
  encodeNodeHeader,
  lockRecordOffset,
  lockspaceLayout,
  lvbRecordOffset,
  nodeHeaderOffset,
  type LockRecord,
  type LockspaceHeader,
  type LvbRecord,
} from '../src/format/lockspace.js';

const where = { device: 'test.img', offsetBytes: 4096 };
const header: LockspaceHeader = { sectorSizeBytes: 512, maxNodes: 8, locksPerNode: 32, lvbsPerNode: 16, lvbLenBytes: 32, name: 'ls1' };
const lock: LockRecord = {
  nodeId: 3,
  generation: 0xfedcba9876543210n,
  seq: 42n,
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
const lvb: LvbRecord = { nodeId: 3, generation: 5n, seq: 9n, resource: Buffer.from([0, 1, 2, 255]), valueSeq: 77n, value: Buffer.alloc(32, 0xab), invalidSeq: 12n };

test('round trips and field offsets', (t) => {
  for (const s of [512, 4096] as const) {
    const h = { ...header, sectorSizeBytes: s };
    const hb = encodeLockspaceHeader(h);
    t.is(hb.length, s);
    t.deepEqual(decodeLockspaceHeader(hb, where), h);
    const lb = encodeLockRecord(lock, s);
    t.deepEqual(decodeLockRecord(lb, 3, where), lock);
    t.is(lb.toString('latin1', 0, 4), 'SBLK');
    t.is(lb.readBigUInt64LE(40), lock.ticket);
    t.is(lb.subarray(61, 69).toString(), 'inode-17');
    const vb = encodeLvbRecord(lvb, s, 32);
    t.deepEqual(decodeLvbRecord(vb, 3, 32, where), lvb);
    t.is(vb.readBigUInt64LE(104), 77n);
    const nb = encodeNodeHeader({ nodeId: 2, generation: 1n, seq: 2n, pid: 3, startedMs: 1700000000000 }, s);
    t.deepEqual(decodeNodeHeader(nb, 2, where), { nodeId: 2, generation: 1n, seq: 2n, pid: 3, startedMs: 1700000000000 });
  }
  t.is(decodeLockRecord(Buffer.alloc(512), 0, where), undefined, 'a blank sector is a free record');
});

test('layout: areas are sector-aligned and do not overlap', (t) => {
  const l = lockspaceLayout(header);
  t.is(nodeHeaderOffset(l, 0), 512);
  t.is(lockRecordOffset(l, 0, 0), 512 * 9);
  t.is(lockRecordOffset(l, 7, 31) + 512, lvbRecordOffset(l, 0, 0));
  t.is(lvbRecordOffset(l, 7, 15) + 512, l.totalBytes);
});

test('invalid records are refused with FormatError naming device and offset', (t) => {
  const b = encodeLockRecord(lock, 512);
  b[100] ^= 1;
  const e = t.throws(() => decodeLockRecord(b, 3, where), { instanceOf: FormatError });
  t.regex(e!.message, /test\.img: lockspace lock record checksum mismatch .* at offset 4096/);
  t.throws(() => decodeLockRecord(encodeLockRecord(lock, 512), 4, where), { instanceOf: FormatError, message: /names node 3/ });
  t.throws(() => decodeLockspaceHeader(Buffer.alloc(512), where), { instanceOf: FormatError, message: /not formatted/ });
  t.throws(() => decodeLvbRecord(encodeLvbRecord(lvb, 512, 32), 3, 64, where), { instanceOf: FormatError, message: /length 32/ });
  t.throws(() => encodeLockRecord({ ...lock, state: 'granted' }, 512), { instanceOf: RangeError });
  t.throws(() => encodeLockRecord({ ...lock, resource: Buffer.alloc(65) }, 512), { instanceOf: RangeError });
});

test('fuzz: random sectors and every single-bit flip yield only FormatError', (t) => {
  const decoders: [string, Buffer, (b: Buffer) => unknown][] = [
    ['header', encodeLockspaceHeader(header), (b) => decodeLockspaceHeader(b, where)],
    ['node', encodeNodeHeader({ nodeId: 3, generation: 8n, seq: 1n, pid: 1, startedMs: 0 }, 512), (b) => decodeNodeHeader(b, 3, where)],
    ['lock', encodeLockRecord(lock, 512), (b) => decodeLockRecord(b, 3, where)],
    ['lvb', encodeLvbRecord(lvb, 512, 32), (b) => decodeLvbRecord(b, 3, 32, where)],
  ];
  let refused = 0;
  for (const [name, valid, decode] of decoders) {
    for (let bit = 0; bit < 512 * 8; bit++) {
      const b = Buffer.from(valid);
      b[bit >> 3]! ^= 1 << (bit & 7);
      try {
        decode(b);
        t.fail(`${name}: flip of bit ${bit} was accepted`);
      } catch (err) {
        if (!(err instanceof FormatError)) t.fail(`${name}: bit ${bit}: ${String(err)}`);
        refused++;
      }
    }
    for (let i = 0; i < 2000; i++) {
      const b = crypto.randomBytes(512);
      try {
        decode(b);
      } catch (err) {
        if (!(err instanceof FormatError)) t.fail(`${name}: random input: ${String(err)}`);
      }
    }
    // Records with a valid CRC but nonsense fields: re-seal random field bytes.
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.from(valid);
      crypto.randomBytes(8).copy(b, 8 + (i % 120));
      b.writeUInt32LE(crc32Zlib(b.subarray(0, 508)), 508);
      try {
        decode(b);
      } catch (err) {
        if (!(err instanceof FormatError)) t.fail(`${name}: resealed garbage: ${String(err)}`);
      }
    }
  }
  t.log(`${refused} bit flips refused`);
  t.pass();
});

