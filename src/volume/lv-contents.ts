// Before a change that destroys an LV's data (lvremove, lvreduce): claim the LV — its in-use guard
// taken exclusively, so a process that has it open makes the change fail with "device busy", and
// none can open it until the change is done — and say what it holds (filesystem signatures), so
// the command can ask before destroying it. lvm2 likewise refuses to remove an open LV and asks
// before removing or reducing an active one.

import { probeSignatures, type SignatureHit } from '../disk/signature-probe.js';
import { openLv, withSession } from './manager.js';
import { acquireLvGuard } from './vg-lock.js';

export interface LvClaim {
  /** Signatures found at the start of the LV (ocfs2, ext4, a nested PV, …). */
  signatures: SignatureHit[];
  /** Gives the LV's in-use guard back. */
  release: () => void;
}

export async function claimLv(specs: string[], vgName: string, lvName: string): Promise<LvClaim> {
  const lvId = await withSession(specs, { readOnly: true, guard: 'none' }, async (s) => {
    const lv = s.vg(vgName).vg.lvs.find((l) => l.name === lvName);
    return lv?.id;
  });
  // An LV that does not exist has nothing to protect: the change itself reports it.
  if (lvId === undefined) return { signatures: [], release: () => undefined };
  const release = acquireLvGuard(`${vgName}/${lvName}`, lvId, 'exclusive');
  try {
    const dev = await openLv(specs, vgName, lvName, { readOnly: true, guard: 'none' });
    try {
      return { signatures: await probeSignatures(dev), release };
    } finally {
      await dev.close();
    }
  } catch (err) {
    release();
    throw err;
  }
}

/** "an ocfs2 volume (signature at offset 8192)" for messages. */
export function describeSignatures(hits: SignatureHit[]): string {
  return hits.map((h) => `${h.description} (signature at offset ${h.offsetBytes})`).join(' and ');
}
