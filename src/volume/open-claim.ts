// The cluster-wide in-use claim of a node that has an LV open without the LV's lock (issue 18
// item 3: no write lands through a stale layout). A node's fixed `--volume VG/LV`, a local VG's
// activation, a plain provider open: such an opener does not follow a layout change (it has no
// LV lock to be asked to let go of), so a change must not commit while it has the LV open. The
// host's flock (vg-lock.ts, kind `shared`) shows it only to changers on the same host; over
// `nbd://` the other hosts would not see it. So a node's plain opener also holds, in the cluster's
// lockspace, the claim `lvm_<VG>:<LV uuid>:plain` (lvm-locks.ts lvOpenClaimResource) in PR:
//
//   opener:   VGLK PR, read the LV's layout and open it, claim PR, VGLK released; the claim is
//             released when the device is closed (after its PVs are).
//   changer:  VGLK EX (withLayoutLockout), list the claim's holders — a read, no request, so no
//             blocking notice and nobody disturbed —, any holder: refused in one line naming the
//             node(s), nothing written (as --nowait does for LV locks).
//
// Why this is enough: the claim is granted while the opener holds VGLK PR, so before the changer's
// VGLK EX is granted (the changer then sees it) or after the changer released VGLK EX (the opener
// then reads the committed layout). VGLK EX is held from the check to the commit, so no opener
// comes in between. A node that died with the LV open keeps its claim until it is fenced (the
// lockspace leaves a fenced incarnation's locks out: Lockspace.holders), which is right: a stalled
// node could resume and write again through the layout it read. The claim is never asked for in
// EX, so its holders never get a notice and nobody waits for it.

import { withVgLock, holdersOf, lvOpenClaimResource, type LockService } from './lvm-locks.js';
import { Mode } from '../dlm/compat-matrix.js';
import { openedWithoutLvLock } from './vg-lock.js';

/** What the claim needs of an opened LV: its uuid, and a hook run (awaited) when it closes. */
export interface ClaimableLv {
  readonly lvId: string;
  onClose(fn: () => Promise<void>): void;
  close(): Promise<void>;
}

/**
 * Opens VG `vg`'s LV with `open` (which reads its layout) under the VG lock PR, and holds the LV's
 * open claim PR until the device is closed. `lockTimeoutMs` bounds the wait for the VG lock (a
 * change of the VG in progress) and for the claim.
 */
export async function openClaimed<D extends ClaimableLv>(ls: LockService, vg: string, lockTimeoutMs: number, open: () => Promise<D>): Promise<D> {
  return withVgLock(
    ls,
    vg,
    'sh',
    async () => {
      const dev = await open();
      try {
        const claim = await ls.lock(lvOpenClaimResource(vg, dev.lvId), Mode.PR, { timeoutMs: lockTimeoutMs });
        // A fenced node's release is refused: its claim is left to the fence (holders leaves it out).
        dev.onClose(() => claim.unlock().catch(() => undefined));
      } catch (err) {
        await dev.close();
        throw err;
      }
      return dev;
    },
    { timeoutMs: lockTimeoutMs },
  );
}

/** No node is "self" for holdersOf: the changer's own node is named too when it holds the claim. */
const ANY_NODE = -1;

/**
 * Under the VG lock EX of a layout change: refuses the change (one line, naming the nodes) if any
 * node holds the open claim of one of `lvs`. Nothing is requested, so nobody is disturbed. Through
 * a running node the node answers for itself too (commands.ts `holders`); a process joined as the
 * node for the command is the node's only incarnation, with no plain opener but itself.
 */
export async function refuseOpenClaims(ls: LockService, vg: string, lvs: { name: string; id: string }[]): Promise<void> {
  for (const lv of lvs) {
    const holders = await holdersOf(ls, lvOpenClaimResource(vg, lv.id), ANY_NODE);
    if (holders.length > 0) throw openedWithoutLvLock(`${vg}/${lv.name}`, holders.map((h) => `node ${h.nodeId}`).join(', '));
  }
}
