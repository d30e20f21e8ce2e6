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
 * The in-use guard of a logical volume, as src/disk's guard is for an image: a process using the
 * LV holds a shared flock on `<lock dir>/L_<lv uuid>`; a destructive tool (mkfs) takes it
 * exclusively and is refused with "device busy" while anyone else has the LV open. Host-local,
 * like the image guard. Returns the release function.
 */
export function acquireLvGuard(lvName: string, lvUuid: string, mode: 'shared' | 'exclusive'): () => void {
  const dir = lockDir();
  fs.mkdirSync(dir, { recursive: true });
  const fd = fs.openSync(path.join(dir, `L_${lvUuid}`), 'a');
  try {
    fsExt.flockSync(fd, mode === 'shared' ? 'shnb' : 'exnb');
  } catch (err) {
    fs.closeSync(fd);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') throw new SanboxError('EBUSY', `${lvName}: device busy: logical volume in use by another process`, { device: lvName });
    throw err;
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    fs.closeSync(fd);
  };
}
