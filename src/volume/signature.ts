// Probing a device for something sanbox must not overwrite: a filesystem, swap, a partition table
// or a LUKS header. pvcreate refuses such a device (reference: the magics below are the public,
// documented on-disk magic numbers of each format; blkid knows many more).

export interface Signature {
  name: string;
  offsetBytes: number;
}

interface Probe {
  name: string;
  offsetBytes: number;
  magic: Buffer;
}

const probes: Probe[] = [
  // ext2/3/4: s_magic 0xEF53 at byte 56 of the superblock at 1024.
  { name: 'ext2/3/4 filesystem', offsetBytes: 1080, magic: Buffer.from([0x53, 0xef]) },
  { name: 'xfs filesystem', offsetBytes: 0, magic: Buffer.from('XFSB', 'latin1') },
  { name: 'btrfs filesystem', offsetBytes: 65600, magic: Buffer.from('_BHRfS_M', 'latin1') },
  { name: 'swap', offsetBytes: 4086, magic: Buffer.from('SWAPSPACE2', 'latin1') },
  { name: 'LUKS', offsetBytes: 0, magic: Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]) },
  { name: 'GPT partition table', offsetBytes: 512, magic: Buffer.from('EFI PART', 'latin1') },
  // ocfs2: superblock signature "OCFSV2" at block 2, block size 512..4096.
  ...[512, 1024, 2048, 4096].map((bs) => ({ name: 'ocfs2 filesystem', offsetBytes: 2 * bs, magic: Buffer.from('OCFSV2', 'latin1') })),
  // the sanbox cluster image and other sanbox records have their own magics; the generic rule
  // below (a DOS boot sector) catches MBR-partitioned disks.
  { name: 'DOS partition table', offsetBytes: 510, magic: Buffer.from([0x55, 0xaa]) },
];

/** Bytes a probe needs from the start of the device. */
export const SIGNATURE_PROBE_BYTES = 65600 + 8;

/** The first known signature in `head` (the device's first bytes), if any. */
export function findSignature(head: Buffer): Signature | undefined {
  for (const p of probes) {
    if (head.length >= p.offsetBytes + p.magic.length && head.subarray(p.offsetBytes, p.offsetBytes + p.magic.length).equals(p.magic)) {
      return { name: p.name, offsetBytes: p.offsetBytes };
    }
  }
  return undefined;
}
