// sanbox mkfs judged by the real tools: fsck.ocfs2 -fn passes, debugfs.ocfs2 -R stats shows our
// label/UUID/slots/block and cluster size, blkid -p reports TYPE="ocfs2" with our LABEL and UUID;
// and the refusals: in use, too small, existing filesystem or PV label without --force.

import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { FileDisk } from '../src/disk/file-disk.js';
import { SanboxError } from '../src/errors.js';
import { mkfs } from '../src/fs/mkfs.js';
import { uuidDashed } from '../src/format/ocfs2/superblock.js';
import { debugfs, firstCopy, fsckOk, hasTool, parseBlkid, parseLogdump, parseStats, realMkfs, runTool } from './helpers/ocfs2-oracle.js';
import { runSanbox, tempDir } from './helpers/tmp.js';

const TOOLS = ['fsck.ocfs2', 'debugfs.ocfs2', 'blkid'];

interface Case {
  blockSize: number;
  clusterSize: number;
  slots: number;
  stack: boolean;
  sizeBytes: number;
}

// A representative matrix: every block size, cluster sizes from 4K to 1M, 2 to 16 slots, with and
// without the o2cb cluster stack (extended vs old slot map), one with a backup superblock.
const MATRIX: Case[] = [
  { blockSize: 512, clusterSize: 4096, slots: 2, stack: true, sizeBytes: 1536 * 2 ** 20 },
  { blockSize: 1024, clusterSize: 32 * 1024, slots: 4, stack: false, sizeBytes: 300 * 2 ** 20 },
  { blockSize: 2048, clusterSize: 128 * 1024, slots: 8, stack: true, sizeBytes: 600 * 2 ** 20 },
  { blockSize: 4096, clusterSize: 1024 * 1024, slots: 16, stack: true, sizeBytes: 1200 * 2 ** 20 },
  { blockSize: 4096, clusterSize: 4096, slots: 16, stack: false, sizeBytes: 256 * 2 ** 20 },
];

function sparse(file: string, sizeBytes: number): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, sizeBytes);
}

for (const c of MATRIX) {
  const name = `bs ${c.blockSize} cs ${c.clusterSize / 1024}K ${c.slots} slots ${c.stack ? 'o2cb' : 'classic'}`;
  test(`mkfs ${name}: fsck.ocfs2, debugfs.ocfs2 and blkid accept it`, async (t) => {
    for (const tool of TOOLS) if (!hasTool(tool)) t.fail(`${tool} is not installed: this interop test cannot run`);
    const dir = tempDir(t);
    const img = path.join(dir, 'vol.img');
    sparse(img, c.sizeBytes);
    const label = `sbx-${c.blockSize}-${c.slots}`;
    const args = ['mkfs', img, '--slots', String(c.slots), '--block-size', String(c.blockSize), '--cluster-size', String(c.clusterSize), '--journal-size', '4M', '--label', label, '--json'];
    if (c.stack) args.push('--cluster-stack', 'o2cb', '--cluster-name', 'sbxclus');
    const r = await runSanbox(t, args, { timeoutMs: 60_000 });
    if (r.code !== 0) {
      t.fail(`sanbox mkfs exited ${r.code}: ${r.stderr}`);
      return;
    }
    const res = JSON.parse(r.stdout) as { uuid: string; backupSuperblocks: number[] };

    const fsck = await fsckOk(img);
    t.true(fsck.ok, `fsck.ocfs2 -fn did not pass:\n${fsck.out}`);

    const stats = parseStats(await debugfs(img, 'stats'));
    t.is(stats.get('Label'), label);
    t.is(stats.get('UUID'), res.uuid);
    t.is(stats.get('Max Node Slots'), String(c.slots));
    t.is(stats.get('Block Size Bits'), String(Math.log2(c.blockSize)));
    t.is(stats.get('Cluster Size Bits'), String(Math.log2(c.clusterSize)));
    if (c.stack) {
      t.is(stats.get('Cluster stack'), 'o2cb');
      t.is(stats.get('Cluster name'), 'sbxclus');
      t.regex(stats.get('Feature Incompat') ?? '', /extended-slotmap/);
    }

    // mounted.ocfs2 -d: Device Stack Cluster F UUID Label.
    const mounted = firstCopy((await runTool('mounted.ocfs2', ['-d', img], { timeoutMs: 20_000 })).stdout).split('\n').find((l) => l.startsWith(img)) ?? '';
    t.regex(mounted, new RegExp(`\\s${res.uuid}\\s+${label}\\s*$`));
    if (c.stack) t.regex(mounted, /\so2cb\s+sbxclus\s/);

    const blk = parseBlkid((await runTool('blkid', ['-p', img], { timeoutMs: 10_000 })).stdout);
    t.is(blk.get('TYPE'), 'ocfs2');
    t.is(blk.get('LABEL'), label);
    t.is(blk.get('UUID'), uuidDashed(Buffer.from(res.uuid, 'hex')));
    t.is(blk.get('BLOCK_SIZE'), String(c.blockSize));

    // Our fresh journal as debugfs walks it: superblock (v2, s_first 1 or 2, s_start = s_sequence = 1,
    // our UUID), then data-looking blocks to the end; sanbox logdump must say the same.
    const theirs = parseLogdump(await debugfs(img, 'logdump 0'));
    t.is(theirs.sb.get('Journal UUID'), res.uuid);
    t.is(theirs.sb.get('First Block'), c.blockSize === 512 ? '2' : '1');
    t.is(theirs.sb.get('Total Blocks'), String((4 * 2 ** 20) / c.blockSize));
    t.is(theirs.sb.get('Start Log Blknum'), '1');
    const ld = await runSanbox(t, ['logdump', img, '0', '--json']);
    t.is(ld.code, 0, ld.stderr);
    const ours = (JSON.parse(ld.stdout) as { blocks: { block: number; lastBlock?: number; type: string }[] }).blocks;
    t.deepEqual(ours.map((b) => [b.block, b.lastBlock ?? b.block, b.type]), theirs.blocks.map((b) => [b.block, b.lastBlock, b.kind]));

    // Backup superblocks: debugfs reads them with -s N (1-based backup index).
    for (let i = 0; i < res.backupSuperblocks.length; i++) {
      const backup = parseStats(firstCopy((await runTool('debugfs.ocfs2', ['-s', String(i + 1), '-R', 'stats', img], { timeoutMs: 30_000 })).stdout));
      t.is(backup.get('UUID'), res.uuid, `backup superblock ${i + 1}`);
    }
  });
}

test('mkfs refuses an image that already holds ocfs2, an ext4 signature or a PV label, unless --force; nothing is written', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'vol.img');
  sparse(img, 256 * 2 ** 20);
  // 4K blocks: the superblock at byte 8192 (the default at 256 MiB would be mkfs.ocfs2's 1K).
  t.is((await runSanbox(t, ['mkfs', img, '--slots', '2', '--block-size', '4K', '--label', 'first'])).code, 0);
  const before = fs.readFileSync(img).subarray(0, 1 << 20);
  const again = await runSanbox(t, ['mkfs', img, '--slots', '2', '--label', 'second']);
  t.is(again.code, 1);
  t.regex(again.stderr, /already holds an ocfs2 volume \(ocfs2 signature at byte 8192\).*--force/);
  t.true(fs.readFileSync(img).subarray(0, 1 << 20).equals(before), 'a refused mkfs wrote nothing');

  for (const [what, offset, bytes] of [['LVM2_member', 512, Buffer.from('LABELONE')], ['LVM2_member', 1536, Buffer.from('LABELONE')], ['ext4', 0x438, Buffer.from([0x53, 0xef])]] as const) {
    const other = path.join(dir, `${what}-${offset}.img`);
    sparse(other, 256 * 2 ** 20);
    const fd = fs.openSync(other, 'r+');
    fs.writeSync(fd, bytes, 0, bytes.length, offset);
    fs.closeSync(fd);
    const dev = FileDisk.open(other, { guard: 'exclusive' });
    const err = await t.throwsAsync(mkfs(dev, { slots: 2 }), { instanceOf: SanboxError });
    t.is(err?.code, 'EEXIST');
    t.is(err?.offsetBytes, offset);
    t.regex(err?.message ?? '', new RegExp(`${what} signature at byte ${offset}`));
    t.is(fs.statSync(other).blocks, 8, 'only the planted signature is allocated');
    await mkfs(dev, { slots: 2, force: true, journalSizeBytes: 4 << 20 });
    await dev.close();
    t.true((await fsckOk(other)).ok, `forced mkfs over ${what}`);
  }
  const forced = await runSanbox(t, ['mkfs', img, '--slots', '3', '--label', 'second', '--force', '--json']);
  t.is(forced.code, 0, forced.stderr);
  t.is(parseStats(await debugfs(img, 'stats')).get('Label'), 'second');
});

test('mkfs refuses a device that is too small for the slots and journals, before writing', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'small.img');
  sparse(img, 64 * 2 ** 20);
  const r = await runSanbox(t, ['mkfs', img, '--slots', '16', '--journal-size', '8M']);
  t.is(r.code, 1);
  t.regex(r.stderr, /too small for 16 slots/);
  t.is(fs.statSync(img).blocks, 0, 'nothing was allocated in the image');
  const tiny = path.join(dir, 'tiny.img');
  sparse(tiny, 1 << 20);
  const dev = FileDisk.open(tiny, { guard: 'exclusive' });
  t.teardown(() => dev.closeSync());
  await t.throwsAsync(mkfs(dev, { slots: 1 }), { instanceOf: SanboxError, message: /too small/ });
  t.is(fs.statSync(tiny).blocks, 0);
});

test('mkfs refuses an image another process has open (EBUSY) and writes nothing', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'busy.img');
  sparse(img, 256 * 2 ** 20);
  const holder = FileDisk.open(img, { guard: 'shared' });
  t.teardown(() => holder.closeSync());
  const r = await runSanbox(t, ['mkfs', img, '--slots', '2']);
  t.is(r.code, 1);
  t.regex(r.stderr, /busy/i);
  t.is(fs.statSync(img).blocks, 0);
});

test('mkfs usage errors exit 2; progress lines go to stderr when it is not a terminal', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'u.img');
  sparse(img, 256 * 2 ** 20);
  for (const bad of [['--slots', '0'], ['--slots', '2', '--cluster-size', '2K']]) {
    const r = await runSanbox(t, ['mkfs', img, ...bad]);
    t.is(r.code, 2, `${bad.join(' ')}: ${r.stderr}`);
  }
  const ok = await runSanbox(t, ['mkfs', img, '--slots', '2', '--label', crypto.randomBytes(4).toString('hex')]);
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stderr, /mkfs: 100% done/);
  t.regex(ok.stdout, /Formatted .* as ocfs2: 2 slots/);
});

test('system files match the real mkfs.ocfs2 of the same geometry: type, flags, mode, links, dynamic features, sizes', async (t) => {
  const dir = tempDir(t);
  const ours = path.join(dir, 'ours.img');
  const real = path.join(dir, 'real.img');
  sparse(ours, 256 * 2 ** 20);
  const r = await runSanbox(t, ['mkfs', ours, '--slots', '2', '--block-size', '4K', '--journal-size', '8M', '--label', 'v', '--cluster-stack', 'o2cb', '--cluster-name', 'demo']);
  t.is(r.code, 0, r.stderr);
  await realMkfs(real, 256 * 2 ** 20, ['-b', '4096', '-C', '4096', '-N', '2', '-J', 'size=8M', '-L', 'v', '--cluster-stack=o2cb', '--cluster-name=demo']);
  const facts = async (img: string, file: string): Promise<Record<string, string>> => {
    const out = await debugfs(img, `stat ${file}`);
    const get = (re: RegExp): string => re.exec(out)?.[1]?.trim() ?? '?';
    return {
      inode: get(/Inode: (\d+)/), mode: get(/Mode: (\d+)/), type: get(/Type: (\w+)/), flags: get(/Flags: ([^\n]*)/), dyn: get(/Dynamic Features: ([^\n]*)/),
      links: get(/Links: (\d+)/), size: get(/Size: (\d+)\s*\n/), clusters: get(/Clusters: (\d+)/), journalFlags: get(/Journal Flags: ([^\n]*)/),
      local: get(/Local Bitmap Offset: ([^\n]*)/), trunc: get(/Total Records: ([^\n]*)/),
    };
  };
  // Files whose every listed fact must be identical.
  for (const file of ['/', '//', '//bad_blocks', '//slot_map', '//heartbeat', '//global_bitmap', '//orphan_dir:0001', '//journal:0001', '//local_alloc:0000', '//truncate_log:0001']) {
    t.deepEqual(await facts(ours, file), await facts(real, file), file);
  }
  // Allocators differ only in how much they hold: our system inodes and lost+found all live in
  // global_inode_alloc's one group; like mkfs.ocfs2 we give slot 0's inode allocator one group
  // (without lost+found in it) and leave the other per-slot allocators empty for the kernel to grow.
  for (const file of ['//global_inode_alloc', '//extent_alloc:0000', '//inode_alloc:0001']) {
    const [a, b] = [await facts(ours, file), await facts(real, file)];
    t.deepEqual({ ...a, size: '', clusters: '' }, { ...b, size: '', clusters: '' }, file);
  }
});
