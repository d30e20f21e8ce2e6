// The cluster's device list (src/format/device-list.ts, src/volume/cluster-devices.ts): the codec's
// bytes, its refusals (typed, naming device and offset), seeded fuzz, the two-copy write that a
// torn write cannot lose, and an image made before the list's region: it opens, has no list, and
// a write to it is refused in one line.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { FormatError, SanboxError } from '../src/errors.js';
import { decodeDeviceList, decodeDeviceListCopy, DEVICE_LIST_COPY_BYTES, DEVICE_LIST_ENTRIES_MAX, DEVICE_LIST_PAYLOAD_BYTES, encodeDeviceListCopy, nextCopyIndex, type DeviceList } from '../src/format/device-list.js';
import { BLOCK_BYTES, encodeClusterHeader } from '../src/format/cluster-image.js';
import { initClusterImage, openRegion, readClusterImage } from '../src/heartbeat/cluster-image.js';
import { LOCAL_TIMING } from '../src/timing.js';
import { readClusterDevices, updateClusterDevices, withVgPvs } from '../src/volume/cluster-devices.js';
import { fuzzRandom, onlyFormatError } from './helpers/fuzz.js';
import { tempDir } from './helpers/tmp.js';
import { copyImage } from './helpers/image-copy.js';

const U1 = 'Dld9ukHeDMFZJ5P8GJvOwHwXMnEfzlxl';
const U2 = 'kWo1XCznPxLs0F9Asy6AKxT4xvVJRbww';
const LIST: DeviceList = { seq: 3n, entries: [{ device: '/img/a.img', pvUuid: U1, vg: 'vg0' }, { device: 'nbd://host:10809/pv', pvUuid: U2, vg: '' }] };

function payloadOf(...copies: (Buffer | undefined)[]): Buffer {
  const p = Buffer.alloc(DEVICE_LIST_PAYLOAD_BYTES);
  copies.forEach((c, i) => c?.copy(p, i * DEVICE_LIST_COPY_BYTES));
  return p;
}

test('codec: a copy round-trips; the header and first entry are where the layout says; zero is empty', (t) => {
  const b = encodeDeviceListCopy(LIST);
  t.is(b.length, DEVICE_LIST_COPY_BYTES);
  t.is(b.toString('latin1', 0, 8), 'SBXDEVL1');
  t.is(b.readUInt32LE(0x08), 1);
  t.is(b.readUInt32LE(0x0c), 2);
  t.is(b.readBigUInt64LE(0x10), 3n);
  t.is(b.toString('utf8', 0x40, 0x40 + 10), '/img/a.img');
  t.is(b.toString('latin1', 0x40 + 0x160, 0x40 + 0x180), U1);
  t.is(b.toString('utf8', 0x40 + 0x180, 0x40 + 0x183), 'vg0');
  t.deepEqual(decodeDeviceListCopy(b), LIST);
  t.is(decodeDeviceListCopy(Buffer.alloc(DEVICE_LIST_COPY_BYTES)), undefined);
  t.deepEqual(decodeDeviceList(Buffer.alloc(DEVICE_LIST_PAYLOAD_BYTES)), { seq: 0n, entries: [] });
  t.is(DEVICE_LIST_ENTRIES_MAX, 127);
  t.throws(() => encodeDeviceListCopy({ seq: 1n, entries: Array.from({ length: 128 }, (_, i) => ({ device: `/d${i}`, pvUuid: U1, vg: '' })) }), { instanceOf: RangeError });
  t.throws(() => encodeDeviceListCopy({ seq: 1n, entries: [LIST.entries[0]!, LIST.entries[0]!] }), { message: /listed twice/ });
  t.throws(() => encodeDeviceListCopy({ seq: 1n, entries: [{ device: '/d', pvUuid: 'short', vg: '' }] }), { message: /PV uuid/ });
});

test('codec: bad magic, version, count, CRC, duplicate or empty device are FormatErrors naming the device and offset', (t) => {
  const where = { device: 'c.img:devices', offsetBytes: 1000 };
  const bad = (mutate: (b: Buffer) => void, re: RegExp): void => {
    const b = encodeDeviceListCopy(LIST);
    mutate(b);
    const err = t.throws(() => decodeDeviceListCopy(b, where), { instanceOf: FormatError });
    t.regex(err!.message, re);
    t.regex(err!.message, /^c\.img:devices: /);
  };
  bad((b) => b.write('XXXXXXXX', 0, 'latin1'), /not a device list: magic .* at offset 1000$/);
  bad((b) => b.writeUInt32LE(2, 0x08), /version 2 is not supported .* at offset 1008$/);
  bad((b) => b.writeUInt32LE(500, 0x0c), /count 500 .* at offset 1012$/);
  bad((b) => (b[0x40 + 3] ^= 1), /bad checksum.* at offset 1024$/);
});

test('two copies: a write goes to the copy that is not the newest; a torn newest copy leaves the older one', (t) => {
  const older = encodeDeviceListCopy({ ...LIST, seq: 4n });
  const newer = encodeDeviceListCopy({ ...LIST, seq: 5n, entries: LIST.entries.slice(0, 1) });
  t.is(nextCopyIndex(payloadOf(older, newer)), 0);
  t.is(nextCopyIndex(payloadOf(newer, older)), 1);
  t.is(nextCopyIndex(payloadOf()), 0);
  t.is(decodeDeviceList(payloadOf(older, newer)).seq, 5n);
  const torn = Buffer.from(newer);
  torn.fill(0xee, 0x40, 0x140);
  t.is(decodeDeviceList(payloadOf(older, torn)).seq, 4n);
  t.is(nextCopyIndex(payloadOf(older, torn)), 1, 'the torn copy is rewritten, the good one kept');
  t.throws(() => decodeDeviceList(payloadOf(torn, torn)), { instanceOf: FormatError });
});

test('fuzz: mutated copies and payloads decode or throw FormatError; what decodes re-encodes to the same bytes', (t) => {
  const r = fuzzRandom(t);
  const base = encodeDeviceListCopy(LIST);
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(base);
    const n = r.int(1, 6);
    for (let k = 0; k < n; k++) b[r.next() < 0.7 ? r.int(0, 0x40 + 2 * 512) : r.int(0, b.length)] = r.int(0, 256);
    let d: DeviceList | undefined;
    if (onlyFormatError(t, `copy mutant ${i}`, () => (d = decodeDeviceListCopy(b))) === 'parsed' && d !== undefined) {
      t.deepEqual(decodeDeviceListCopy(encodeDeviceListCopy(d)), d);
    }
    onlyFormatError(t, `payload mutant ${i}`, () => decodeDeviceList(payloadOf(b, r.next() < 0.5 ? base : undefined)));
  }
  t.pass();
});

test('the region: updates under the list lock keep entries per VG; an image made without the region opens, has no list and refuses a write in one line', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  const info = await initClusterImage(img, { nodeCount: 2, clusterName: 'dl', timing: LOCAL_TIMING });
  t.true(info.regions.has('devices'));
  t.deepEqual(await readClusterDevices(img), []);
  await updateClusterDevices(img, (e) => withVgPvs(e, 'vg0', [{ device: '/x/a.img', pvUuid: U1 }]));
  await updateClusterDevices(img, (e) => withVgPvs(e, 'vg0', [{ device: '/x/a.img', pvUuid: U1 }, { device: '/x/b.img', pvUuid: U2 }]));
  t.deepEqual(await readClusterDevices(img), [
    { device: '/x/a.img', pvUuid: U1, vg: 'vg0' },
    { device: '/x/b.img', pvUuid: U2, vg: 'vg0' },
  ]);
  await updateClusterDevices(img, (e) => withVgPvs(e, 'vg0', [{ device: '/x/a.img', pvUuid: U1 }], [{ device: '/x/b.img', pvUuid: U2 }]));
  t.deepEqual((await readClusterDevices(img))!.map((e) => `${e.device}:${e.vg}`), ['/x/a.img:vg0', '/x/b.img:']);
  // Both copies on disk, the newer wins.
  const region = await openRegion(img, 'devices', { readOnly: true, guard: 'none' });
  const payload = Buffer.alloc(DEVICE_LIST_PAYLOAD_BYTES);
  await region.read(payload, 0);
  await region.closeAll();
  t.is(decodeDeviceList(payload).seq, 3n);

  // The same image as one made before the region: its header without the 'devices' entry.
  const old = path.join(dir, 'old.img');
  copyImage(img, old);
  const hdr = encodeClusterHeader({ ...info.header, regions: info.header.regions.filter((r) => r.name !== 'devices') });
  const fd = fs.openSync(old, 'r+');
  fs.writeSync(fd, hdr, 0, BLOCK_BYTES, 0);
  fs.closeSync(fd);
  const oldInfo = await readClusterImage(old);
  t.false(oldInfo.regions.has('devices'));
  t.is(await readClusterDevices(old), undefined);
  const err = await t.throwsAsync(updateClusterDevices(old, (e) => e), { instanceOf: SanboxError });
  t.regex(err!.message, /old\.img: this cluster image was made before the cluster's device list \(no 'devices' region\)/);
});
