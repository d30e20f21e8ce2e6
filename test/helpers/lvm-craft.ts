// Crafting LVM2 metadata that sanbox's own writers would never produce: orphan PVs on small sparse
// images, and arbitrary VG text committed into their metadata areas with a valid CRC (so a judge
// sees the text, not a checksum error). Used by the differential test against the real lvm2.

import crypto from 'node:crypto';
import fs from 'node:fs';
import { FileDisk } from '../../src/disk/file-disk.js';
import { encodeMdaHeader, EMPTY_LOCN, planTextWrite } from '../../src/format/lvm/mda-header.js';
import { dashId, idFromRandom } from '../../src/format/lvm/uuid.js';
import { planPvLayout, readPv, setPvUsed, writeNewPv } from '../../src/volume/pv.js';

export function randomId(rand: () => number): string {
  const bytes = Buffer.alloc(32);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rand() * 256);
  return idFromRandom(bytes);
}

export { dashId };

/** A sparse image with an orphan PV (one metadata area at 4 KiB, data at 1 MiB); returns its PV id. */
export async function makeOrphanPv(image: string, sizeBytes: number, pvId: string = idFromRandom(crypto.randomBytes(32))): Promise<string> {
  fs.writeFileSync(image, '');
  fs.truncateSync(image, sizeBytes);
  const dev = FileDisk.open(image, { guard: 'none' });
  try {
    await writeNewPv(dev, pvId, planPvLayout({ deviceSizeBytes: sizeBytes }));
  } finally {
    await dev.close();
  }
  return pvId;
}

/** Commits `text` (any text) into every metadata area of the PV on `image`, CRC-valid, marking the PV used. */
export async function commitRawText(image: string, text: string): Promise<void> {
  const dev = FileDisk.open(image, { guard: 'none' });
  try {
    // The PV is read without its text: a crafted text is allowed to be one sanbox rejects.
    const pv = await readPv(dev, { withoutText: true });
    if (!pv) throw new Error(`${image}: not a PV`);
    const bytes = Buffer.concat([Buffer.from(text, 'latin1'), Buffer.alloc(1)]);
    for (const m of pv.mdas) {
      const w = planTextWrite(m.area.sizeBytes, m.header.locns[0], bytes, { device: image, startBytes: m.area.offsetBytes });
      for (const piece of w.writes) await dev.write(piece.data, m.area.offsetBytes + piece.relBytes);
      await dev.write(encodeMdaHeader({ ...m.header, locns: [w.locn, EMPTY_LOCN] }), m.area.offsetBytes);
    }
    await setPvUsed(pv, true);
    await dev.flush();
  } finally {
    await dev.close();
  }
}
