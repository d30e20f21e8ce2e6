// Host-local locks for metadata changes, like lvm2's local file locking (locking_type 1): an
// exclusive flock on `<lock dir>/V_<vg>` around read-modify-commit of a VG, and on `P_orphans`
// when orphan PVs are taken or given back. Two sanbox commands on one host changing the same VG
// are serialized, so both cannot commit the same seqno. Cluster-wide locking (lvmlockd-style,
// lvm2.md §7) is later work and will wrap the same places.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fsExt from 'fs-ext';
import { SanboxError } from '../errors.js';
import { lockHolders as flockHolders } from '../disk/in-use-guard.js';
import { isValidLvmName } from '../format/lvm/vg-text.js';
import { VG_LOCK_POLL_MS, VG_LOCK_WAIT_MS } from '../timing.js';
export { VG_LOCK_WAIT_MS };

/** Where the lock files live; SANBOX_LOCK_DIR overrides (tests, or several hosts' worth). */
export const LOCK_DIR_ENV = 'SANBOX_LOCK_DIR';
export const ORPHAN_LOCK = 'P_orphans';

export function lockDir(): string {
  return process.env[LOCK_DIR_ENV] ?? path.join(os.tmpdir(), 'sanbox-lvm-locks');
}

async function acquire(name: string, waitMs: number): Promise<number> {
  const dir = lockDir();
  fs.mkdirSync(dir, { recursive: true });
  const fd = fs.openSync(path.join(dir, name), 'a');
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      fsExt.flockSync(fd, 'exnb');
      return fd;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') {
        fs.closeSync(fd);
        throw err;
      }
    }
    if (Date.now() > deadline) {
      fs.closeSync(fd);
      throw new SanboxError('EBUSY', `lock ${name} is held by another sanbox command for more than ${waitMs} ms (lock file ${path.join(dir, name)})`);
    }
    await new Promise((r) => setTimeout(r, VG_LOCK_POLL_MS));
  }
}

/** Runs `fn` holding the named locks (taken in sorted order, so two commands cannot deadlock). */
export async function withLocks<T>(names: string[], fn: () => Promise<T>, waitMs = VG_LOCK_WAIT_MS): Promise<T> {
  const fds: number[] = [];
  try {
    for (const n of [...new Set(names)].sort()) fds.push(await acquire(n, waitMs));
    return await fn();
  } finally {
    for (const fd of fds.reverse()) fs.closeSync(fd);
  }
}

/** The lock file of a VG; a name that is not a valid VG name never reaches the file system. */
export function vgLockName(vg: string): string {
  if (!isValidLvmName(vg)) throw new SanboxError('EINVAL', `invalid VG name '${vg}' (letters, digits, + _ . -; not starting with -; at most 127)`);
  return `V_${vg}`;
}

/**
 * How a process holds a logical volume's in-use guard (host-local, like the image guard):
 *   shared     a plain opener: it holds no LV lock, so a cluster layout change cannot lock it out
 *              (a node's plain opener also holds the LV's open claim in the cluster's lockspace,
 *              which changers on every host see: src/volume/open-claim.ts)
 *   locked     an opener holding the LV's cluster lock (src/volume/locked-lv.ts): a layout change
 *              locks it out through that lock
 *   exclusive  a change without the cluster (lvreduce, mkfs): refused while anyone has the LV open
 *   lockout    a cluster layout change (src/volume/lockout.ts): refused while a plain opener has
 *              the LV open; lock-holding openers are left to the LV lock
 * Two flock files per LV: `L_<uuid>` (every opener shared; `exclusive` takes it exclusively) and
 * `P_<uuid>` (plain openers shared; `lockout` takes it exclusively). So a lock-out never meets a
 * writer it cannot stop (review finding 1: the node's fixed `--volume VG/LV` device and local
 * activations hold no LV lock).
 */
export type LvGuardMode = 'shared' | 'locked' | 'exclusive' | 'lockout';

/** Takes the LV's in-use guard in `mode` without waiting, or throws EBUSY naming the openers. Returns the release function. */
export function acquireLvGuard(lvName: string, lvUuid: string, mode: LvGuardMode): () => void {
  const dir = lockDir();
  fs.mkdirSync(dir, { recursive: true });
  const files: [string, 'shnb' | 'exnb'][] =
    mode === 'shared' ? [[`L_${lvUuid}`, 'shnb'], [`P_${lvUuid}`, 'shnb']]
    : mode === 'locked' ? [[`L_${lvUuid}`, 'shnb']]
    : mode === 'exclusive' ? [[`L_${lvUuid}`, 'exnb']]
    : [[`P_${lvUuid}`, 'exnb']];
  const fds: number[] = [];
  try {
    for (const [name, how] of files) fds.push(flockOne(path.join(dir, name), how, lvName, mode));
  } catch (err) {
    for (const fd of fds) fs.closeSync(fd);
    throw err;
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    for (const fd of fds) fs.closeSync(fd);
  };
}

function flockOne(file: string, how: 'shnb' | 'exnb', lvName: string, mode: LvGuardMode): number {
  const fd = fs.openSync(file, 'a');
  try {
    fsExt.flockSync(fd, how);
  } catch (err) {
    fs.closeSync(fd);
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') throw err;
    if (mode === 'lockout') {
      const pids = flockHolders(file);
      throw openedWithoutLvLock(lvName, `another process${pids.length ? ` (pid ${pids.join(', ')})` : ''}`);
    }
    throw new SanboxError('EBUSY', `${lvName}: device busy: logical volume in use by another process`, { device: lvName });
  }
  return fd;
}

/**
 * A layout change refused because `who` (a process of this host, or a node's open claim:
 * src/volume/open-claim.ts) has the LV open without its cluster lock and so cannot be locked out.
 */
export function openedWithoutLvLock(lvName: string, who: string): SanboxError {
  return new SanboxError('EBUSY', `${lvName}: in use by ${who} without the logical volume's cluster lock, which a layout change cannot lock out; not changed (close it, or open it under the lock)`, { device: lvName });
}
