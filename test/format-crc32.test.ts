// The zlib-form CRC-32 of sanbox's own records (src/format/crc32.ts): the standard check value,
// zlib chaining, and that the "with a hole" form equals the CRC of a copy with the field zeroed
// (how every record computed it before; the on-disk bytes must not change).

import test from 'ava';
import { FormatError } from '../src/errors.js';
import { checkCrc32Zlib, crc32Zlib, crc32ZlibWithHole, sealCrc32Zlib } from '../src/format/crc32.js';
import { fuzzSeed, prng } from './helpers/fuzz.js';

test('crc32Zlib is zlib crc32: check value and chaining', (t) => {
  t.is(crc32Zlib(Buffer.from('123456789')), 0xcbf43926);
  t.is(crc32Zlib(Buffer.alloc(0)), 0);
  const a = Buffer.from('sanbox ');
  const b = Buffer.from('cluster image');
  t.is(crc32Zlib(b, crc32Zlib(a)), crc32Zlib(Buffer.concat([a, b])));
});

test('with a hole equals the CRC of a copy with the field zeroed; seal and check agree', (t) => {
  const seed = fuzzSeed(t);
  const rand = prng(seed);
  for (let i = 0; i < 300; i++) {
    const len = 4 + Math.floor(rand() * 8192);
    const buf = Buffer.alloc(len);
    for (let j = 0; j < len; j++) buf[j] = Math.floor(rand() * 256);
    const hole = Math.floor(rand() * (len - 3));
    const zeroed = Buffer.from(buf);
    zeroed.writeUInt32LE(0, hole);
    t.is(crc32ZlibWithHole(buf, hole), crc32Zlib(zeroed), `seed ${seed} case ${i}`);
    sealCrc32Zlib(buf, hole);
    t.notThrows(() => checkCrc32Zlib(buf, hole, { device: 'd', offsetBytes: 100 }, 'record', 'x'));
    buf[(hole + 4) % len] ^= 1;
    if ((hole + 4) % len !== hole) {
      const e = t.throws(() => checkCrc32Zlib(buf, hole, { device: 'd', offsetBytes: 100 }, 'record', 'x'), { instanceOf: FormatError });
      t.is(e?.offsetBytes, 100 + hole);
    }
  }
});
