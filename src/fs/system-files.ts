// The system directory's files with their inode flags, sizes and extent lists: what
// `sanbox fsinfo --files` shows. Facts: reference/ocfs2.md §2.

import { DynFeature, InodeFlag } from '../format/ocfs2/constants.js';
import { inodeFlagNames } from '../format/ocfs2/dinode.js';
import type { Ocfs2Volume } from './ocfs2-volume.js';

export interface SystemFileRow {
  name: string;
  inode: number;
  flags: string[];
  sizeBytes: string;
  clusters: number;
  inline: boolean;
  extents: { cpos: number; clusters: number; blkno: number; flags: number }[];
}

/** One row per system directory entry. Inline-data inodes and chain/local-alloc/dealloc inodes hold no extent list. */
export async function systemFiles(vol: Ocfs2Volume): Promise<SystemFileRow[]> {
  const rows: SystemFileRow[] = [];
  for (const [name, blkno] of await vol.systemDir()) {
    const ino = await vol.readInode(blkno);
    const inline = (ino.inode.dynFeatures & DynFeature.INLINE_DATA) !== 0;
    const chain = (ino.inode.flags & (InodeFlag.CHAIN | InodeFlag.LOCAL_ALLOC | InodeFlag.DEALLOC)) !== 0;
    const extents = inline || chain ? [] : (await vol.extents(ino)).map((e) => ({ cpos: e.cpos, clusters: e.clusters, blkno: e.blkno, flags: e.flags }));
    rows.push({ name, inode: blkno, flags: inodeFlagNames(ino.inode.flags), sizeBytes: ino.inode.sizeBytes.toString(), clusters: ino.inode.clusters, inline, extents });
  }
  return rows;
}
