// The in-use guard: every process that uses a disk holds a shared flock(2) on the image file;
// destructive tools (create --force, pvcreate, mkfs) take it exclusively and fail with "device
// busy" while anyone else has it. flock belongs to the open file description, so the guard uses
// its own fd, separate from the I/O fd, and separate from the fence gate's lock files
// (ARCHITECTURE.md: "the gate must not be the in-use guard's lock").

import fs from 'node:fs';
import fsExt from 'fs-ext';
import { DiskError } from '../errors.js';

export type GuardMode = 'shared' | 'exclusive';

export class InUseGuard {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    readonly mode: GuardMode,
    fd: number,
  ) {
    this.fd = fd;
  }

  /** Takes the guard without waiting; throws EBUSY naming the device (and holders) if it cannot. */
  static acquire(path: string, mode: GuardMode): InUseGuard {
    const fd = fs.openSync(path, 'r');
    try {
      // Non-blocking: a blocking flockSync would freeze the event loop, the async form would
      // occupy a libuv thread (baselines.md A1).
      fsExt.flockSync(fd, mode === 'shared' ? 'shnb' : 'exnb');
    } catch (err) {
      fs.closeSync(fd);
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN' || (err as NodeJS.ErrnoException).code === 'EWOULDBLOCK') {
        const holders = lockHolders(path).filter((pid) => pid !== process.pid);
        const who = holders.length > 0 ? ` (held by pid ${holders.join(', ')})` : '';
        throw new DiskError('EBUSY', `${path}: device busy: in use by another process${who}`, { device: path });
      }
      throw err;
    }
    return new InUseGuard(path, mode, fd);
  }

  get held(): boolean {
    return this.fd !== undefined;
  }

  release(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    // Closing the descriptor drops its flock.
    fs.closeSync(fd);
  }
}

/** Is anyone (including this process through another open) holding the guard? Takes nothing. */
export function probeInUse(path: string): { inUse: boolean; holderPids: number[] } {
  try {
    InUseGuard.acquire(path, 'exclusive').release();
    return { inUse: false, holderPids: [] };
  } catch (err) {
    if (err instanceof DiskError && err.code === 'EBUSY') return { inUse: true, holderPids: lockHolders(path) };
    throw err;
  }
}

/** Pids holding a flock on the file, from /proc/locks (Linux); empty where that is unavailable. */
export function lockHolders(path: string): number[] {
  let text: string;
  let ino: number;
  try {
    ino = fs.statSync(path).ino;
    text = fs.readFileSync('/proc/locks', 'latin1');
  } catch {
    return [];
  }
  const pids = new Set<number>();
  // Line shape: "1: FLOCK  ADVISORY  READ  1234 fd:01:5678 0 EOF" (major:minor:inode).
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1] !== 'FLOCK' || f.length < 6) continue;
    const inode = Number(f[5]?.split(':')[2]);
    const pid = Number(f[4]);
    if (inode === ino && Number.isInteger(pid)) pids.add(pid);
  }
  return [...pids].sort((a, b) => a - b);
}
