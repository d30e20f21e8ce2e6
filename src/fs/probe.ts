// blkid-like probing: does a device already hold something mkfs would destroy? Checks the
// signatures of the formats this project meets on shared disks. Pure reads; no writes.
//
// | what              | where                                   | signature                  |
// |-------------------|-----------------------------------------|----------------------------|
// | LVM2 PV label     | sector 0..3, bytes 0..7 of the sector   | "LABELONE"                 |
// | ocfs2             | block 2 at bs 512..4096                 | "OCFSV2"                   |
// | ext2/3/4          | byte 0x438 (superblock 1024 + 0x38)     | le16 0xEF53                |
// | xfs               | byte 0                                  | "XFSB"                     |
// | btrfs             | byte 0x10040                            | "_BHRfS_M"                 |
// | swap              | byte 4096 − 10                          | "SWAPSPACE2" / "SWAP-SPACE"|
// | GPT               | byte 512                                | "EFI PART"                 |

import type { BlockDevice } from '../disk/device.js';
import { probeOcfs2BlockSize } from './ocfs2-volume.js';

/** LVM scans the first four sectors for its label. */
const LVM_LABEL_SECTORS = 4;
const PROBE_BYTES = 0x10000 + 0x1000;

export interface ProbeHit {
  type: 'LVM2_member' | 'ocfs2' | 'ext4' | 'xfs' | 'btrfs' | 'swap' | 'gpt';
  offsetBytes: number;
}

export async function probeSignatures(dev: BlockDevice): Promise<ProbeHit[]> {
  const len = Math.min(dev.sizeBytes, PROBE_BYTES);
  const head = Buffer.alloc(len);
  if (len > 0) await dev.read(head, 0);
  const hits: ProbeHit[] = [];
  const has = (off: number, text: string): boolean => off + text.length <= head.length && head.toString('latin1', off, off + text.length) === text;
  for (let s = 0; s < LVM_LABEL_SECTORS; s++) if (has(s * 512, 'LABELONE')) hits.push({ type: 'LVM2_member', offsetBytes: s * 512 });
  const bs = await probeOcfs2BlockSize(dev);
  if (bs !== undefined) hits.push({ type: 'ocfs2', offsetBytes: 2 * bs });
  if (head.length >= 0x43a && head.readUInt16LE(0x438) === 0xef53) hits.push({ type: 'ext4', offsetBytes: 0x438 });
  if (has(0, 'XFSB')) hits.push({ type: 'xfs', offsetBytes: 0 });
  if (has(0x10040, '_BHRfS_M')) hits.push({ type: 'btrfs', offsetBytes: 0x10040 });
  if (has(4096 - 10, 'SWAPSPACE2') || has(4096 - 10, 'SWAP-SPACE')) hits.push({ type: 'swap', offsetBytes: 4096 - 10 });
  if (has(512, 'EFI PART')) hits.push({ type: 'gpt', offsetBytes: 512 });
  return hits;
}
