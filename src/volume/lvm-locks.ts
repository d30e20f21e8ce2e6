// LVM's cluster locks, named and taken as lvmlockd takes them (reference/lvm2.md §7), through
// sanbox's lock manager (src/dlm). The one place that knows the names and modes:
//
// | lock   | resource                  | held                                   | modes                    |
// |--------|---------------------------|----------------------------------------|--------------------------|
// | global | `lvm_global:GLLK`         | for one command                        | sh: VG list; ex: vgcreate, vgremove, pvcreate, pvremove, vgextend, vgreduce |
// | VG     | `lvm_<VG>:VGLK`           | for one command                        | sh: read/report; ex: any metadata change |
// | LV     | `lvm_<VG>:<LV uuid dashed>` | from activation until deactivation   | ex: -aey; sh: -asy       |
// | open claim | `lvm_<VG>:<LV uuid dashed>:plain` | while a node has the LV open without its LV lock | sh only (src/volume/open-claim.ts) |
//
// lvmlockd keeps one DLM lockspace per VG (`lvm_<VG>`) and the global lock in `lvm_global`; a sanbox
// cluster has one lockspace, so the lockspace name is the resource's prefix. Modes map as lvmlockd's
// dlm back end maps them: sh → PR, ex → EX.
//
// The VG lock's value block carries lvmlockd's val_blk (src/format/lvm-val-blk.ts): an ex holder
// that committed a new seqno writes it when it lets go; a reader that scanned an older seqno than
// the value says re-reads (§7.6).
//
// Conflicts: the global and VG locks wait (bounded by the caller's timeout), as lvmlockd's retries
// do; an LV lock conflict fails at once naming the holder nodes, as lvmlockd's LV locks do.

import { dashId } from '../format/lvm/uuid.js';
import { decodeValBlk, encodeValBlk, type ValBlk } from '../format/lvm-val-blk.js';
import { Mode, modeName } from '../dlm/compat-matrix.js';
import type { LockOptions, LockspaceSnapshot, ReleaseOptions } from '../dlm/lock-manager.js';
import { RESOURCE_NAME_BYTES_MAX } from '../format/lockspace.js';
import { assert, SanboxError } from '../errors.js';

/** lvmlockd's lock modes (un is "not held"). */
export type LvmMode = 'sh' | 'ex';

/** lvmlockd-dlm.c's mapping. */
export function dlmMode(m: LvmMode): Mode {
  return m === 'ex' ? Mode.EX : Mode.PR;
}

export const GLOBAL_LOCK = 'lvm_global:GLLK';

/** lock_args lvmlockd's dlm back end writes (reference/lvm2.md §7.4): every LV of a shared VG has this. */
export const DLM_LV_LOCK_ARGS = 'dlm';
/** A shared VG's lock_args: the args version, then the dlm cluster name. */
export function dlmVgLockArgs(clusterName: string): string {
  return `1.0.0:${clusterName}`;
}
const LOCKSPACE_PREFIX = 'lvm_';
const VG_LOCK_SUFFIX = ':VGLK';
/** A dashed LV uuid is 38 characters (6-4-4-4-4-4-6, reference/lvm2.md §6). */
const DASHED_UUID_CHARS = 38;
/**
 * How much of a VG name the VG lock's resource keeps: the whole 64-byte resource name
 * (RESOURCE_NAME_BYTES_MAX, DLM_RESNAME_MAXLEN) minus `lvm_` and `:VGLK`. lvmlockd truncates
 * lockspace names the same way (dlm: 60 chars) and vgcreate refuses a colliding prefix.
 */
export const VG_NAME_IN_VG_LOCK_MAX = RESOURCE_NAME_BYTES_MAX - LOCKSPACE_PREFIX.length - VG_LOCK_SUFFIX.length;
/** The same for an LV lock: `lvm_` + VG + `:` + the dashed uuid must fit in 64 bytes. */
export const VG_NAME_IN_LV_LOCK_MAX = RESOURCE_NAME_BYTES_MAX - LOCKSPACE_PREFIX.length - 1 - DASHED_UUID_CHARS;

/**
 * The lockspace part `lvm_<VG>` of a VG's resources, cut to `max` bytes of the VG name. Two VGs whose
 * names share the first `max` bytes share the VG lock (they serialize, never corrupt: the value
 * block's seqno then also moves for the other VG, so a reader re-reads more often than needed);
 * their LV locks never collide, the uuid tells them apart.
 */
function lockspaceOf(vg: string, max: number): string {
  // VG names are ASCII (isValidLvmName), so bytes = characters.
  return `${LOCKSPACE_PREFIX}${vg.slice(0, max)}`;
}

export function vgLockResource(vg: string): string {
  return `${lockspaceOf(vg, VG_NAME_IN_VG_LOCK_MAX)}${VG_LOCK_SUFFIX}`;
}

/** `lvUuid` raw (32 characters) or dashed; the resource always names it dashed, as lvmlockd does. */
export function lvLockResource(vg: string, lvUuid: string): string {
  const dashed = lvUuid.includes('-') ? lvUuid : dashId(lvUuid);
  assert(dashed.length === DASHED_UUID_CHARS, `LV uuid '${lvUuid}' is not 32 characters`);
  return `${lockspaceOf(vg, VG_NAME_IN_LV_LOCK_MAX)}:${dashed}`;
}

/** The suffix of an open claim's resource: not an LV lock (parseLvLockResource passes it over: no uuid after the last colon). */
const OPEN_CLAIM_SUFFIX = ':plain';
/** The same bound for an open claim: `lvm_` + VG + `:` + the dashed uuid + `:plain` in 64 bytes. */
export const VG_NAME_IN_OPEN_CLAIM_MAX = VG_NAME_IN_LV_LOCK_MAX - OPEN_CLAIM_SUFFIX.length;

/**
 * The cluster-wide in-use claim of a node that has the LV open without its LV lock (a node's fixed
 * `--volume VG/LV`, a local activation, a plain provider open): sanbox's own, lvmlockd has none
 * (src/volume/open-claim.ts). The VG name is cut shorter than in the LV lock; the uuid tells LVs apart.
 */
export function lvOpenClaimResource(vg: string, lvUuid: string): string {
  const lvLock = lvLockResource(vg, lvUuid);
  return `${lockspaceOf(vg, VG_NAME_IN_OPEN_CLAIM_MAX)}${lvLock.slice(lvLock.lastIndexOf(':'))}${OPEN_CLAIM_SUFFIX}`;
}

/** An open claim's resource taken apart as parseLvLockResource takes an LV lock's; undefined for any other resource. */
export function parseLvOpenClaimResource(resource: string): { vgPrefix: string; lvUuid: string } | undefined {
  return resource.endsWith(OPEN_CLAIM_SUFFIX) ? parseLvLockResource(resource.slice(0, -OPEN_CLAIM_SUFFIX.length)) : undefined;
}

/** lvm2's uuid alphabet, dashed 6-4-4-4-4-4-6 (reference/lvm2.md §6). */
const DASHED_UUID_RE = /^[0-9A-Za-z!#]{6}-(?:[0-9A-Za-z!#]{4}-){5}[0-9A-Za-z!#]{6}$/;

/** An LV lock's resource taken apart: the VG name as the resource keeps it (maybe cut) and the dashed LV uuid; undefined for any other resource. */
export function parseLvLockResource(resource: string): { vgPrefix: string; lvUuid: string } | undefined {
  if (!resource.startsWith(LOCKSPACE_PREFIX)) return undefined;
  const colon = resource.lastIndexOf(':');
  const lvUuid = resource.slice(colon + 1);
  if (colon < 0 || !DASHED_UUID_RE.test(lvUuid)) return undefined;
  return { vgPrefix: resource.slice(LOCKSPACE_PREFIX.length, colon), lvUuid };
}

/** What a held lock offers (src/dlm's Lock has this shape; so may a lock held through a node's control channel). */
export interface HeldLock {
  readonly mode: Mode | null;
  readonly lvb: Buffer;
  readonly lvbValid: boolean;
  unlock(opts?: ReleaseOptions): Promise<void>;
}

/** What the LVM locks need of a lock manager (src/dlm's Lockspace has this shape). */
export interface LockService {
  readonly nodeId: number;
  lock(resource: string, mode: Mode, opts?: LockOptions): Promise<HeldLock>;
  /** For messages naming who holds a resource. */
  snapshot?(): Promise<LockspaceSnapshot>;
  /** The same from one read of the resource's window, fenced holders left out (src/dlm's Lockspace.holders); preferred. */
  holders?(resource: string): Promise<{ nodeId: number; mode: Mode }[]>;
}

/** Nodes other than `self` that hold `resource` granted (for a one-line refusal naming them). */
export async function holdersOf(ls: LockService, resource: string, self = ls.nodeId): Promise<{ nodeId: number; mode: string }[]> {
  if (ls.holders !== undefined) return (await ls.holders(resource)).filter((h) => h.nodeId !== self).map((h) => ({ nodeId: h.nodeId, mode: modeName(h.mode) }));
  // A service that cannot say who holds what must not read as "nobody": a lock-out and the open
  // claim's refusal decide on this list (review 7, L4a).
  if (ls.snapshot === undefined) throw new SanboxError('EINVAL', `node ${ls.nodeId}: this lock service cannot list the holders of ${resource}`);
  const snap = await ls.snapshot();
  const want = Buffer.from(resource);
  return snap.locks
    .filter((l) => l.grantedMode !== null && l.nodeId !== self && l.resource.equals(want))
    .map((l) => ({ nodeId: l.nodeId, mode: modeName(l.grantedMode as Mode) }));
}

export interface LockWait {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Runs `fn` holding the global lock (creating and removing VG names, orphan PVs). */
export async function withGlobalLock<T>(ls: LockService, mode: LvmMode, fn: () => Promise<T>, wait: LockWait = {}): Promise<T> {
  const lock = await ls.lock(GLOBAL_LOCK, dlmMode(mode), wait);
  try {
    return await fn();
  } finally {
    await lock.unlock();
  }
}

/**
 * A VG lock not had (timed out, or NOQUEUE): one line naming the VG and the nodes holding its lock
 * (issue 18's bad input: a command on a VG another node is changing). Other errors pass through.
 */
async function vgLockBusy(ls: LockService, vg: string, resource: string, mode: LvmMode, wait: LockWait, err: unknown): Promise<never> {
  if (!(err instanceof SanboxError) || (err.code !== 'ETIMEDOUT' && err.code !== 'EAGAIN')) throw err;
  const holders = await holdersOf(ls, resource).catch(() => []);
  if (holders.length === 0) throw err;
  const changing = holders.some((h) => h.mode === 'EX' || h.mode === 'PW');
  const who = holders.map((h) => `node ${h.nodeId}`).join(', ');
  const modes = [...new Set(holders.map((h) => h.mode))].join('/');
  const within = err.code === 'ETIMEDOUT' && wait.timeoutMs !== undefined ? ` within ${wait.timeoutMs} ms` : ' at once';
  throw new SanboxError(err.code, `volume group ${vg} is being ${changing ? 'changed' : 'read'} by ${who}: its VG lock ${resource} is held ${modes}; node ${ls.nodeId} did not get it ${mode === 'ex' ? 'exclusive' : 'shared'}${within}`, { cause: err });
}

/** What `fn` of withVgLock sees and says. */
export interface VgLockHold {
  readonly vg: string;
  readonly mode: LvmMode;
  /** The val_blk at grant; undefined when never written, or when the value block was invalidated (its last ex holder died). */
  readonly value: ValBlk | undefined;
  /** True when the value block was invalidated: a reader must not trust any scan it made before the lock. */
  readonly valueInvalid: boolean;
  /** Records the seqno an ex holder committed: written into the value block at release. */
  committed(seqno: number): void;
  /** Records that an ex holder removed the VG (VBF_REMOVED at release). */
  removed(): void;
}

/**
 * Runs `fn` holding the VG lock. An ex holder that called committed()/removed() writes the new
 * val_blk at release; one that did not leaves the value as it was.
 */
export async function withVgLock<T>(ls: LockService, vg: string, mode: LvmMode, fn: (hold: VgLockHold) => Promise<T>, wait: LockWait = {}): Promise<T> {
  const resource = vgLockResource(vg);
  const lock = await ls.lock(resource, dlmMode(mode), wait).catch((err: unknown) => vgLockBusy(ls, vg, resource, mode, wait, err));
  let next: ValBlk | undefined;
  let released = false;
  try {
    const value = lock.lvbValid ? decodeValBlk(lock.lvb, { device: resource }) : undefined;
    const hold: VgLockHold = {
      vg,
      mode,
      value,
      valueInvalid: !lock.lvbValid,
      committed(seqno) {
        assert(mode === 'ex', `a ${mode} holder of ${resource} cannot publish a seqno`);
        next = { seqno, removed: false };
      },
      removed() {
        assert(mode === 'ex', `a ${mode} holder of ${resource} cannot mark the VG removed`);
        next = { seqno: next?.seqno ?? value?.seqno ?? 0, removed: true };
      },
    };
    const out = await fn(hold);
    released = true;
    await lock.unlock(next === undefined ? {} : { lvb: encodeValBlk(next, lock.lvb.length) });
    return out;
  } finally {
    // On an error the value is left as it was: what fn committed before failing is found by the
    // next reader's scan (the seqno on disk is ahead of the value, never behind it).
    if (!released) await lock.unlock().catch(() => undefined);
  }
}

export class LvLockConflict extends SanboxError {
  constructor(
    message: string,
    readonly holders: { nodeId: number; mode: string }[],
  ) {
    super('EAGAIN', message);
  }
}

/**
 * Takes an LV lock (activation) and returns it held: the caller keeps it until deactivation. A
 * conflict fails at once (no queueing), naming the nodes that hold it.
 */
export async function lockLv(ls: LockService, vg: string, lv: { name: string; uuid: string }, mode: LvmMode, opts: Pick<LockWait, 'signal'> & { what?: string } = {}): Promise<HeldLock> {
  const resource = lvLockResource(vg, lv.uuid);
  try {
    return await ls.lock(resource, dlmMode(mode), { noqueue: true, ...(opts.signal !== undefined ? { signal: opts.signal } : {}) });
  } catch (err) {
    throw await lvLockConflict(ls, vg, lv, mode, err, opts.what);
  }
}

/**
 * What a NOQUEUE take of an LV lock that failed with `err` means: EAGAIN becomes the one-line
 * conflict naming the holder nodes; any other error is returned as is.
 */
export async function lvLockConflict(ls: LockService, vg: string, lv: { name: string; uuid: string }, mode: LvmMode, err: unknown, what?: string): Promise<unknown> {
  if (!(err instanceof SanboxError) || err.code !== 'EAGAIN') return err;
  const holders = await holdersOf(ls, lvLockResource(vg, lv.uuid)).catch(() => []);
  const who = holders.length ? holders.map((h) => `node ${h.nodeId} (${h.mode === 'EX' ? 'exclusive' : 'shared'})`).join(', ') : 'another node';
  return new LvLockConflict(`${vg}/${lv.name}: LV locked by ${who}; ${what ?? `${mode === 'ex' ? 'exclusive' : 'shared'} activation`} refused on node ${ls.nodeId}`, holders);
}
