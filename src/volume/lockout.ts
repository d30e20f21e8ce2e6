// The changer's side of the lock-out (issue 18 item 3): a change to LVs' layouts (lvextend,
// lvreduce, lvremove, a pvmove chunk) by any node takes the VG lock EX, then the lock of every LV
// it changes EX. Nodes doing I/O through those LVs hold their LV lock PR or EX (locked-lv.ts); the
// request makes the lock manager send them a blocking notice, they drain and release, and the
// changer's grant means no node does I/O through the old layout any more. The change commits
// (new seqno) while the changer holds both; it then releases the LV locks and the VG lock, writing
// the new seqno into the VG lock's value block as lvmlockd does (lvm2.md §7.6), and the holders
// re-read the layout (they queued for the VG lock behind the changer).
//
// With `nowait` the change fails at once, naming the holders (lvmlockd's behaviour: "LV locked by
// other host"). Otherwise the LV locks must be had within `boundMs` (src/timing.ts
// layoutLockoutBoundMs), else the change fails naming who did not let go, with nothing written.
//
// An opener without the LV lock cannot be locked out: the change is refused naming it, before any
// holder is asked — another node by its open claim (src/volume/open-claim.ts), a process of this
// host by the host's flock (vg-lock.ts).

import { pauseAt } from '../disk/pause-point.js';
import { SanboxError } from '../errors.js';
import { Mode } from '../dlm/compat-matrix.js';
import { DlmError } from '../dlm/lock-manager.js';
import type { VgModel } from '../format/lvm/vg-model.js';
import { acquireLvGuard } from './vg-lock.js';
import { refuseOpenClaims } from './open-claim.js';
import { holdersOf, lvLockResource, vgLockResource, withVgLock, type HeldLock, type LockService } from './lvm-locks.js';

export interface LockoutOptions {
  /** Fail at once if a node holds an LV lock (or the VG lock), naming it. */
  nowait: boolean;
  /** Bound on the lock-out: the LV locks are granted within this, or the change fails. */
  boundMs: number;
  /** Bound on waiting for the VG lock (another changer ahead of us). */
  vgTimeoutMs: number;
  log?: (msg: string) => void;
  /**
   * Checked under the VG lock EX, before any holder is asked to let go (no activation can begin
   * meanwhile: it reads the VG under its lock): a throw refuses the change, nothing disturbed.
   * What it returns is released once the change has committed (or failed), before the VG lock:
   * lvreduce/lvremove refuse an LV with a mounted ocfs2 on it here, and hold the volume's
   * superblock lock from the check to the commit, so no mount begins in between.
   */
  vet?: (lvs: { name: string; id: string }[]) => Promise<(() => Promise<void>) | void>;
}

/** What the lock-out of one change cost. */
export interface LockoutReport {
  /** Nodes that held an LV lock when the change asked for it (they let go). */
  holders: number[];
  /** From asking for the LV locks to holding them all. */
  lockoutMs: number;
  /** From holding the VG lock to releasing it (lock-out, commit, release). */
  changeMs: number;
  /** The VG seqno after the change. */
  seqno: number;
}

/** A node's hold on a lock, as the lockspace shows it. */
export interface LockHolder {
  nodeId: number;
  mode: string;
}

/** Who holds (granted) each of `resources`, other than this node. */
export async function lockHolders(ls: LockService, resources: string[]): Promise<Map<string, LockHolder[]>> {
  const out = new Map<string, LockHolder[]>();
  for (const r of resources) out.set(r, await holdersOf(ls, r));
  return out;
}

function describe(holders: LockHolder[]): string {
  return holders.map((h) => `node ${h.nodeId} (${h.mode})`).join(', ');
}

/**
 * Runs `change` (which reads, edits and commits the VG) locked out: VG lock EX, then EX on the
 * lock of each LV `affected` names (given the VG read under the VG lock), then the change.
 * `readVg` reads the VG's metadata (before, for the LV uuids; after, for the new seqno).
 */
export async function withLayoutLockout<T>(
  ls: LockService,
  vgName: string,
  affected: (vg: VgModel) => { name: string; id: string }[],
  readVg: () => Promise<VgModel>,
  o: LockoutOptions,
  change: () => Promise<T>,
): Promise<{ result: T; report: LockoutReport }> {
  let entered = false;
  let releaseClaims = (): void => undefined;
  try {
    return await withVgLock(
      ls,
      vgName,
      'ex',
      async (hold) => {
        entered = true;
        const t0 = performance.now();
        const lvs = affected(await readVg());
        const releaseVet = await o.vet?.(lvs);
        try {
          pauseAt('lockout-vetted', `after the checks of the change to ${vgName}/${lvs.map((l) => l.name).join(',')} and before its lock-out`);
          const resources = lvs.map((lv) => lvLockResource(vgName, lv.id));
          const held = await lockHolders(ls, resources);
          const holders = [...new Set([...held.values()].flat().map((h) => h.nodeId))].sort((a, b) => a - b);
          // --nowait must not disturb the holders: a NOQUEUE request that reached the queue would
          // send them a blocking notice (and they would let go for nothing), so a held lock fails here.
          const firstHeld = o.nowait ? lvs.findIndex((_, i) => held.get(resources[i]!)!.length > 0) : -1;
          if (firstHeld >= 0) throw new SanboxError('EBUSY', `${vgName}/${lvs[firstHeld]!.name} is in use by ${describe(held.get(resources[firstHeld]!)!)}; not changed (--nowait)`);
          // A node with the LV open but not under its LV lock would go on writing through the old
          // layout: refused, naming it — a process on this host by the host's flock (by its pid;
          // review finding 1), another node by its open claim in the lockspace (read, no notice
          // sent; src/volume/open-claim.ts). The VG lock EX and the flock are held past the
          // commit, so no plain opener opens meanwhile.
          const claims: (() => void)[] = [];
          releaseClaims = () => claims.forEach((r) => r());
          for (const lv of lvs) claims.push(acquireLvGuard(`${vgName}/${lv.name}`, lv.id, 'lockout'));
          await refuseOpenClaims(ls, vgName, lvs);
          if (holders.length) o.log?.(`${vgName}: asking ${holders.map((n) => `node ${n}`).join(', ')} to let go of ${lvs.map((l) => l.name).join(', ')}`);
          const tLock = performance.now();
          const lvLocks: HeldLock[] = [];
          try {
            for (const [i, lv] of lvs.entries()) lvLocks.push(await lockOut(ls, vgName, lv.name, resources[i]!, o, Math.max(0, o.boundMs - (performance.now() - tLock))));
            const lockoutMs = performance.now() - tLock;
            const result = await change();
            const seqno = (await readVg()).seqno;
            // The new seqno goes into the VG lock's value block at release (lvmlockd's val_blk).
            hold.committed(seqno);
            return { result, report: { holders, lockoutMs, changeMs: performance.now() - t0, seqno } };
          } finally {
            for (const l of lvLocks.reverse()) await l.unlock().catch(() => undefined);
          }
        } finally {
          // After the commit (or the failure) and before the VG lock goes: what the vet held (a
          // volume's superblock lock) is let go; a mount waiting for it then sees the new layout.
          await releaseVet?.().catch(() => undefined);
        }
      },
      { timeoutMs: o.vgTimeoutMs },
    );
  } catch (err) {
    if (!entered && err instanceof DlmError && err.code === 'ETIMEDOUT') {
      const h = (await lockHolders(ls, [vgLockResource(vgName)])).get(vgLockResource(vgName))!;
      throw new SanboxError('EBUSY', `volume group ${vgName} is being changed by ${h.length ? describe(h) : 'another node'}; its lock was not had within ${o.vgTimeoutMs} ms`);
    }
    throw err;
  } finally {
    releaseClaims();
  }
}

/** The LV lock EX within `leftMs` (NOQUEUE with --nowait), or a one-line refusal naming the holders. */
async function lockOut(ls: LockService, vgName: string, lvName: string, resource: string, o: LockoutOptions, leftMs: number): Promise<HeldLock> {
  try {
    return await ls.lock(resource, Mode.EX, { timeoutMs: leftMs, noqueue: o.nowait });
  } catch (err) {
    if (!(err instanceof DlmError) || (err.code !== 'EAGAIN' && err.code !== 'ETIMEDOUT')) throw err;
    const h = (await lockHolders(ls, [resource])).get(resource)!;
    const who = h.length ? describe(h) : 'another node';
    throw new SanboxError(
      'EBUSY',
      err.code === 'EAGAIN' ? `${vgName}/${lvName} is in use by ${who}; not changed (--nowait)` : `${vgName}/${lvName} is in use by ${who}, which did not let go within ${o.boundMs} ms; not changed`,
    );
  }
}
