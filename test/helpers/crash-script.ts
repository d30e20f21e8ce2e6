// The crash tests' scripted workload (docs/journal.md "Crash tests"): a list of file operations
// (mkdir, put inline, put clusters, replace, rm), run on a volume through the same library calls
// a node's mount and `ctl fs` make (src/node/mount.ts, src/node/fs-commands.ts: own slot
// recovered, slot taken, DIRTY set; FileOps; DIRTY cleared and slot freed at umount), and a model
// of the tree each prefix of it leaves, to compare a recovered volume with.

import { createHash } from 'node:crypto';
import type { BlockDevice } from '../../src/disk/device.js';
import { FileOps, type ClusterLocker } from '../../src/fs/file-ops.js';
import { openJournal, writeJournalInode } from '../../src/fs/journal-reader.js';
import { writeSlotEntry } from '../../src/fs/mount-rules.js';
import { Ocfs2Volume } from '../../src/fs/ocfs2-volume.js';
import { recoverSlot } from '../../src/fs/recover.js';
import { readSlotMap } from '../../src/fs/slot-map-reader.js';
import { InodeFlag, S_IFDIR } from '../../src/format/ocfs2/constants.js';
import { DINODE_ID2_OFFSET } from '../../src/format/ocfs2/dinode.js';
import { allocatorGroups } from '../../src/fs/cluster-alloc.js';

export type ScriptOp =
  | { kind: 'mkdir'; path: string }
  | { kind: 'put'; path: string; sizeBytes: number; seed: number }
  | { kind: 'rm'; path: string };

/** A file's content: `sizeBytes` bytes that differ per seed (so a replace is visible). */
export function contentOf(op: { sizeBytes: number; seed: number }): Buffer {
  const b = Buffer.alloc(op.sizeBytes);
  let x = (op.seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < b.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A tree: path → 'dir' or the sha256 of the file's bytes. */
export type Tree = Map<string, string>;
export const DIR = 'dir';

/** The tree after `op` (the model; the volume must agree). */
export function applyOp(tree: Tree, op: ScriptOp): Tree {
  const next = new Map(tree);
  if (op.kind === 'mkdir') next.set(op.path, DIR);
  else if (op.kind === 'put') next.set(op.path, sha256(contentOf(op)));
  else next.delete(op.path);
  return next;
}

export function describeOp(op: ScriptOp): string {
  return op.kind === 'put' ? `put ${op.path} (${op.sizeBytes} bytes)` : `${op.kind} ${op.path}`;
}

/** Bytes an inode holds inline at 4K blocks (the block after the inline-data header): larger puts take clusters. */
export const INLINE_BYTES_MAX_4K = 4096 - 0xc8;

/**
 * The CI script: a directory, an inline file, a file of clusters, a replace that moves a file from
 * inline data to clusters (the old body dropped, new clusters taken in one transaction), a removal
 * of a file of clusters (its clusters freed). The soak's random scripts add the rest (replace to
 * inline, rm of directories, files in subdirectories, empty files).
 */
export const CI_SCRIPT: ScriptOp[] = [
  { kind: 'mkdir', path: '/d' },
  { kind: 'put', path: '/d/a.txt', sizeBytes: 300, seed: 1 },
  { kind: 'put', path: '/big.bin', sizeBytes: 20_000, seed: 2 },
  { kind: 'put', path: '/d/a.txt', sizeBytes: 9_000, seed: 3 },
  { kind: 'rm', path: '/big.bin' },
];

/**
 * A random valid script of `count` operations (the soak's): puts of random sizes around the
 * inline limit and beyond, into a few directories; replaces, removals of files and empty dirs.
 */
export function randomScript(rand: () => number, count: number, seedBase: number): ScriptOp[] {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const ops: ScriptOp[] = [];
  let tree: Tree = new Map();
  const dirs = (): string[] => ['/', ...[...tree].filter(([, v]) => v === DIR).map(([k]) => k)];
  const files = (): string[] => [...tree].filter(([, v]) => v !== DIR).map(([k]) => k);
  const emptyDirs = (): string[] => dirs().filter((d) => d !== '/' && ![...tree.keys()].some((k) => k.startsWith(`${d}/`)));
  const size = (): number => pick([0, 1, 100, 2_000, INLINE_BYTES_MAX_4K, INLINE_BYTES_MAX_4K + 1, 5_000, 12_000, 30_000]);
  for (let i = 0; i < count; i++) {
    const r = rand();
    let op: ScriptOp;
    const join = (d: string, n: string): string => (d === '/' ? `/${n}` : `${d}/${n}`);
    if (r < 0.15 && dirs().length < 4) op = { kind: 'mkdir', path: join(pick(dirs()), `d${i}`) };
    else if (r < 0.35 && files().length > 0) op = { kind: 'put', path: pick(files()), sizeBytes: size(), seed: seedBase + i };
    else if (r < 0.5 && files().length > 0) op = { kind: 'rm', path: pick(files()) };
    else if (r < 0.55 && emptyDirs().length > 0) op = { kind: 'rm', path: pick(emptyDirs()) };
    else op = { kind: 'put', path: join(pick(dirs()), `f${i}`), sizeBytes: size(), seed: seedBase + i };
    ops.push(op);
    tree = applyOp(tree, op);
  }
  return ops;
}

/** One process, one operation at a time (a node takes cluster locks; a lone writer needs none). */
const noLocks: ClusterLocker = () => Promise.resolve(() => Promise.resolve());

/**
 * Mounts `slot` for node `nodeNum` (own slot recovered if DIRTY, slot map entry, DIRTY set — the
 * calls and order of src/node/mount.ts), runs `ops` one by one calling `onAck(i)` after op i was
 * acknowledged by the library (its commit durable), and unmounts (DIRTY cleared, slot freed).
 */
export async function mountAndRun(dev: BlockDevice, slot: number, nodeNum: number, ops: ScriptOp[], onAck: (i: number) => void | Promise<void>, onMounted: () => void | Promise<void> = () => {}): Promise<void> {
  let vol = await Ocfs2Volume.open(dev);
  const reused = (await readSlotMap(vol)).slots[slot]?.nodeNum === nodeNum;
  if (!reused) await writeSlotEntry(vol, slot, nodeNum);
  await recoverSlot(vol, slot, { observeMs: 0, clearSlot: false });
  await writeJournalInode(vol, await openJournal(vol, slot), { dirty: true });
  await onMounted();
  const fsOps = new FileOps(dev, slot, noLocks);
  for (const [i, op] of ops.entries()) {
    if (op.kind === 'mkdir') await fsOps.mkdir(op.path);
    else if (op.kind === 'put') await fsOps.put(op.path, contentOf(op));
    else await fsOps.rm(op.path);
    await onAck(i);
  }
  vol = await Ocfs2Volume.open(dev);
  await writeJournalInode(vol, await openJournal(vol, slot), { dirty: false });
  await writeSlotEntry(vol, slot, undefined);
}

/** The volume's tree from the root (sanbox's reader): every path with 'dir' or its content's sha256. */
export async function readTree(dev: BlockDevice): Promise<Tree> {
  const vol = await Ocfs2Volume.open(dev);
  const tree: Tree = new Map();
  const walk = async (blkno: number, prefix: string): Promise<void> => {
    const dir = await vol.readInode(blkno);
    for (const e of await vol.readDir(dir)) {
      if (e.inode === 0 || e.name === '.' || e.name === '..') continue;
      const p = `${prefix}/${e.name}`;
      const ino = await vol.readInode(e.inode);
      if ((ino.inode.mode & 0o170000) === S_IFDIR) {
        tree.set(p, DIR);
        await walk(e.inode, p);
      } else {
        tree.set(p, sha256(await vol.readFile(ino)));
      }
    }
  };
  await walk(vol.sb.rootBlkno, '');
  return tree;
}

/**
 * The allocators as one comparable string: for every chain allocator of the volume (global bitmap,
 * inode and extent allocators) its i_used/i_total, its chain list and every group descriptor's
 * bytes (bitmap and free count). fsck.ocfs2 -n does not compare these with the files, so the crash
 * tests compare them with the reference run's at the same acknowledgement.
 */
export async function allocatorKey(dev: BlockDevice): Promise<string> {
  const vol = await Ocfs2Volume.open(dev);
  const parts: string[] = [];
  for (const [name, blkno] of [...(await vol.systemDir())].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const ino = await vol.readInode(blkno);
    if (!(ino.inode.flags & InodeFlag.CHAIN)) continue;
    const h = createHash('sha256').update(ino.block.subarray(DINODE_ID2_OFFSET));
    for await (const g of allocatorGroups(vol, ino)) h.update(g.block);
    parts.push(`${name}:${ino.inode.id1a}/${ino.inode.id1b}:${h.digest('hex').slice(0, 12)}`);
  }
  return parts.join(' ');
}

/** What a crash point is judged by: the tree and the allocators. */
export async function stateKey(dev: BlockDevice): Promise<string> {
  return `${treeKey(await readTree(dev))} | ${await allocatorKey(dev)}`;
}

/** A tree as one comparable string (sorted paths). */
export function treeKey(tree: Tree): string {
  return [...tree].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, v]) => `${k}=${v === DIR ? DIR : v.slice(0, 12)}`).join(' ');
}
