// The one disk signature table: every format sanbox writes (cluster image, lockspace, LVM2 PV,
// ocfs2) and the foreign ones a shared disk may hold (blkid's common magics). Pure: the caller
// reads the device's first SIGNATURE_PROBE_BYTES and asks what is there. Destructive commands
// (pvcreate, mkfs, cluster init, disk create over NBD) refuse every hit without --force, and a
// command pointed at the wrong kind of image says what the image is (describeSignature).
//
// | what                  | where                                   | signature                  |
// |-----------------------|-----------------------------------------|----------------------------|
// | sanbox cluster image  | byte 0                                  | "SBXCLUST"                 |
// | sanbox lockspace      | byte 0 (a lockspace on its own device)  | "SBLH"                     |
// | LVM2 PV label         | sector 0..3, bytes 0..7 of the sector   | "LABELONE"                 |
// | ocfs2                 | block 2, block size 512..4096           | "OCFSV2"                   |
// | ext2/3/4              | byte 0x438 (superblock 1024 + 0x38)     | le16 0xEF53                |
// | xfs                   | byte 0                                  | "XFSB"                     |
// | btrfs                 | byte 0x10040                            | "_BHRfS_M"                 |
// | swap                  | byte 4096 − 10                          | "SWAPSPACE2" / "SWAP-SPACE"|
// | LUKS                  | byte 0                                  | "LUKS" 0xBA 0xBE           |
// | GPT                   | byte 512                                | "EFI PART"                 |
// | DOS partition table   | byte 510                                | 0x55 0xAA                  |

import { CLUSTER_MAGIC } from './cluster-image.js';

export type SignatureType = 'sanbox-cluster' | 'sanbox-lockspace' | 'LVM2_member' | 'ocfs2' | 'ext4' | 'xfs' | 'btrfs' | 'swap' | 'crypto_LUKS' | 'gpt' | 'dos';

export interface SignatureHit {
  type: SignatureType;
  /** What a user calls it: "an ocfs2 volume". */
  description: string;
  offsetBytes: number;
}

interface Probe {
  type: SignatureType;
  description: string;
  offsetBytes: number;
  magic: Buffer;
}

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');
/** LVM scans the first four 512-byte sectors for its label (reference/lvm2.md §2.1). */
const LVM_LABEL_SECTORS = 4;
/** ocfs2's superblock is block 2 for every block size mkfs.ocfs2 allows. */
const OCFS2_BLOCK_SIZES = [512, 1024, 2048, 4096];

const PROBES: Probe[] = [
  { type: 'sanbox-cluster', description: 'a sanbox cluster image', offsetBytes: 0, magic: latin1(CLUSTER_MAGIC) },
  { type: 'sanbox-lockspace', description: 'a sanbox lockspace', offsetBytes: 0, magic: latin1('SBLH') },
  ...Array.from({ length: LVM_LABEL_SECTORS }, (_, s) => ({ type: 'LVM2_member' as const, description: 'an LVM2 physical volume', offsetBytes: s * 512, magic: latin1('LABELONE') })),
  ...OCFS2_BLOCK_SIZES.map((bs) => ({ type: 'ocfs2' as const, description: 'an ocfs2 volume', offsetBytes: 2 * bs, magic: latin1('OCFSV2') })),
  { type: 'ext4', description: 'an ext2/3/4 filesystem', offsetBytes: 0x438, magic: Buffer.from([0x53, 0xef]) },
  { type: 'xfs', description: 'an xfs filesystem', offsetBytes: 0, magic: latin1('XFSB') },
  { type: 'btrfs', description: 'a btrfs filesystem', offsetBytes: 0x10040, magic: latin1('_BHRfS_M') },
  { type: 'swap', description: 'swap space', offsetBytes: 4096 - 10, magic: latin1('SWAPSPACE2') },
  { type: 'swap', description: 'swap space', offsetBytes: 4096 - 10, magic: latin1('SWAP-SPACE') },
  { type: 'crypto_LUKS', description: 'a LUKS container', offsetBytes: 0, magic: Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]) },
  { type: 'gpt', description: 'a GPT partition table', offsetBytes: 512, magic: latin1('EFI PART') },
  // Last: a DOS boot-sector marker is weaker evidence than any of the magics above.
  { type: 'dos', description: 'a DOS partition table', offsetBytes: 510, magic: Buffer.from([0x55, 0xaa]) },
];

/** Bytes of the device's start a probe needs (the btrfs magic is the furthest). */
export const SIGNATURE_PROBE_BYTES = 0x10040 + 8;

/** Every signature found in `head` (the device's first bytes), strongest first. */
export function findSignatures(head: Buffer): SignatureHit[] {
  const hits: SignatureHit[] = [];
  for (const p of PROBES) {
    if (head.length < p.offsetBytes + p.magic.length) continue;
    if (!head.subarray(p.offsetBytes, p.offsetBytes + p.magic.length).equals(p.magic)) continue;
    if (hits.some((h) => h.type === p.type)) continue;
    hits.push({ type: p.type, description: p.description, offsetBytes: p.offsetBytes });
  }
  return hits;
}

/** The strongest signature in `head`, if any. */
export function findSignature(head: Buffer): SignatureHit | undefined {
  return findSignatures(head)[0];
}

/** "vol.img is an ocfs2 volume (signature at offset 4096), not a sanbox cluster image", or what the bytes are not. */
export function describeSignature(device: string, head: Buffer, expected: string): string {
  const hit = findSignature(head);
  if (hit) return `${device} is ${hit.description} (signature at offset ${hit.offsetBytes}), not ${expected}`;
  if (head.every((b) => b === 0)) return `${device} is not ${expected}: its first ${head.length} bytes are zero (a blank disk) at offset 0`;
  return `${device} is not ${expected}: no signature sanbox knows (first bytes ${head.subarray(0, 8).toString('hex')}) at offset 0`;
}
