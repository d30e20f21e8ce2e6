// Before a change that destroys an LV's data (lvremove, lvreduce): claim the LV — its in-use guard
// taken exclusively, so a process that has it open makes the change fail with "device busy", and
// none can open it until the change is done — and say what it holds (filesystem signatures), so
// the command can ask before destroying it. lvm2 likewise refuses to remove an open LV and asks
// before removing or reducing an active one.

import { probeSignatures, type SignatureHit } from '../disk/signature-probe.js';
import { SanboxError } from '../errors.js';
import { openLv, withSession } from './manager.js';
import { acquireLvGuard } from './vg-lock.js';

export interface LvClaim {
  /** Signatures found at the start of the LV (ocfs2, ext4, a nested PV, …). */
  signatures: SignatureHit[];
  /** Why the LV could not be read (a segment type sanbox does not map, a missing PV): its contents are unknown. */
  unreadable?: string;
  /** Gives the LV's in-use guard back. */
  release: () => void;
}

/**
 * `guard: false` when the change runs under the cluster lock-out (src/volume/lockout.ts): nodes
 * doing I/O through the LV under its LV lock are made to let go by the lock instead of refusing
 * the change. That is safe whatever the caller passes: the lock-out itself takes the LV's guard
 * in 'lockout' mode (vg-lock.ts), refusing while a process here has the LV open without the lock.
 */
export async function claimLv(specs: string[], vgName: string, lvName: string, guard = true): Promise<LvClaim> {
  const lvId = await withSession(specs, { readOnly: true, guard: 'none' }, async (s) => {
    const lv = s.vg(vgName).vg.lvs.find((l) => l.name === lvName);
    return lv?.id;
  });
  // An LV that does not exist has nothing to protect: the change itself reports it.
  if (lvId === undefined) return { signatures: [], release: () => undefined };
  const release = guard ? acquireLvGuard(`${vgName}/${lvName}`, lvId, 'exclusive') : () => undefined;
  let dev;
  try {
    dev = await openLv(specs, vgName, lvName, { readOnly: true, guard: 'none' });
  } catch (err) {
    // Not mappable here (thin, raid, … or a PV missing): the contents are unknown, which is a
    // reason to ask, not to refuse — lvm2 can remove such LVs and so can sanbox.
    if (err instanceof SanboxError && (err.code === 'EINVAL' || err.code === 'ENOENT')) return { signatures: [], unreadable: err.message, release };
    release();
    throw err;
  }
  try {
    return { signatures: await probeSignatures(dev), release };
  } catch (err) {
    release();
    throw err;
  } finally {
    await dev.close();
  }
}

/** What a claimed LV holds, for messages; undefined when nothing is known to be there. */
export function describeClaim(c: LvClaim): string | undefined {
  if (c.signatures.length) return describeSignatures(c.signatures);
  if (c.unreadable !== undefined) return `contents sanbox cannot read (${c.unreadable})`;
  return undefined;
}

/** "an ocfs2 volume (signature at offset 8192)" for messages. */
export function describeSignatures(hits: SignatureHit[]): string {
  return hits.map((h) => `${h.description} (signature at offset ${h.offsetBytes})`).join(' and ');
}
