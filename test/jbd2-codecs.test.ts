// JBD2 codecs: crc32c check value, superblock round trips (plain and checksum v2/v3), descriptor
// tags in every tag format, commit and revoke blocks (32/64-bit), checksum failures as typed
// errors naming the offset, and fuzzing (only FormatError may come out of a parser).

import test from 'ava';
import { FormatError } from '../src/errors.js';
import { crc32c } from '../src/format/crc32.js';
import {
  encodeCommit, encodeDescriptor, encodeRevoke, parseCommit, parseDescriptor, parseRevoke, tagBytes, TagFlag, dataBlockChecksum,
} from '../src/format/jbd2/log-blocks.js';
import { encodeJbd2Superblock, freshJbd2Superblock, Jbd2FeatureIncompat, jbd2ChecksumSeed, parseJbd2Superblock, type Jbd2Superblock } from '../src/format/jbd2/superblock.js';
import { onlyFormatError, prng, fuzzSeed } from './helpers/fuzz.js';

const UUID = Buffer.from('00112233445566778899aabbccddeeff', 'hex');

function sbWith(incompat: number, blockSize = 4096): Jbd2Superblock {
  const sb = freshJbd2Superblock({ blockSize, maxLen: 1024, uuid: UUID, incompat });
  if (incompat & (Jbd2FeatureIncompat.CSUM_V2 | Jbd2FeatureIncompat.CSUM_V3)) sb.checksumType = 4;
  return sb;
}


test('crc32c (seed ~0, no final xor) matches the check value 0x1CF96D7C', (t) => {
  t.is(crc32c(0xffffffff, Buffer.from('123456789')), 0x1cf96d7c);
  t.is((crc32c(0xffffffff, Buffer.from('123456789')) ^ 0xffffffff) >>> 0, 0xe3069283);
});

test('superblock round trip, fresh mkfs.ocfs2 values, and bad fields as typed errors with offsets', (t) => {
  const sb = freshJbd2Superblock({ blockSize: 512, maxLen: 8192, uuid: UUID });
  t.is(sb.first, 2, 'a 1024-byte superblock spans two 512-byte blocks');
  t.is(sb.start, 1);
  t.is(sb.sequence, 1);
  const buf = encodeJbd2Superblock(sb);
  t.is(buf.readUInt32BE(0), 0xc03b3998);
  const back = parseJbd2Superblock(buf, { device: 'j', offsetBytes: 4096 }, 512);
  t.is(back.maxLen, 8192);
  t.deepEqual(back.uuid, UUID);
  t.is(back.nrUsers, 1);
  const cases: [number, Buffer, RegExp][] = [
    [0, Buffer.from([0, 0, 0, 0]), /magic/],
    [4, Buffer.from([0, 0, 0, 7]), /block type 7/],
    [0x0c, Buffer.from([0, 0, 3, 0]), /block size 768/],
    [0x14, Buffer.from([0, 0, 0, 0]), /s_first 0/],
    [0x1c, Buffer.from([0, 0, 0x40, 0]), /s_start 16384/],
    [0x28, Buffer.from([0, 0, 1, 0]), /unknown incompat/],
  ];
  for (const [off, bytes, re] of cases) {
    const bad = Buffer.from(buf);
    bytes.copy(bad, off);
    const err = t.throws(() => parseJbd2Superblock(bad, { device: 'j', offsetBytes: 4096 }, 512), { instanceOf: FormatError, message: re });
    t.is(err?.offsetBytes, 4096 + off);
  }
  t.throws(() => parseJbd2Superblock(buf, {}, 4096), { instanceOf: FormatError, message: /differs from the filesystem block size/ });
});

test('checksum v2/v3 superblock: crc32c computed on encode, verified on parse', (t) => {
  for (const f of [Jbd2FeatureIncompat.CSUM_V2, Jbd2FeatureIncompat.CSUM_V3 | Jbd2FeatureIncompat.BIT64]) {
    const buf = encodeJbd2Superblock(sbWith(f));
    const zeroed = Buffer.from(buf);
    zeroed.writeUInt32BE(0, 0xfc);
    t.is(buf.readUInt32BE(0xfc), crc32c(0xffffffff, zeroed));
    t.notThrows(() => parseJbd2Superblock(buf, {}, 4096));
    buf[0x200] = 0x5a;
    const err = t.throws(() => parseJbd2Superblock(buf, { device: 'j', offsetBytes: 0 }, 4096), { instanceOf: FormatError, message: /checksum/ });
    t.is(err?.offsetBytes, 0xfc);
  }
});

test('descriptor tags in every format: sizes, block numbers, flags, UUID, tail checksum', (t) => {
  const formats: [string, number, number][] = [
    ['none', 0, 8],
    ['64bit', Jbd2FeatureIncompat.BIT64, 12],
    ['csum v2', Jbd2FeatureIncompat.CSUM_V2, 10],
    ['csum v2 + 64bit', Jbd2FeatureIncompat.CSUM_V2 | Jbd2FeatureIncompat.BIT64, 14],
    ['csum v3', Jbd2FeatureIncompat.CSUM_V3, 16],
    ['csum v3 + 64bit', Jbd2FeatureIncompat.CSUM_V3 | Jbd2FeatureIncompat.BIT64, 16],
  ];
  for (const [name, f, size] of formats) {
    const sb = sbWith(f, 1024);
    t.is(tagBytes(sb), size, name);
    const big = f & Jbd2FeatureIncompat.BIT64 ? 2 ** 40 + 5 : 0xfffffff0;
    const tags = [{ blocknr: 100, checksum: 0x1234 }, { blocknr: big, flags: TagFlag.ESCAPE, checksum: 0xbeef }, { blocknr: 7 }];
    const block = encodeDescriptor(42, tags, sb);
    const d = parseDescriptor(block, sb, { device: 'j', offsetBytes: 0 });
    t.is(d.sequence, 42);
    t.deepEqual(d.tags.map((x) => x.blocknr), [100, big, 7], name);
    t.deepEqual(d.tags.map((x) => x.flags), [0, TagFlag.ESCAPE | TagFlag.SAME_UUID, TagFlag.SAME_UUID | TagFlag.LAST_TAG], name);
    t.deepEqual(d.tags[0]!.uuid, UUID);
    t.is(d.tags[1]!.uuid, undefined);
    if (f & Jbd2FeatureIncompat.CSUM_V3) t.is(d.tags[1]!.checksum, 0xbeef);
    else if (f & Jbd2FeatureIncompat.CSUM_V2) t.is(d.tags[0]!.checksum, 0x1234);
    const csum = (f & (Jbd2FeatureIncompat.CSUM_V2 | Jbd2FeatureIncompat.CSUM_V3)) !== 0;
    t.is(d.tailValid, csum ? true : undefined, name);
    if (csum) {
      const seed = jbd2ChecksumSeed(sb);
      const zeroed = Buffer.from(block);
      zeroed.writeUInt32BE(0, block.length - 4);
      t.is(block.readUInt32BE(block.length - 4), crc32c(seed, zeroed));
      block[200] ^= 1;
      t.false(parseDescriptor(block, sb).tailValid);
    }
  }
  // A descriptor whose tags never end is a typed error, not a read past the block.
  const sb = sbWith(0, 1024);
  const block = encodeDescriptor(1, [{ blocknr: 1 }], sb);
  block.writeUInt32BE(0, 12 + 4); // clear LAST_TAG
  block.fill(0, 12 + 8 + 16);
  t.throws(() => parseDescriptor(block, sb, { device: 'j', offsetBytes: 8192 }), { instanceOf: FormatError, message: /without a LAST_TAG/ });
});

test('data block tag checksum folds the sequence then the block', (t) => {
  const seed = jbd2ChecksumSeed({ uuid: UUID });
  const data = Buffer.alloc(1024, 0x33);
  const seq = Buffer.from([0, 0, 0, 9]);
  t.is(dataBlockChecksum(seed, 9, data), crc32c(crc32c(seed, seq), data));
});

test('commit and revoke blocks round trip (32- and 64-bit), r_count validated', (t) => {
  for (const f of [0, Jbd2FeatureIncompat.BIT64, Jbd2FeatureIncompat.CSUM_V3 | Jbd2FeatureIncompat.BIT64]) {
    const sb = sbWith(f, 1024);
    const c = parseCommit(encodeCommit(77, sb, 1763890000n, 12345), sb);
    t.is(c.sequence, 77);
    t.is(c.commitSec, 1763890000n);
    t.is(c.commitNsec, 12345);
    t.is(c.checksumValid, f & Jbd2FeatureIncompat.CSUM_V3 ? true : undefined);
    const blocks = f & Jbd2FeatureIncompat.BIT64 ? [1, 2 ** 33 + 9, 4242] : [1, 0xffffffff, 4242];
    const rb = encodeRevoke(78, blocks, sb);
    const r = parseRevoke(rb, sb);
    t.deepEqual(r.blocks, blocks);
    t.is(r.count, 16 + blocks.length * (f & Jbd2FeatureIncompat.BIT64 ? 8 : 4));
    rb.writeUInt32BE(5000, 0x0c);
    const err = t.throws(() => parseRevoke(rb, sb, { device: 'j', offsetBytes: 1024 }), { instanceOf: FormatError, message: /r_count 5000/ });
    t.is(err?.offsetBytes, 1024 + 0x0c);
  }
  t.throws(() => parseCommit(encodeRevoke(1, [], sbWith(0)), sbWith(0)), { instanceOf: FormatError, message: /expected 2/ });
});

test('fuzz: random and bit-flipped journal blocks only ever raise FormatError', (t) => {
  const rand = prng(fuzzSeed(t));
  const sbs = [sbWith(0, 1024), sbWith(Jbd2FeatureIncompat.BIT64, 1024), sbWith(Jbd2FeatureIncompat.CSUM_V3 | Jbd2FeatureIncompat.BIT64, 1024), sbWith(Jbd2FeatureIncompat.CSUM_V2, 1024)];
  let formatErrors = 0;
  let parsed = 0;
  for (let i = 0; i < 4000; i++) {
    const sb = sbs[i % sbs.length]!;
    const seeds = [
      encodeJbd2Superblock(sb),
      encodeDescriptor(5, [{ blocknr: 9 }, { blocknr: 10 }, { blocknr: 11 }], sb),
      encodeCommit(5, sb),
      encodeRevoke(6, [1, 2, 3], sb),
    ];
    let buf: Buffer;
    if (i % 5 === 0) buf = Buffer.from(Array.from({ length: 1024 }, () => Math.floor(rand() * 256)));
    else {
      buf = Buffer.from(seeds[i % seeds.length]!);
      const flips = 1 + Math.floor(rand() * 8);
      for (let k = 0; k < flips; k++) buf[Math.floor(rand() * 96)] ^= 1 << Math.floor(rand() * 8);
    }
    if (i % 7 === 0) buf = buf.subarray(0, Math.floor(rand() * buf.length));
    for (const parse of [
      () => parseJbd2Superblock(buf, { device: 'fuzz', offsetBytes: 0 }),
      () => parseDescriptor(buf, sb),
      () => parseCommit(buf, sb),
      () => parseRevoke(buf, sb),
    ]) {
      const r = onlyFormatError(t, `case ${i}`, parse);
      if (r === 'other') return;
      if (r === 'parsed') parsed++;
      else formatErrors++;
    }
  }
  t.true(formatErrors > 1000);
  t.true(parsed > 100);
});
