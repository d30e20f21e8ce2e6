// Paths on an ocfs2 volume, read-only: resolve a path to its inode, list a directory with the
// facts of `debugfs.ocfs2 -R "ls -l"`, and read a file's bytes as `cat` does (inline data or
// extents; holes and unwritten extents read as zeros). Works on volumes the kernel wrote.
// Features a reader cannot follow are refused by name before anything is read.

import { FormatError, SanboxError } from '../errors.js';
import { DynFeature, FeatureIncompat, INCOMPAT_NAMES, featureNames, S_IFDIR } from '../format/ocfs2/constants.js';
import { ExtentFlag } from '../format/ocfs2/extent-list.js';
import { inlineDataArea } from '../format/ocfs2/system-payloads.js';
import type { InodeBlock, Ocfs2Volume } from './ocfs2-volume.js';

/** Symlink loops and absurd paths: the kernel's own bound on path components followed. */
const PATH_COMPONENTS_MAX = 4096;
/** Blocks read per device read when streaming a file. */
const READ_CHUNK_BLOCKS = 256;

/** s_feature_incompat in the superblock inode (reference/ocfs2.md §1.4). */
const S_FEATURE_INCOMPAT_OFFSET = 0xe0;

/** Incompat features whose volumes the offline readers refuse: not a file system in a stable state. */
const UNREADABLE_INCOMPAT = FeatureIncompat.HEARTBEAT_DEV | FeatureIncompat.RESIZE_INPROG | FeatureIncompat.TUNEFS_INPROG;

/** Refuses a volume with features the readers cannot follow, naming them. */
export function checkReadableFeatures(vol: Ocfs2Volume): void {
  let known = 0;
  for (const [bit] of INCOMPAT_NAMES) known |= bit;
  const bad = (vol.sb.featureIncompat & UNREADABLE_INCOMPAT) | (vol.sb.featureIncompat & ~known);
  if (bad) {
    throw new SanboxError('EFORMAT', `${vol.dev.name}: volume has feature(s) ${featureNames(bad >>> 0, INCOMPAT_NAMES).join(', ')} that sanbox cannot read (at byte offset ${vol.where(vol.sb.inode.blkno, S_FEATURE_INCOMPAT_OFFSET).offsetBytes})`, { device: vol.dev.name, offsetBytes: vol.where(vol.sb.inode.blkno, S_FEATURE_INCOMPAT_OFFSET).offsetBytes });
  }
}

export interface ListEntry {
  name: string;
  inode: number;
  /** Directory entry file type (1 file, 2 dir, 7 symlink, ...). */
  fileType: number;
  mode: number;
  links: number;
  uid: number;
  gid: number;
  sizeBytes: bigint;
  mtimeSec: bigint;
}

function isDir(ino: InodeBlock): boolean {
  return (ino.inode.mode & 0o170000) === S_IFDIR;
}

/**
 * Holds a directory while its entries are searched for one component: resolves to the directory
 * as read again under the hold, and the hold's release (a node's PR META lock, src/fs/file-ops.ts).
 */
export type DirectoryHold = (dir: InodeBlock) => Promise<{ dir: InodeBlock; release: () => Promise<void> }>;

/**
 * The inode at an absolute path ("/" is the root directory). With `hold`, each directory on the
 * way is searched under it (ocfs2 looks a name up under the parent's META lock PR), so a
 * concurrent rename or rmdir by another node cannot show a half-changed directory.
 */
export async function lookupPath(vol: Ocfs2Volume, path: string, hold?: DirectoryHold): Promise<InodeBlock> {
  checkReadableFeatures(vol);
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length > PATH_COMPONENTS_MAX) throw new SanboxError('EINVAL', `${vol.dev.name}: path has more than ${PATH_COMPONENTS_MAX} components`, { device: vol.dev.name });
  let cur = await vol.readInode(vol.sb.rootBlkno);
  let walked = '';
  for (const part of parts) {
    if (!isDir(cur)) throw new SanboxError('ENOENT', `${vol.dev.name}: ${walked || '/'} is not a directory`, { device: vol.dev.name });
    walked += `/${part}`;
    const step = async (d: InodeBlock): Promise<InodeBlock> => {
      const hit = (await vol.readDir(d)).find((e) => e.inode !== 0 && e.name === part);
      if (!hit) throw new SanboxError('ENOENT', `${vol.dev.name}: ${walked}: no such file or directory`, { device: vol.dev.name });
      return vol.readInode(hit.inode);
    };
    if (hold === undefined) cur = await step(cur);
    else {
      // The child is read while the parent is held: an rm of it needs the parent's EX first.
      const held = await hold(cur);
      try {
        cur = await step(held.dir);
      } finally {
        await held.release();
      }
    }
  }
  return cur;
}

/** `ls -l` of a directory (every live entry, '.' and '..' included, in on-disk order) or of one file. */
export async function listPath(vol: Ocfs2Volume, path: string): Promise<ListEntry[]> {
  return listInode(vol, await lookupPath(vol, path), path);
}

/** `ls -l` of the inode found at `path` (a directory's entries, or the file itself). */
export async function listInode(vol: Ocfs2Volume, ino: InodeBlock, path: string): Promise<ListEntry[]> {
  const entryOf = (name: string, fileType: number, i: InodeBlock): ListEntry => ({
    name, inode: i.blkno, fileType, mode: i.inode.mode, links: i.inode.linksCount, uid: i.inode.uid, gid: i.inode.gid, sizeBytes: i.inode.sizeBytes, mtimeSec: i.inode.mtime,
  });
  if (!isDir(ino)) return [entryOf(path.split('/').filter(Boolean).pop() ?? path, 1, ino)];
  const out: ListEntry[] = [];
  for (const e of await vol.readDir(ino)) {
    if (e.inode === 0) continue;
    out.push(entryOf(e.name, e.fileType, await vol.readInode(e.inode)));
  }
  return out;
}

/** A file's bytes in order, chunk by chunk (inline data, extents; holes and unwritten extents as zeros). */
export async function* readFileChunks(vol: Ocfs2Volume, ino: InodeBlock): AsyncGenerator<Buffer> {
  if (isDir(ino)) throw new SanboxError('EINVAL', `${vol.dev.name}: inode ${ino.blkno} is a directory`, { device: vol.dev.name });
  const size = ino.inode.sizeBytes;
  if (ino.inode.dynFeatures & DynFeature.INLINE_DATA) {
    const area = inlineDataArea(ino.block, vol.where(ino.blkno));
    if (size > BigInt(area.end - area.start)) {
      const off = vol.where(ino.blkno, 0x20).offsetBytes!;
      throw new FormatError(`${vol.dev.name}: inline inode ${ino.blkno} i_size ${size} exceeds its ${area.end - area.start}-byte inline area (at byte offset ${off})`, { device: vol.dev.name, offsetBytes: off });
    }
    yield Buffer.from(ino.block.subarray(area.start, area.start + Number(size)));
    return;
  }
  const bs = vol.blockSizeBytes;
  const bpc = vol.geometry.blocksPerCluster;
  const extents = (await vol.extents(ino)).filter((e) => !(e.flags & ExtentFlag.UNWRITTEN));
  const blocks = Number((size + BigInt(bs) - 1n) / BigInt(bs));
  for (let l = 0; l < blocks; l += READ_CHUNK_BLOCKS) {
    const n = Math.min(READ_CHUNK_BLOCKS, blocks - l);
    const chunk = Buffer.alloc(n * bs);
    for (const e of extents) {
      // The part of extent e inside logical blocks [l, l+n), read in one go.
      const first = Math.max(l, e.cpos * bpc);
      const last = Math.min(l + n, (e.cpos + e.clusters) * bpc);
      if (first >= last) continue;
      const data = await vol.readBlocks(e.blkno + (first - e.cpos * bpc), last - first, `extent of inode ${ino.blkno}`);
      data.copy(chunk, (first - l) * bs);
    }
    const end = Number(BigInt(l + n) * BigInt(bs) > size ? size - BigInt(l) * BigInt(bs) : BigInt(n * bs));
    yield chunk.subarray(0, end);
  }
}
