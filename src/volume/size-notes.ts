// What lvm2 says when it rounds a size, in its words (lvm2 2.03.16, 2 MiB extents):
//   lvcreate -L 3m              → "Rounding up size to full physical extent 4.00 MiB"
//   lvcreate -L 6m -i 2         → "Rounding size 6.00 MiB (3 extents) up to stripe boundary size 8.00 MiB (4 extents)."
//   lvextend -L +1m             → "Rounding size to boundary between physical extents: 2.00 MiB."
//                                 "Size of logical volume vg/lv changed from 4.00 MiB (2 extents) to 6.00 MiB (3 extents)."

import type { SizeRequest } from './manager.js';
import { formatDisplaySize } from './units-format.js';

/** Notes for lvcreate: `extents` is what the LV got. */
export function createNotes(extentBytes: number, req: SizeRequest, stripes: number, extents: number): string[] {
  const notes: string[] = [];
  let asked: number | undefined;
  if (req.kind === 'bytes') {
    asked = Math.ceil(req.bytes / extentBytes);
    if (req.bytes % extentBytes !== 0) notes.push(`Rounding up size to full physical extent ${formatDisplaySize(asked * extentBytes)}`);
  } else if (req.kind === 'extents') {
    asked = req.extents;
  }
  if (stripes > 1 && asked !== undefined && extents > asked) {
    notes.push(`Rounding size ${formatDisplaySize(asked * extentBytes)} (${asked} extents) up to stripe boundary size ${formatDisplaySize(extents * extentBytes)} (${extents} extents).`);
  }
  return notes;
}

/** Notes for lvextend/lvreduce: sizes before and after, in extents. */
export function resizeNotes(lvPath: string, extentBytes: number, req: SizeRequest, fromExtents: number, toExtents: number): string[] {
  const notes: string[] = [];
  if (req.kind === 'bytes' && req.bytes % extentBytes !== 0) {
    notes.push(`Rounding size to boundary between physical extents: ${formatDisplaySize(Math.ceil(req.bytes / extentBytes) * extentBytes)}.`);
  }
  const size = (n: number): string => `${formatDisplaySize(n * extentBytes)} (${n} extents)`;
  notes.push(`Size of logical volume ${lvPath} changed from ${size(fromExtents)} to ${size(toExtents)}.`);
  return notes;
}
