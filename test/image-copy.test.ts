// The tests' sparse image copy (test/helpers/image-copy.ts): the copy reads byte for byte as the
// source, over an existing larger file too, and allocates only the source's non-zero blocks.

import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { copyImage } from './helpers/image-copy.js';
import { fuzzRandom } from './helpers/fuzz.js';
import { tempDir } from './helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** st_blocks counts 512-byte units. */
const STAT_BLOCK_BYTES = 512;

test('copyImage: same bytes as the source (data, zeros, holes, an odd tail), over a longer file, and sparse', (t) => {
  const rand = fuzzRandom(t);
  const dir = tempDir(t);
  for (let round = 0; round < 8; round++) {
    const src = path.join(dir, 'src.img');
    const dst = path.join(dir, 'dst.img');
    // An odd size: the last block is partial; the source mixes holes, written zeros and data.
    const sizeBytes = 3 * MiB + rand.int(1, 4096);
    fs.writeFileSync(src, '');
    fs.truncateSync(src, sizeBytes);
    const fd = fs.openSync(src, 'r+');
    let dataBytes = 0;
    for (let i = 0; i < 12; i++) {
      const len = rand.int(1, 9000);
      const at = rand.int(0, sizeBytes - len);
      const bytes = rand.next() < 0.3 ? Buffer.alloc(len) : Buffer.from(Array.from({ length: len }, () => rand.int(1, 256)));
      fs.writeSync(fd, bytes, 0, len, at);
      dataBytes += len;
    }
    // Data in the partial last block.
    fs.writeSync(fd, Buffer.from([0xa5]), 0, 1, sizeBytes - 1);
    fs.closeSync(fd);
    // A longer destination full of non-zero bytes: none of them may survive.
    fs.writeFileSync(dst, Buffer.alloc(sizeBytes + 5 * KiB, 0xff));
    copyImage(src, dst);
    t.true(fs.readFileSync(dst).equals(fs.readFileSync(src)), `round ${round}: same bytes (seed ${rand.seed})`);
    // Each written run touches at most 4 blocks of 4 KiB (≤ 9000 bytes); zero blocks are left out.
    const allocatedBytes = fs.statSync(dst).blocks * STAT_BLOCK_BYTES;
    t.true(allocatedBytes <= (12 * 4 + 1) * 4 * KiB, `round ${round}: ${allocatedBytes} bytes allocated for ${dataBytes} bytes written`);
  }
});

test('copyImage keeps the mode and refuses a missing source', (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'a.img');
  fs.writeFileSync(src, Buffer.alloc(8192, 1), { mode: 0o600 });
  fs.chmodSync(src, 0o600);
  const dst = path.join(dir, 'b.img');
  copyImage(src, dst);
  t.is(fs.statSync(dst).mode & 0o777, 0o600);
  t.throws(() => copyImage(path.join(dir, 'missing.img'), dst), { code: 'ENOENT' });
});
