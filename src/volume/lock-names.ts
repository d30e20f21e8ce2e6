// The cluster lock names of a VG and its LVs, as lvmlockd names them (lvm2.md §7.1): one lockspace
// per VG, `lvm_<VG>`, holding `VGLK` and one lock per LV named by its dashed uuid. sanbox has one
// lockspace per cluster image, so the VG's lockspace name prefixes the resource.
// (Interim: branch lvmlocks' src/volume/lvm-locks.ts takes these over when it lands.)

import { SanboxError } from '../errors.js';
import { RESOURCE_NAME_BYTES_MAX } from '../format/lockspace.js';

function checked(name: string): string {
  if (Buffer.byteLength(name) > RESOURCE_NAME_BYTES_MAX) throw new SanboxError('EINVAL', `lock name ${name} is longer than the lockspace's ${RESOURCE_NAME_BYTES_MAX} bytes (a shorter VG name fits)`);
  return name;
}

/** The VG lock: EX to change the VG's metadata, PR to read it. */
export function vgLockResource(vg: string): string {
  return checked(`lvm_${vg}:VGLK`);
}

/** An LV's lock: held by every node doing I/O through the LV (PR shared, EX exclusive). */
export function lvLockResource(vg: string, lvId: string): string {
  return checked(`lvm_${vg}:${lvId}`);
}

/** lvmlockd's val_blk version (lvm2.md §7.6). */
const VAL_BLK_VERSION = 0x0101;

/** The VG lock's value block after a commit: {u16 version, u16 flags, u32 seqno} LE in its first 8 bytes. */
export function vgValueBlock(seqno: number, lvbLenBytes: number, removed = false): Buffer {
  const b = Buffer.alloc(lvbLenBytes);
  b.writeUInt16LE(VAL_BLK_VERSION, 0);
  b.writeUInt16LE(removed ? 1 : 0, 2);
  b.writeUInt32LE(seqno, 4);
  return b;
}
