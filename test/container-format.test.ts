// The container record codec (src/format/container.ts): round trip, the newer valid copy wins, a
// torn or corrupt copy is never trusted, typed errors name device and offset, seeded fuzz.

import test from 'ava';
import { FormatError } from '../src/errors.js';
import {
  CONTAINER_PVS_MAX,
  CONTAINER_RECORD_BYTES,
  decodeContainer,
  encodeContainer,
  newestContainer,
  type ContainerCopy,
  type ContainerRecord,
} from '../src/format/container.js';
import { fuzzRandom, onlyFormatError } from './helpers/fuzz.js';

const id = (c: string): string => c.repeat(32);

function record(over: Partial<ContainerRecord> = {}): ContainerRecord {
  return {
    sequence: 3,
    kind: 'private',
    lockType: undefined,
    ownerNode: 2,
    vgName: 'vg0',
    vgUuid: id('a'),
    clusterName: 'lab',
    clusterUuid: Buffer.alloc(16, 7),
    pvUuids: [id('b'), id('c')],
    ...over,
  };
}

test('round trip of every kind', (t) => {
  const kinds: Partial<ContainerRecord>[] = [
    { kind: 'local', ownerNode: undefined, clusterName: '', clusterUuid: Buffer.alloc(16) },
    { kind: 'private', ownerNode: 254 },
    { kind: 'shared', ownerNode: undefined, lockType: 'dlm' },
    { kind: 'deported', ownerNode: undefined },
    { kind: 'deported', ownerNode: undefined, clusterName: '', clusterUuid: Buffer.alloc(16) },
    { pvUuids: Array.from({ length: CONTAINER_PVS_MAX }, (_, i) => `${i}`.padStart(32, 'x')) },
  ];
  for (const k of kinds) {
    const r = record(k);
    const buf = encodeContainer(r);
    t.is(buf.length, CONTAINER_RECORD_BYTES);
    t.deepEqual(decodeContainer(buf), r);
  }
});

test('the encoder refuses what would not read back', (t) => {
  const bad: Partial<ContainerRecord>[] = [
    { ownerNode: undefined },
    { kind: 'shared' },
    { kind: 'local', ownerNode: undefined, lockType: 'dlm' },
    { ownerNode: 255 },
    { pvUuids: [] },
    { pvUuids: Array.from({ length: CONTAINER_PVS_MAX + 1 }, () => id('d')) },
    { vgUuid: 'short' },
    { clusterName: '' },
    { sequence: 0 },
  ];
  for (const b of bad) t.throws(() => encodeContainer(record(b)), { instanceOf: FormatError }, JSON.stringify(b));
});

test('a corrupt copy is a FormatError naming the device and the offset of the bad field', (t) => {
  const buf = encodeContainer(record());
  const torn = Buffer.from(buf);
  torn.fill(0, 512); // the second sector never made it
  const e = t.throws(() => decodeContainer(torn, { device: 'pv1.img', offsetBytes: 2048 }), { instanceOf: FormatError });
  t.regex(e!.message, /^pv1\.img: container record: CRC .* torn or corrupt at offset 3068$/);
  const magic = Buffer.from(buf);
  magic[0] = 0x41;
  t.regex(t.throws(() => decodeContainer(magic, { device: 'pv1.img', offsetBytes: 3072 }))!.message, /bad magic .* at offset 3072$/);
});

test('the newer valid copy wins; torn copies and copies of another VG never do', (t) => {
  const dev = 'pv.img';
  const copy = (r: ContainerRecord, offsetBytes: number): ContainerCopy => ({ record: r, offsetBytes, device: dev });
  const torn: ContainerCopy = { error: new FormatError('torn'), offsetBytes: 2048, device: dev };
  const old = record({ sequence: 4 });
  const newer = record({ sequence: 5, ownerNode: 0 });
  const otherVg = record({ sequence: 99, vgUuid: id('z') });
  t.is(newestContainer([copy(old, 3072), copy(newer, 2048)], id('a'))!.record, newer);
  t.is(newestContainer([torn, copy(old, 3072)], id('a'))!.record, old);
  t.is(newestContainer([copy(otherVg, 2048), copy(old, 3072)], id('a'))!.record, old);
  t.is(newestContainer([torn], id('a')), undefined);
});

test('fuzz: mutated and random records decode or throw FormatError, nothing else', (t) => {
  const rnd = fuzzRandom(t);
  const good = encodeContainer(record());
  let refused = 0;
  for (let i = 0; i < 3000; i++) {
    let buf: Buffer;
    if (i % 3 === 0) {
      buf = rnd.bytes(CONTAINER_RECORD_BYTES);
      if (rnd.next() < 0.5) good.copy(buf, 0, 0, 8);
    } else {
      buf = Buffer.from(good);
      const n = 1 + rnd.int(4);
      for (let k = 0; k < n; k++) buf[rnd.int(CONTAINER_RECORD_BYTES)] = rnd.int(256);
    }
    if (onlyFormatError(t, `case ${i}`, () => decodeContainer(buf, { device: 'fuzz', offsetBytes: 2048 })) === 'refused') refused++;
  }
  t.true(refused > 0);
});

test('fuzz: a mutated record with a recomputed CRC still validates every field', async (t) => {
  const { crc32Zlib } = await import('../src/format/crc32.js');
  const rnd = fuzzRandom(t);
  const good = encodeContainer(record());
  for (let i = 0; i < 3000; i++) {
    const buf = Buffer.from(good);
    buf[8 + rnd.int(0x110 - 8)] = rnd.int(256);
    buf.writeUInt32LE(crc32Zlib(buf.subarray(0, CONTAINER_RECORD_BYTES - 4)), CONTAINER_RECORD_BYTES - 4);
    const outcome = onlyFormatError(t, `case ${i}`, () => {
      const r = decodeContainer(buf);
      // What decodes must encode back to the same bytes: the decoder let nothing through the encoder refuses.
      t.deepEqual(encodeContainer(r), buf);
    });
    t.not(outcome, 'other');
  }
});
