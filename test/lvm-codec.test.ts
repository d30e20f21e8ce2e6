// Pure LVM2 codecs: CRC test vectors, label/pv_header and mda_header layouts (worked examples from
// reference/lvm2.md rebuilt from field values), the circular text buffer, the config grammar, VG
// text round trips, and fuzzing: random and bit-flipped input may only ever raise FormatError.

import test from 'ava';
import crypto from 'node:crypto';
import { FormatError } from '../src/errors.js';
import { parseConfig, formatEntries } from '../src/format/lvm/config-text.js';
import { decodeLabel, encodeLabel, scanLabel, type PvLabel } from '../src/format/lvm/label.js';
import { lvmCrc, LVM_CRC_INITIAL } from '../src/format/lvm/lvm-crc.js';
import {
  copiesOverlap,
  decodeMdaHeader,
  EMPTY_LOCN,
  encodeMdaHeader,
  maxTextBytes,
  nextTextOffset,
  planTextWrite,
  piecesChecksum,
  textPieces,
} from '../src/format/lvm/mda-header.js';
import { dashId, idFromRandom, undashId } from '../src/format/lvm/uuid.js';
import type { VgModel } from '../src/format/lvm/vg-model.js';
import { parseVgText, writeVgText } from '../src/format/lvm/vg-text.js';
import { onlyFormatError, fuzzRandom } from './helpers/fuzz.js';

test('LVM CRC: test vectors, zlib relation and chaining', (t) => {
  t.is(lvmCrc(Buffer.alloc(0)), 0xf597a6cf);
  t.is(lvmCrc(Buffer.from('123456789')), 0x4991cf02);
  t.is(lvmCrc(Buffer.alloc(4)), 0x000cc5cc);
  t.is(lvmCrc(Buffer.from('a')), 0x319b1949);
  const a = crypto.randomBytes(1000);
  const b = crypto.randomBytes(777);
  t.is(lvmCrc(Buffer.concat([a, b])), lvmCrc(b, lvmCrc(a)));
  t.is(piecesChecksum([a, b]), lvmCrc(Buffer.concat([a, b])));
  t.is(lvmCrc(a, LVM_CRC_INITIAL, 10, 20), lvmCrc(a.subarray(10, 20)));
});

const EXAMPLE_ID = 'ncmZVR5EhubTzWS8wueJNzkjO8ZsQNeG';
const exampleLabel = (flags: number): PvLabel => ({
  sector: 1,
  pvId: EXAMPLE_ID,
  deviceSizeBytes: 104857600,
  dataAreas: [{ offsetBytes: 1048576, sizeBytes: 0 }],
  metadataAreas: [{ offsetBytes: 4096, sizeBytes: 1044480 }],
  extVersion: 2,
  extFlags: flags,
  bootloaderAreas: [],
});

test('label sector: the worked example of lvm2.md §2.4 from its field values (CRC 0x72FEA932, in a VG 0x73B75CDC)', (t) => {
  const buf = encodeLabel(exampleLabel(0));
  t.is(buf.length, 512);
  t.is(buf.readUInt32LE(16), 0x72fea932);
  t.is(buf.toString('latin1', 0, 8), 'LABELONE');
  t.is(buf.toString('latin1', 24, 32), 'LVM2 001');
  t.is(buf.readBigUInt64LE(0x48), 1048576n);
  t.is(buf.readBigUInt64LE(0x68), 4096n);
  t.is(buf.readUInt32LE(0x88), 2);
  t.true(buf.subarray(0x90).equals(Buffer.alloc(512 - 0x90)));
  t.is(encodeLabel(exampleLabel(1)).readUInt32LE(16), 0x73b75cdc);
  t.deepEqual(decodeLabel(buf, 1), exampleLabel(0));
  // Positions shift with the number of mdas (§3): 2 mdas -> extension at label+152.
  const two = encodeLabel({ ...exampleLabel(0), metadataAreas: [{ offsetBytes: 4096, sizeBytes: 1044480 }, { offsetBytes: 66060288, sizeBytes: 1048576 }] });
  t.is(two.readUInt32LE(152), 2);
  const dec = decodeLabel(two, 1);
  t.is(dec.metadataAreas.length, 2);
});

test('label scan: sectors 0-3, wrong sector_xl, bad CRC reported with device and offset, wiped type ignored', (t) => {
  const head = Buffer.alloc(2048);
  t.deepEqual(scanLabel(head), { kind: 'none' });
  const l3 = encodeLabel({ ...exampleLabel(0), sector: 3 });
  l3.copy(head, 3 * 512);
  const found = scanLabel(head, { device: 'x.img' });
  t.is(found.kind, 'label');
  // The same sector at the wrong place: sector_xl disagrees.
  const moved = Buffer.alloc(2048);
  l3.copy(moved, 512);
  const e1 = t.throws(() => scanLabel(moved, { device: 'x.img' }), { instanceOf: FormatError });
  t.regex(e1!.message, /^x\.img: label sector_xl is 3, expected 1 at offset 520$/);
  const bad = Buffer.alloc(2048);
  encodeLabel(exampleLabel(0)).copy(bad, 512);
  bad[600] ^= 0x10;
  const e2 = t.throws(() => scanLabel(bad, { device: 'y.img' }), { instanceOf: FormatError });
  t.regex(e2!.message, /y\.img: label CRC mismatch: stored 0x72fea932, computed 0x[0-9a-f]{8} at offset 528/);
  t.is(e2!.offsetBytes, 528);
  const wiped = Buffer.alloc(2048);
  encodeLabel(exampleLabel(0)).copy(wiped, 512);
  wiped.fill(0, 512 + 24, 512 + 32); // what wipefs does
  t.deepEqual(scanLabel(wiped), { kind: 'none' });
});

test('mda_header: the worked example (checksum 0xDB8ED616), slot checks, wrong magic', (t) => {
  const h = { startBytes: 4096, sizeBytes: 1044480, locns: [EMPTY_LOCN, EMPTY_LOCN] as [typeof EMPTY_LOCN, typeof EMPTY_LOCN] };
  const buf = encodeMdaHeader(h);
  t.is(buf.readUInt32LE(0), 0xdb8ed616);
  t.is(buf.toString('latin1', 4, 20), ' LVM2 x[5A%r0N*>');
  t.deepEqual(decodeMdaHeader(buf, 4096, 1044480), h);
  const committed = encodeMdaHeader({ ...h, locns: [{ offsetBytes: 2560, sizeBytes: 1013, checksum: 0x4ef9432b, flags: 0 }, EMPTY_LOCN] });
  t.is(committed.readUInt32LE(0), 0x94ccf3b8);
  t.throws(() => decodeMdaHeader(buf, 8192, 1044480, { device: 'd' }), { instanceOf: FormatError, message: /start is 4096, expected 8192 at offset 8216/ });
  t.throws(() => decodeMdaHeader(buf, 4096, 1048576, { device: 'd' }), { instanceOf: FormatError, message: /size is 1044480, pv_header says 1048576/ });
  const wrong = Buffer.from(buf);
  wrong[5] = 0x41;
  wrong.writeUInt32LE(lvmCrc(wrong, LVM_CRC_INITIAL, 4, 512), 0);
  t.throws(() => decodeMdaHeader(wrong, 4096, 1044480, { device: 'd' }), { instanceOf: FormatError, message: /^d: bad mda_header magic at offset 4100$/ });
  const outside = encodeMdaHeader({ ...h, locns: [{ offsetBytes: 2_000_000, sizeBytes: 10, checksum: 0, flags: 0 }, EMPTY_LOCN] });
  t.throws(() => decodeMdaHeader(outside, 4096, 1044480), { instanceOf: FormatError, message: /outside the text buffer/ });
});

test('circular buffer: lvm2 placement sequence, wrap, no overlap with the committed copy, size limit', (t) => {
  const area = 1044480;
  t.is(nextTextOffset(area, EMPTY_LOCN), 512);
  t.is(nextTextOffset(area, { offsetBytes: 512, sizeBytes: 699, checksum: 0, flags: 0 }), 1536);
  t.is(nextTextOffset(area, { offsetBytes: 1536, sizeBytes: 1023, checksum: 0, flags: 0 }), 2560);
  // The observed wrap (area 61440): a copy at 60928 of 19738 bytes ends at relative 19226+511.
  t.deepEqual(textPieces(61440, 60928, 19738), [{ relBytes: 60928, lengthBytes: 512 }, { relBytes: 512, lengthBytes: 19226 }]);
  t.is(nextTextOffset(61440, { offsetBytes: 60928, sizeBytes: 19738, checksum: 0, flags: 0 }), 19968);
  // A wrapped copy ending at relative byte 966 -> next at 1024 (§4.2).
  t.is(nextTextOffset(61440, { offsetBytes: 60928, sizeBytes: 512 + 455, checksum: 0, flags: 0 }), 1024);
  // Ignored slot -> restart at 512.
  t.is(nextTextOffset(area, { offsetBytes: 9000, sizeBytes: 100, checksum: 0, flags: 1 }), 512);
  t.is(maxTextBytes(area), 521472);
  const text = crypto.randomBytes(20000);
  const plan = planTextWrite(61440, { offsetBytes: 50176, sizeBytes: 512, checksum: 0, flags: 0 }, text, { startBytes: 4096 });
  t.is(plan.locn.offsetBytes, 50688);
  t.is(plan.writes.length, 2);
  t.is(plan.writes[0]!.data.length, 61440 - 50688);
  t.is(plan.writes[1]!.relBytes, 512);
  t.is(plan.writes[1]!.data.length % 512, 0);
  t.is(plan.locn.checksum, lvmCrc(text));
  t.false(copiesOverlap(61440, { offsetBytes: 50176, sizeBytes: 512, checksum: 0, flags: 0 }, plan.locn));
  t.throws(() => planTextWrite(61440, EMPTY_LOCN, Buffer.alloc(maxTextBytes(61440) + 1), { device: 'd', startBytes: 4096 }), { instanceOf: FormatError, message: /exceeds the maximum metadata size/ });
  t.true(copiesOverlap(61440, { offsetBytes: 512, sizeBytes: 4000, checksum: 0, flags: 0 }, { offsetBytes: 60000, sizeBytes: 2000, checksum: 0, flags: 0 }));
});

test('ids: 62-char generation, 6-4-4-4-4-4-6 dashes, undash validates', (t) => {
  const id = idFromRandom(crypto.randomBytes(32));
  t.regex(id, /^[0-9a-zA-Z]{32}$/);
  t.regex(dashId(EXAMPLE_ID), /^ncmZVR-5Ehu-bTzW-S8wu-eJNz-kjO8-ZsQNeG$/);
  t.is(undashId(dashId(id)), id);
  t.throws(() => undashId('short'), { instanceOf: FormatError });
});

test('config grammar: escapes, single quotes, octal, floats, comments, mixed arrays, nesting, backup-style tabs', (t) => {
  const c = parseConfig('# head\na = "x\\"y\\\\z\\n"\nb = \'no\\esc\'\nc = 010\nd = -5\ne = 1.5\nf = ["s", 1, [2]]\ng=[]\n\tsec {\n\t\tk = bare # c\n\t}\nh = ["a" "b"]\n');
  const v = (k: string) => c.entries.find((e) => e.key === k);
  t.deepEqual(v('a'), { key: 'a', value: 'x"y\\z\\n' });
  t.deepEqual(v('b'), { key: 'b', value: 'no\\esc' });
  t.deepEqual(v('c'), { key: 'c', value: 8 });
  t.deepEqual(v('d'), { key: 'd', value: -5 });
  t.deepEqual(v('e'), { key: 'e', value: { float: '1.5' } });
  t.deepEqual(v('f'), { key: 'f', value: ['s', 1, [2]] });
  t.deepEqual(v('g'), { key: 'g', value: [] });
  t.deepEqual(v('sec'), { key: 'sec', section: { entries: [{ key: 'k', value: 'bare' }] } });
  t.deepEqual(v('h'), { key: 'h', value: ['a', 'b'] });
  t.deepEqual(parseConfig(formatEntries(c.entries)), c);
  for (const bad of ['a = "open', 'a {', '}', 'a = 09', 'a b', '= 1', 'a = [1', 'a = }', 'x'.repeat(3) + ' = ' + '['.repeat(100)]) {
    t.throws(() => parseConfig(bad, { device: 'dev', offsetBytes: 4608 }), { instanceOf: FormatError, message: /^dev: metadata text does not parse: .* at offset \d+$/ }, bad);
  }
});

function sampleVg(): VgModel {
  const pv = (i: number) => ({
    key: `pv${i}`,
    id: idFromRandom(crypto.randomBytes(32)),
    device: `/tmp/img${i}`,
    status: ['ALLOCATABLE'],
    flags: [],
    tags: [],
    devSizeSectors: 131072,
    peStartSectors: 2048,
    peCount: 31,
    baStartSectors: undefined,
    baSizeSectors: undefined,
    extra: [],
  });
  return {
    name: 'vg_sample',
    id: idFromRandom(crypto.randomBytes(32)),
    seqno: 7,
    format: 'lvm2',
    status: ['RESIZEABLE', 'READ', 'WRITE'],
    flags: [],
    tags: ['t"1'],
    systemId: undefined,
    lockType: undefined,
    lockArgs: undefined,
    extentSizeSectors: 4096,
    maxLv: 0,
    maxPv: 0,
    allocationPolicy: undefined,
    metadataCopies: 0,
    pvs: [pv(0), pv(1)],
    lvs: [
      {
        name: 'lin',
        id: idFromRandom(crypto.randomBytes(32)),
        status: ['READ', 'WRITE', 'VISIBLE'],
        flags: [],
        tags: [],
        creationTime: 1795268377,
        creationHost: 'h',
        lockArgs: undefined,
        readAhead: undefined,
        segments: [
          { startExtent: 0, extentCount: 3, type: 'striped', stripeCount: 1, stripeSizeSectors: undefined, stripes: [{ pv: 'pv1', firstPe: 2 }], tags: [], extra: [] },
          { startExtent: 3, extentCount: 4, type: 'striped', stripeCount: 2, stripeSizeSectors: 128, stripes: [{ pv: 'pv0', firstPe: 0 }, { pv: 'pv1', firstPe: 5 }], tags: [], extra: [] },
        ],
        extra: [],
      },
    ],
    extra: [],
  };
}
const trailer = { description: 'Write from test "x".', creationHost: 'h', creationHostUname: 'Linux h 6 #1 x86_64', creationTimeSec: 1, ctime: 'Thu Jan  1 00:00:01 1970', generator: 'sanbox test' };

test('VG text: write -> parse gives the same model; layout as lvm2 writes it; trailer', (t) => {
  const vg = sampleVg();
  const text = writeVgText(vg, trailer);
  t.true(text.startsWith('vg_sample {\nid = "'));
  t.regex(text, /\nmetadata_copies = 0\n\nphysical_volumes {\n\npv0 {\nid = "[^"]+"\ndevice = "\/tmp\/img0"\n\nstatus = \["ALLOCATABLE"\]\n/);
  t.regex(text, /\nstripe_count = 2\nstripe_size = 128\n\nstripes = \[\n"pv0", 0,\n"pv1", 5\n\]\n/);
  t.regex(text, /\n}\n# Generated by sanbox test: Thu Jan {2}1 00:00:01 1970\n\ncontents = "Text Format Volume Group"\nversion = 1\n\ndescription = "Write from test \\"x\\"\."\n\ncreation_host = "h"\t# Linux h 6 #1 x86_64\ncreation_time = 1\t# Thu Jan {2}1 00:00:01 1970\n\n$/);
  const parsed = parseVgText(text);
  t.deepEqual(parsed.vg, vg);
  t.is(parsed.description, 'Write from test "x".');
  t.is(parsed.creationTimeSec, 1);
});

test('VG text: WRITE_LOCKED for system_id/lock_type VGs, unknown keys preserved, backup-file form accepted', (t) => {
  const vg = { ...sampleVg(), lockType: 'sanlock', lockArgs: '1.0.0:lvmlock' };
  vg.extra = [{ key: 'pr', value: ['require'] }, { key: 'historical_logical_volumes', section: { entries: [{ key: 'old', section: { entries: [{ key: 'id', value: 'x' }] } }] } }];
  vg.lvs[0]!.extra = [{ key: 'profile', value: 'p' }];
  const text = writeVgText(vg, trailer);
  t.regex(text, /status = \["RESIZEABLE", "READ"\]\nflags = \["WRITE_LOCKED"\]\n/);
  t.regex(text, /lin {\nid = "[^"]+"\nstatus = \["READ", "VISIBLE"\]\nflags = \["WRITE_LOCKED"\]\n/);
  const back = parseVgText(text).vg;
  t.deepEqual(back.status, ['RESIZEABLE', 'READ', 'WRITE']);
  t.deepEqual(back.lvs[0]!.status, ['READ', 'VISIBLE', 'WRITE']);
  t.deepEqual(back.extra, vg.extra);
  t.deepEqual(back.lvs[0]!.extra, vg.lvs[0]!.extra);
  // Backup form: header first, tab indentation, comments.
  const lines = writeVgText(sampleVg(), trailer).split('\n');
  const cut = lines.findIndex((l) => l.startsWith('# Generated'));
  const backup = ['# Generated by LVM2', ...lines.slice(cut + 1), ...lines.slice(0, cut).map((l) => `\t${l}\t# Hint only`.replace(/\t# Hint only$/, (m) => (l.includes('"') ? '' : m)))].join('\n');
  t.is(parseVgText(backup).vg.lvs.length, 1);
});

test('VG text: semantic errors are FormatErrors naming the device and offset', (t) => {
  const good = writeVgText(sampleVg(), trailer);
  const cases: [string, RegExp][] = [
    [good.replace('contents = "Text Format Volume Group"', 'contents = "x"'), /'contents' must be/],
    [good.replace('version = 1\n', 'version = 2\n'), /'version' must be 1/],
    [good.replace('segment_count = 2', 'segment_count = 3'), /segment_count is 3 but 2 segments/],
    [good.replace('"pv1", 2\n', '"pv9", 2\n'), /unknown PV 'pv9'/],
    [good.replace('start_extent = 3', 'start_extent = 4'), /do not tile/],
    [good.replace('"pv1", 2\n', '"pv1", 30\n'), /beyond pv1's 31 extents/],
    [good.replace(/seqno = 7\n/, ''), /missing 'seqno'/],
    [good.replace('extent_size = 4096', 'extent_size = "big"'), /'extent_size' must be an integer/],
  ];
  for (const [text, re] of cases) {
    const e = t.throws(() => parseVgText(text, { device: 'img', offsetBytes: 4608 }), { instanceOf: FormatError }, re.source);
    t.regex(e!.message, re);
    t.regex(e!.message, /^img: .* at offset 4608$/);
  }
});

test('fuzz: random and bit-flipped labels, mda headers and VG text raise only FormatError', (t) => {
  const rnd = fuzzRandom(t);
  const label = Buffer.alloc(2048);
  encodeLabel({ ...exampleLabel(1), metadataAreas: [{ offsetBytes: 4096, sizeBytes: 1044480 }, { offsetBytes: 66060288, sizeBytes: 1048576 }] }).copy(label, 512);
  const mda = encodeMdaHeader({ startBytes: 4096, sizeBytes: 1044480, locns: [{ offsetBytes: 512, sizeBytes: 1500, checksum: 7, flags: 0 }, EMPTY_LOCN] });
  const text = Buffer.from(writeVgText(sampleVg(), trailer), 'latin1');
  for (let i = 0; i < 3000; i++) {
    const flips = 1 + (i % 4);
    const l = Buffer.from(label);
    const m = Buffer.from(mda);
    const x = Buffer.from(text);
    for (let k = 0; k < flips; k++) {
      l[512 + rnd.int(512)] ^= 1 << rnd.int(8);
      m[rnd.int(512)] ^= 1 << rnd.int(8);
      x[rnd.int(x.length)] ^= 1 << rnd.int(8);
    }
    // Recompute CRCs on half the label/mda mutants so the field checks behind the CRC run too.
    if (i % 2) {
      l.writeUInt32LE(lvmCrc(l, LVM_CRC_INITIAL, 512 + 20, 1024), 512 + 16);
      m.writeUInt32LE(lvmCrc(m, LVM_CRC_INITIAL, 4, 512), 0);
    }
    onlyFormatError(t, 'label', () => scanLabel(l, { device: 'f' }));
    onlyFormatError(t, 'mda', () => decodeMdaHeader(m, 4096, 1044480, { device: 'f' }));
    onlyFormatError(t, 'text', () => parseVgText(x.toString('latin1'), { device: 'f' }));
  }
  for (let i = 0; i < 500; i++) {
    const r = rnd.bytes(rnd.int(1, 2048));
    onlyFormatError(t, 'random label', () => scanLabel(Buffer.concat([r, Buffer.alloc(2048)]).subarray(0, 2048)));
    onlyFormatError(t, 'random mda', () => decodeMdaHeader(Buffer.concat([r, Buffer.alloc(512)]), 4096, 1044480));
    const ascii = Buffer.from(r.map((b) => ' {}[]="#\n\\a0-.,'.charCodeAt(b % 17))).toString('latin1');
    onlyFormatError(t, 'random text', () => parseVgText(ascii));
    onlyFormatError(t, 'random bytes', () => parseVgText(r.toString('latin1')));
  }
  t.pass();
});
