// The rules of an ocfs2 mount that need no cluster: which volumes sanbox may mount (authorize),
// which slot a node gets (the kernel's choice, reference/ocfs2.md §3), the cluster lock names
// (§6, locking.md §2.7), and the slot map write of one entry. I/O on an Ocfs2Volume only; the
// cluster side (locks, heartbeat, quorum) is src/node/mount.ts.

import { SanboxError } from '../errors.js';
import { hex32 } from '../format/where.js';
import { FeatureIncompat, FeatureRoCompat, INCOMPAT_NAMES, RO_COMPAT_NAMES, slotFileName } from '../format/ocfs2/constants.js';
import { EXTENDED_SLOT_BYTES, OLD_SLOT_BYTES, OLD_SLOT_EMPTY } from '../format/ocfs2/slot-map.js';
import { hasClusterInfo } from '../format/ocfs2/superblock.js';
import type { Ocfs2Volume } from './ocfs2-volume.js';
import { readSlotMap } from './slot-map-reader.js';

/** The cluster stack sanbox is: o2cb-compatible (o2hb heartbeat in the volume, ocfs2's lock names). */
export const SANBOX_CLUSTER_STACK = 'o2cb';

/**
 * Incompat features a sanbox node keeps consistent while mounted: those sanbox mkfs writes
 * (src/fs/mkfs-options.ts WRITABLE) plus CLUSTERINFO (the stack and cluster name it checks).
 * Anything else (xattr, indexed-dirs, metaecc, refcount, …) changes metadata sanbox does not
 * maintain, so a mount refuses it by name.
 */
const INCOMPAT_MOUNTABLE = FeatureIncompat.SPARSE_ALLOC | FeatureIncompat.INLINE_DATA | FeatureIncompat.EXTENDED_SLOT_MAP | FeatureIncompat.CLUSTERINFO;
/** RO-compat features sanbox keeps consistent: unwritten extents (it writes none; reading them is safe). */
const RO_COMPAT_MOUNTABLE = FeatureRoCompat.UNWRITTEN;

/** ocfs2's lock types (locking.md §2.7) used by a mount. */
export const LockType = { META: 'M', SUPER: 'S' } as const;
/** The superblock's block (OCFS2_SUPER_BLOCK_BLKNO, §1.1); also the blkno of ocfs2's SUPER lock name (generation 0). */
const SUPERBLOCK_BLKNO = 2;

/** ocfs2's lock name: type, "000000", blkno as 16 hex digits, generation as 8 (§6 "Lock names"). */
export function ocfs2LockName(type: string, blkno: number, generation: number): string {
  return `${type}000000${BigInt(blkno).toString(16).padStart(16, '0')}${hex32(generation)}`;
}

/**
 * The lock manager resource for an ocfs2 lock of volume `vol`: the kernel keeps one DLM domain
 * per volume (named by its UUID), sanbox one lockspace per cluster, so the UUID prefixes the name
 * (32 + 1 + 31 = 64 bytes, the lockspace's RESOURCE_NAME_BYTES_MAX).
 */
export function volumeLockResource(vol: Ocfs2Volume, lockName: string): string {
  return `${vol.sb.uuid.toString('hex').toUpperCase()}:${lockName}`;
}

export function superLockResource(vol: Ocfs2Volume): string {
  return volumeLockResource(vol, ocfs2LockName(LockType.SUPER, SUPERBLOCK_BLKNO, 0));
}

/** The META lock of slot `slot`'s journal inode, held EX by the node mounted in that slot. */
export async function journalLockResource(vol: Ocfs2Volume, slot: number): Promise<string> {
  const ino = await vol.systemInode(slotFileName('journal', slot));
  return volumeLockResource(vol, ocfs2LockName(LockType.META, ino.blkno, ino.inode.generation));
}

function mountRefused(vol: Ocfs2Volume, why: string, offsetBytes?: number): SanboxError {
  return new SanboxError('EINVAL', `${vol.dev.name}: cannot mount: ${why}`, { device: vol.dev.name, ...(offsetBytes !== undefined ? { offsetBytes } : {}) });
}

/** In-block offsets of the superblock fields a refusal names (src/format/ocfs2/superblock.ts). */
const SB_INCOMPAT_OFFSET = 0xe0;
const SB_RO_COMPAT_OFFSET = 0xe4;
const SB_STACK_OFFSET = 0x160;
const SB_CLUSTER_NAME_OFFSET = 0x168;

/** Absolute byte offset of a superblock field. */
function sbFieldOffset(vol: Ocfs2Volume, inBlock: number): number {
  return vol.where(SUPERBLOCK_BLKNO, inBlock).offsetBytes ?? 0;
}

/** Refuses a volume of another cluster or stack, or with a feature sanbox does not keep consistent. */
export function authorizeVolume(vol: Ocfs2Volume, clusterName: string): void {
  const sb = vol.sb;
  if (sb.featureIncompat & FeatureIncompat.LOCAL_MOUNT) throw mountRefused(vol, 'it is a local (-M local) volume, not a cluster volume', sbFieldOffset(vol, SB_INCOMPAT_OFFSET));
  if (!hasClusterInfo(sb)) {
    throw mountRefused(vol, `it records no cluster stack and name (feature clusterinfo); make it with --cluster-stack=${SANBOX_CLUSTER_STACK} --cluster-name=${clusterName}`, sbFieldOffset(vol, SB_INCOMPAT_OFFSET));
  }
  if (sb.clusterStack !== SANBOX_CLUSTER_STACK) throw mountRefused(vol, `its cluster stack is '${sb.clusterStack}', not '${SANBOX_CLUSTER_STACK}'`, sbFieldOffset(vol, SB_STACK_OFFSET));
  if (sb.clusterName !== clusterName) throw mountRefused(vol, `it belongs to cluster '${sb.clusterName}', this node's cluster is '${clusterName}'`, sbFieldOffset(vol, SB_CLUSTER_NAME_OFFSET));
  const badIncompat = sb.featureIncompat & ~INCOMPAT_MOUNTABLE;
  if (badIncompat !== 0) throw mountRefused(vol, `feature ${featureNames(badIncompat, INCOMPAT_NAMES)} is one sanbox does not write`, sbFieldOffset(vol, SB_INCOMPAT_OFFSET));
  const badRo = sb.featureRoCompat & ~RO_COMPAT_MOUNTABLE;
  if (badRo !== 0) throw mountRefused(vol, `feature ${featureNames(badRo, RO_COMPAT_NAMES)} is one sanbox does not write`, sbFieldOffset(vol, SB_RO_COMPAT_OFFSET));
}

function featureNames(bits: number, names: [number, string][]): string {
  const out = names.filter(([b]) => (bits & b) !== 0).map(([, n]) => n);
  const known = names.reduce((m, [b]) => m | b, 0);
  if (bits & ~known) out.push(`0x${(bits & ~known).toString(16)}`);
  return out.join(', ');
}

/**
 * The kernel's slot choice: the slot already holding this node's number (a remount after a
 * crash), else the first free one. Throws when every slot is taken by another node.
 */
export async function chooseSlot(vol: Ocfs2Volume, nodeId: number): Promise<{ slot: number; reused: boolean }> {
  const map = await readSlotMap(vol);
  const ours = map.slots.findIndex((s) => s.nodeNum === nodeId);
  if (ours >= 0) return { slot: ours, reused: true };
  const free = map.slots.findIndex((s) => s.nodeNum === undefined);
  if (free >= 0) return { slot: free, reused: false };
  const holders = map.slots.map((s, i) => `slot ${i}: node ${s.nodeNum ?? '-'}`).join(', ');
  throw mountRefused(vol, `every one of its ${map.maxSlots} slots is taken (${holders})`);
}

/** Writes slot `slot`'s entry (node number, or free), only the block holding it, flushed. */
export async function writeSlotEntry(vol: Ocfs2Volume, slot: number, nodeId: number | undefined): Promise<void> {
  const ino = await vol.systemInode('slot_map');
  const extended = (vol.sb.featureIncompat & FeatureIncompat.EXTENDED_SLOT_MAP) !== 0;
  const bs = vol.blockSizeBytes;
  const byte = slot * (extended ? EXTENDED_SLOT_BYTES : OLD_SLOT_BYTES);
  const blk = vol.mapBlock(await vol.extents(ino), Math.floor(byte / bs));
  if (blk === undefined) throw new SanboxError('EFORMAT', `${vol.dev.name}: slot map has a hole where slot ${slot} lives`, { device: vol.dev.name, offsetBytes: vol.where(ino.blkno).offsetBytes });
  const b = await vol.readBlocks(blk, 1);
  const at = byte % bs;
  if (extended) {
    // Freeing zeroes es_valid only; the node number stays stale, as the kernel leaves it (§3).
    b.writeUInt8(nodeId === undefined ? 0 : 1, at);
    if (nodeId !== undefined) b.writeUInt32LE(nodeId, at + 4);
  } else b.writeUInt16LE(nodeId ?? OLD_SLOT_EMPTY, at);
  await vol.dev.write(b, blk * bs);
  await vol.dev.flush();
}
