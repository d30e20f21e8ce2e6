// ocfs2 codecs and the volume reader on bad input: round trips, typed errors naming the offset
// (truncated image, wrong signature, extent past the device, directory and extent-tree loops, bad
// fs generation), nothing written by a reader, and seeded fuzzing of the superblock, dinode,
// extent-list and directory-entry decoders (only FormatError may come out).

import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createImage, FileDisk } from '../src/disk/file-disk.js';
import { FormatError } from '../src/errors.js';
import { DirFileType, OCFS2_SUPER_BLOCK_BLKNO } from '../src/format/ocfs2/constants.js';
import { decodeDinodeHeader, parseDinode } from '../src/format/ocfs2/dinode.js';
import { dirRecLen, encodeDirEntries, parseDirEntries } from '../src/format/ocfs2/dir-entry.js';
import { encodeExtentList, parseExtentBlock, parseExtentList } from '../src/format/ocfs2/extent-list.js';
import { encodeSlotMap, parseSlotMap } from '../src/format/ocfs2/slot-map.js';
import { encodeSuperblock, parseSuperblock, uuidDashed, uuidHex } from '../src/format/ocfs2/superblock.js';
import { parseChainList, parseGroupDesc } from '../src/format/ocfs2/chain-list.js';
import { planMkfs, superblockBlock, uuidHash } from '../src/fs/mkfs-layout.js';
import { heartbeatRegion, mkfs, Ocfs2Volume, readJournal, readSlotMap } from '../src/fs/index.js';
import { tempDir } from './helpers/tmp.js';
import { onlyFormatError, prng, fuzzSeed } from './helpers/fuzz.js';
import { copyImage } from './helpers/image-copy.js';

const UUID = Buffer.from('bad38d72463c4a92a9410a689f58e4d3', 'hex');

function plan(bs = 4096, slots = 4) {
  return planMkfs({
    sizeBytes: 256 * 2 ** 20, slots, blockSizeBytes: bs, clusterSizeBytes: 4096, journalSizeBytes: 4 << 20, label: 'codec', clusterStack: 'o2cb', clusterName: 'c',
    uuid: UUID, fsGeneration: 0x8bfcc2c7, dxSeed: [1, 2, 3], nowSec: 1763890000n,
  });
}


async function ourImage(t: Parameters<typeof tempDir>[0], bs = 4096): Promise<string> {
  const img = path.join(tempDir(t), 'vol.img');
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 256 * 2 ** 20);
  const dev = FileDisk.open(img, { guard: 'exclusive' });
  await mkfs(dev, { slots: 4, blockSizeBytes: bs, journalSizeBytes: 4 << 20, label: 'bad', clusterStack: 'o2cb', clusterName: 'c' });
  await dev.close();
  return img;
}

function patch(img: string, offsetBytes: number, bytes: Buffer): void {
  const fd = fs.openSync(img, 'r+');
  fs.writeSync(fd, bytes, 0, bytes.length, offsetBytes);
  fs.closeSync(fd);
}

async function withVol<T>(img: string, fn: (vol: Ocfs2Volume) => Promise<T>): Promise<T> {
  const dev = FileDisk.open(img, { readOnly: true, guard: 'none' });
  try {
    return await fn(await Ocfs2Volume.open(dev));
  } finally {
    dev.closeSync();
  }
}

test('uuid hash and UUID spellings match the tools (hash 0x5132ced6 seen in a real mkfs.ocfs2 image)', (t) => {
  t.is(uuidHash(UUID), 0x5132ced6);
  t.is(uuidHex(UUID), 'BAD38D72463C4A92A9410A689F58E4D3');
  t.is(uuidDashed(UUID), 'bad38d72-463c-4a92-a941-0a689f58e4d3');
});

test('superblock round trip at every block size; backups carry their own blkno', (t) => {
  for (const bs of [512, 1024, 2048, 4096]) {
    const p = plan(bs);
    const block = superblockBlock(p, OCFS2_SUPER_BLOCK_BLKNO);
    const sb = parseSuperblock(block, { device: 'x', offsetBytes: 2 * bs }, bs);
    t.is(sb.label, 'codec');
    t.deepEqual(sb.uuid, UUID);
    t.is(sb.blockSizeBits, Math.log2(bs));
    t.is(sb.maxSlots, 4);
    t.is(sb.clusterStack, 'o2cb');
    t.is(sb.clusterName, 'c');
    t.is(sb.inode.fsGeneration, 0x8bfcc2c7);
    t.deepEqual(encodeSuperblock(sb, bs), block);
    const backup = superblockBlock(p, 262144);
    t.is(parseSuperblock(backup, {}, bs, 262144).inode.blkno, 262144);
    t.throws(() => parseSuperblock(backup, { device: 'x', offsetBytes: 0 }, bs), { instanceOf: FormatError, message: /says it is block 262144/ });
  }
});

test('superblock field checks name the byte offset', (t) => {
  const bs = 4096;
  const block = superblockBlock(plan(bs), 2);
  const cases: [number, Buffer, RegExp][] = [
    [0, Buffer.from('OCFSV3'), /signature/],
    [0xc2, Buffer.from([91, 0]), /revision 0.91/],
    [0xf8, Buffer.from([11, 0, 0, 0]), /does not match the 4096-byte block/],
    [0xfc, Buffer.from([21, 0, 0, 0]), /s_clustersize_bits 21/],
    [0x100, Buffer.from([0, 1]), /s_max_slots 256/],
    [0xe8, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]), /s_root_blkno is 0/],
    [0xf0, Buffer.from([0, 0, 0, 0x7f, 0, 0, 0, 0]), /past the end of the volume/],
    [0x2c, Buffer.from([0, 0, 0, 0]), /not marked valid/],
  ];
  for (const [off, bytes, re] of cases) {
    const bad = Buffer.from(block);
    bytes.copy(bad, off);
    const err = t.throws(() => parseSuperblock(bad, { device: 'img', offsetBytes: 8192 }, bs), { instanceOf: FormatError, message: re });
    t.is(err?.offsetBytes, 8192 + off, re.source);
  }
});

test('dinode, extent list, chain list, group descriptor and dirent checks', (t) => {
  const p = plan(4096);
  const hbBlkno = p.systemInodes.get('heartbeat')!;
  const hb = p.blocks.get(hbBlkno)!;
  t.notThrows(() => parseDinode(hb, {}, { blkno: hbBlkno, fsGeneration: 0x8bfcc2c7 }));
  t.throws(() => parseDinode(hb, { offsetBytes: 0 }, { blkno: hbBlkno + 1 }), { instanceOf: FormatError, message: /says it is block/ });
  t.throws(() => parseDinode(hb, {}, { fsGeneration: 1 }), { instanceOf: FormatError, message: /fs generation/ });
  const list = parseExtentList(hb, 0xc0, {});
  t.is(list.recs.length, 1);
  t.is(list.count, 243);
  const bad = Buffer.from(hb);
  bad.writeUInt16LE(300, 0xc2);
  t.throws(() => parseExtentList(bad, 0xc0, { offsetBytes: 1000 }), { instanceOf: FormatError, message: /l_count 300/ });
  bad.writeUInt16LE(2, 0xc2);
  bad.writeUInt16LE(3, 0xc4);
  t.throws(() => parseExtentList(bad, 0xc0, {}), { instanceOf: FormatError, message: /uses 3 records/ });
  const gbBlkno = p.systemInodes.get('global_bitmap')!;
  const chains = parseChainList(p.blocks.get(gbBlkno)!, {});
  t.is(chains.bitsPerCluster, 1);
  t.true(chains.recs.length >= 1);
  const gia = parseChainList(p.blocks.get(p.systemInodes.get('global_inode_alloc')!)!, {});
  const gd = parseGroupDesc(p.blocks.get(gia.recs[0]!.blkno)!, {}, { blkno: gia.recs[0]!.blkno, fsGeneration: 0x8bfcc2c7 });
  t.is(gd.bits - gd.freeBits, decodeDinodeHeader(p.blocks.get(p.systemInodes.get('global_inode_alloc')!)!).id1a);
  // Directory entries.
  const area = encodeDirEntries([{ inode: 5, name: '.', fileType: DirFileType.DIR }, { inode: 6, name: 'lost+found', fileType: DirFileType.DIR }], 512);
  const ents = parseDirEntries(area, 0, 512, {});
  t.deepEqual(ents.map((e) => [e.inode, e.name, e.recLen]), [[5, '.', 16], [6, 'lost+found', 496]]);
  t.is(dirRecLen(10), 24);
  const cross = Buffer.from(area);
  cross.writeUInt16LE(600, 16 + 8);
  t.throws(() => parseDirEntries(cross, 0, 512, { device: 'd', offsetBytes: 4096 }), { instanceOf: FormatError, message: /crosses the end/ });
  const short = Buffer.from(area);
  short.writeUInt16LE(6, 8);
  const err = t.throws(() => parseDirEntries(short, 0, 512, { device: 'd', offsetBytes: 4096 }), { instanceOf: FormatError });
  t.is(err?.offsetBytes, 4096 + 8);
  const longName = Buffer.from(area);
  longName.writeUInt8(200, 10);
  t.throws(() => parseDirEntries(longName, 0, 16, {}), { instanceOf: FormatError, message: /name_len 200/ });
  // Extent blocks.
  const eb = Buffer.alloc(4096);
  eb.write('EXBLK01', 0, 'latin1');
  eb.writeUInt32LE(0x8bfcc2c7, 0x14);
  eb.writeBigUInt64LE(77n, 0x18);
  encodeExtentList(eb, 0x30, { treeDepth: 0, count: 252, nextFreeRec: 1, recs: [{ cpos: 0, clusters: 3, flags: 0, blkno: 900 }] });
  t.is(parseExtentBlock(eb, {}, { blkno: 77, fsGeneration: 0x8bfcc2c7 }).list.recs[0]!.blkno, 900);
  t.throws(() => parseExtentBlock(eb, {}, { blkno: 78, fsGeneration: 0x8bfcc2c7 }), { instanceOf: FormatError });
});

test('slot map: old and extended formats round trip; stale node numbers of free extended slots are ignored', (t) => {
  for (const extended of [false, true]) {
    const entries = [{ slot: 0, nodeNum: 3 }, { slot: 1, nodeNum: undefined }, { slot: 2, nodeNum: 254 }];
    const buf = encodeSlotMap(entries, extended, 4096);
    t.deepEqual(parseSlotMap(buf, 3, extended, {}), entries);
  }
  const ext = encodeSlotMap([{ slot: 0, nodeNum: undefined }], true, 4096);
  ext.writeUInt32LE(9, 4); // stale es_node_num
  t.deepEqual(parseSlotMap(ext, 1, true, {}), [{ slot: 0, nodeNum: undefined }]);
  ext.writeUInt8(2, 0);
  t.throws(() => parseSlotMap(ext, 1, true, { device: 's', offsetBytes: 100 }), { instanceOf: FormatError, message: /es_valid 2/ });
  t.throws(() => parseSlotMap(Buffer.alloc(4), 3, true, {}), { instanceOf: FormatError });
});

test('reader: truncated image, wrong signature, extent past the device — typed errors with offsets, nothing written', async (t) => {
  const img = await ourImage(t);
  const hash = (): string => crypto.createHash('sha256').update(fs.readFileSync(img)).digest('hex');
  const before = hash();
  // Extent past the device: point the heartbeat extent beyond the end.
  const hbBlkno = await withVol(img, async (vol) => (await vol.systemDir()).get('heartbeat')!);
  t.is(await withVol(img, async (vol) => (await heartbeatRegion(vol.dev)).blockCount), 255);
  t.is(hash(), before, 'readers wrote nothing');
  const recOff = hbBlkno * 4096 + 0xd0 + 8;
  const saved = fs.readFileSync(img).subarray(recOff, recOff + 8);
  patch(img, recOff, Buffer.from([0, 0, 0, 0, 1, 0, 0, 0]));
  const err = await t.throwsAsync(withVol(img, async (vol) => heartbeatRegion(vol.dev)), { instanceOf: FormatError, message: /past the end of the volume/ });
  t.is(err?.offsetBytes, hbBlkno * 4096);
  patch(img, recOff, Buffer.from(saved));

  // Truncated: the superblock is there but the device is shorter than it says (fsck.ocfs2 exits 8).
  const cut = path.join(path.dirname(img), 'cut.img');
  copyImage(img, cut);
  fs.truncateSync(cut, 12 * 1024);
  const e2 = await t.throwsAsync(withVol(cut, async (vol) => readJournal(vol, 0)), { instanceOf: FormatError });
  t.regex(e2?.message ?? '', /device is 12288 bytes, shorter than the \d+ bytes its ocfs2 superblock says \(superblock at offset 8192\)/);
  t.is(e2?.offsetBytes, 8192);
  fs.truncateSync(cut, 1000);
  await t.throwsAsync(withVol(cut, async () => undefined), { instanceOf: FormatError, message: /too small/ });

  // Wrong signature.
  patch(img, 2 * 4096, Buffer.from('XXXXXX'));
  const e3 = await t.throwsAsync(withVol(img, async () => undefined), { instanceOf: FormatError, message: /no ocfs2 superblock/ });
  t.is(e3?.device, img);
});

test('reader: directory loops and extent-tree loops are typed errors', async (t) => {
  const img = await ourImage(t);
  const { rootBlkno, sysBlkno, journalBlkno } = await withVol(img, async (vol) => ({
    rootBlkno: vol.sb.rootBlkno, sysBlkno: vol.sb.systemDirBlkno, journalBlkno: (await vol.systemDir()).get('journal:0001')!,
  }));
  t.deepEqual(await withVol(img, async (vol) => vol.walkDirs(rootBlkno)), { dirs: 2, entries: 1 });
  // Root (inline) gains a subdirectory entry pointing back at root.
  const entries = [
    { inode: rootBlkno, name: '.', fileType: DirFileType.DIR }, { inode: rootBlkno, name: '..', fileType: DirFileType.DIR },
    { inode: rootBlkno, name: 'again', fileType: DirFileType.DIR },
  ];
  patch(img, rootBlkno * 4096 + 0xc8, encodeDirEntries(entries, 4096 - 0xc8));
  await t.throwsAsync(withVol(img, async (vol) => vol.walkDirs(rootBlkno)), { instanceOf: FormatError, message: /directory loop/ });
  // The system directory naming itself as a system file.
  const sysEntries = encodeDirEntries([
    { inode: sysBlkno, name: '.', fileType: DirFileType.DIR }, { inode: sysBlkno, name: '..', fileType: DirFileType.DIR },
    { inode: sysBlkno, name: 'heartbeat', fileType: DirFileType.REG },
  ], 4096 - 0xc8);
  const sysImg = path.join(path.dirname(img), 'sys.img');
  copyImage(img, sysImg);
  patch(sysImg, sysBlkno * 4096 + 0xc8, sysEntries);
  await t.throwsAsync(withVol(sysImg, async (vol) => vol.systemDir()), { instanceOf: FormatError, message: /directory loop/ });
  // A depth-2 extent tree whose two interior records reach the same extent block.
  const ebBlkno = 60000;
  const eb = Buffer.alloc(4096);
  eb.write('EXBLK01', 0, 'latin1');
  eb.writeUInt32LE(await withVol(img, async (vol) => vol.sb.inode.fsGeneration), 0x14);
  eb.writeBigUInt64LE(BigInt(ebBlkno), 0x18);
  encodeExtentList(eb, 0x30, { treeDepth: 1, count: 252, nextFreeRec: 0, recs: [] });
  patch(img, ebBlkno * 4096, eb);
  const jb = Buffer.alloc(4096);
  const fd = fs.openSync(img, 'r');
  fs.readSync(fd, jb, 0, 4096, journalBlkno * 4096);
  fs.closeSync(fd);
  encodeExtentList(jb, 0xc0, { treeDepth: 2, count: 243, nextFreeRec: 2, recs: [{ cpos: 0, clusters: 1, flags: 0, blkno: ebBlkno }, { cpos: 1, clusters: 1, flags: 0, blkno: ebBlkno }] });
  patch(img, journalBlkno * 4096, jb);
  const err = await t.throwsAsync(withVol(img, async (vol) => readJournal(vol, 1)), { instanceOf: FormatError, message: /loops back to block 60000/ });
  t.is(err?.offsetBytes, journalBlkno * 4096);
  t.deepEqual((await withVol(img, async (vol) => readSlotMap(vol))).slots.length, 4);
});

test('fuzz: random and bit-flipped superblock, dinode, extent-list and dirent blocks only raise FormatError', (t) => {
  const rand = prng(fuzzSeed(t));
  const p = plan(1024, 3);
  const seeds: Buffer[] = [superblockBlock(p, 2), ...[...p.blocks.values()].slice(0, 40)];
  let errors = 0;
  let ok = 0;
  for (let i = 0; i < 6000; i++) {
    let buf: Buffer;
    if (i % 6 === 0) buf = Buffer.from(Array.from({ length: 1024 }, () => Math.floor(rand() * 256)));
    else {
      buf = Buffer.from(seeds[i % seeds.length]!);
      const flips = 1 + Math.floor(rand() * 6);
      // Flip mostly in the headers, where the structure is.
      for (let k = 0; k < flips; k++) buf[Math.floor(rand() * (rand() < 0.8 ? 0x200 : buf.length))] ^= 1 << Math.floor(rand() * 8);
    }
    if (i % 9 === 0) buf = buf.subarray(0, Math.floor(rand() * buf.length));
    for (const parse of [
      () => parseSuperblock(buf, { device: 'fuzz', offsetBytes: 2048 }, 1024),
      () => parseDinode(buf, { device: 'fuzz' }, { fsGeneration: 0x8bfcc2c7 }),
      () => parseExtentList(buf, 0xc0, {}),
      () => parseExtentBlock(buf, {}, { blkno: 1, fsGeneration: 0x8bfcc2c7 }),
      () => parseDirEntries(buf, 0, buf.length, {}),
      () => parseDirEntries(buf, 0xc8, buf.length, {}),
      () => parseChainList(buf, {}),
      () => parseSlotMap(buf, 16, i % 2 === 0, {}),
    ]) {
      const r = onlyFormatError(t, `case ${i}`, parse);
      if (r === 'other') return;
      if (r === 'parsed') ok++;
      else errors++;
    }
  }
  t.true(errors > 5000);
  t.true(ok > 1000);
});

test('fuzz: corrupting metadata blocks of a volume makes every reader fail only with FormatError', async (t) => {
  const img = await ourImage(t, 1024);
  const bs = 1024;
  const targets = await withVol(img, async (vol) => {
    const sys = await vol.systemDir();
    const blknos = [2, vol.sb.systemDirBlkno, vol.sb.rootBlkno, ...['slot_map', 'heartbeat', 'journal:0000', 'global_bitmap'].map((n) => sys.get(n)!)];
    const j = await vol.systemInode('journal:0000');
    blknos.push((await vol.extents(j))[0]!.blkno);
    const sm = await vol.systemInode('slot_map');
    blknos.push((await vol.extents(sm))[0]!.blkno);
    return blknos;
  });
  const rand = prng(fuzzSeed(t));
  const fd = fs.openSync(img, 'r+');
  t.teardown(() => fs.closeSync(fd));
  let failures = 0;
  for (let i = 0; i < 150; i++) {
    const blkno = targets[i % targets.length]!;
    const original = Buffer.alloc(bs);
    fs.readSync(fd, original, 0, bs, blkno * bs);
    const mutated = Buffer.from(original);
    if (i % 10 === 0) for (let k = 0; k < 0x200; k++) mutated[k] = Math.floor(rand() * 256);
    else for (let k = 0; k < 1 + Math.floor(rand() * 4); k++) mutated[Math.floor(rand() * 0x200)] ^= 1 << Math.floor(rand() * 8);
    fs.writeSync(fd, mutated, 0, bs, blkno * bs);
    try {
      await withVol(img, async (vol) => {
        await vol.systemDir();
        await readSlotMap(vol);
        await heartbeatRegion(vol.dev);
        await readJournal(vol, 0);
        await vol.walkDirs(vol.sb.rootBlkno, 100);
      });
    } catch (err) {
      if (!(err instanceof FormatError)) {
        t.fail(`iteration ${i}, block ${blkno}: ${(err as Error).constructor.name}: ${(err as Error).message}`);
        return;
      }
      failures++;
    } finally {
      fs.writeSync(fd, original, 0, bs, blkno * bs);
    }
  }
  t.true(failures > 20, `${failures} corruptions were detected`);
});

test('4Kn device: mkfs refuses blocks smaller than the sector; the heartbeat region uses 4096-byte slots', async (t) => {
  const img = path.join(tempDir(t), 'k.img');
  createImage(img, { sizeBytes: 512 * 2 ** 20, sectorSizeBytes: 4096 });
  const dev = FileDisk.open(img, { guard: 'exclusive' });
  t.teardown(() => dev.closeSync());
  t.is(dev.sectorSizeBytes, 4096);
  await t.throwsAsync(mkfs(dev, { slots: 2, blockSizeBytes: 512 }), { message: /smaller than the device's 4096-byte sectors/ });
  await mkfs(dev, { slots: 2, blockSizeBytes: 4096, journalSizeBytes: 4 << 20 });
  const region = await heartbeatRegion(dev);
  t.is(region.blockSizeBytes, 4096);
  t.is(region.blockCount, 255);
  t.is(region.offsetBytes % 4096, 0);
});
