// The in-use guard: every process that uses a disk holds a shared flock(2) on the image file;
// destructive tools (create --force, pvcreate, mkfs) take it exclusively and fail with "device
// busy" while anyone else has it. flock belongs to the open file description, so the guard uses
// its own fd, separate from the I/O fd, and separate from the fence gate's lock files
// (ARCHITECTURE.md: "the gate must not be the in-use guard's lock").

import fs from 'node:fs';
import fsExt from 'fs-ext';
import { DiskError } from '../errors.js';

export type GuardMode = 'shared' | 'exclusive';

/**
 * One disk can be reached by several paths: an image file and the loop device attached to it.
 * The guard locks every one of them, so `mkfs --force /dev/loop3` is refused while a node holds
 * the image behind it, and the other way round (issue 15: a volume was reformatted that way).
 */
export class InUseGuard {
  private fds: number[] | undefined;

  private constructor(
    readonly path: string,
    readonly mode: GuardMode,
    fds: number[],
  ) {
    this.fds = fds;
  }

  /** Takes the guard without waiting; throws EBUSY naming the device (and holders) if it cannot. */
  static acquire(path: string, mode: GuardMode): InUseGuard {
    const fds: number[] = [];
    try {
      for (const p of [path, ...diskAliases(path)]) fds.push(lockOne(p, mode, p === path ? undefined : path));
      // A block device is also opened O_EXCL, as mkfs does: the kernel refuses it while mounted
      // or held by device-mapper, whatever user-space locks say.
      if (mode === 'exclusive') for (const p of [path, ...diskAliases(path)]) if (isBlockDevice(p)) fds.push(openExclusive(p, path));
    } catch (err) {
      for (const fd of fds) fs.closeSync(fd);
      throw err;
    }
    return new InUseGuard(path, mode, fds);
  }

  get held(): boolean {
    return this.fds !== undefined;
  }

  release(): void {
    if (this.fds === undefined) return;
    const fds = this.fds;
    this.fds = undefined;
    // Closing the descriptors drops their flocks.
    for (const fd of fds) fs.closeSync(fd);
  }
}

function lockOne(path: string, mode: GuardMode, aliasOf: string | undefined): number {
  const st = fs.statSync(path);
  // Opening a FIFO would block until a writer comes; a directory or socket is no disk.
  if (!st.isFile() && !st.isBlockDevice()) throw new DiskError('EINVAL', `${path}: not a disk (a regular file or block device)`, { device: path });
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
      const via = aliasOf !== undefined ? ` through ${path}, the same disk as ${aliasOf}` : '';
      throw new DiskError('EBUSY', `${aliasOf ?? path}: device busy: in use by another process${via}${who}`, { device: aliasOf ?? path });
    }
    throw err;
  }
  return fd;
}

function openExclusive(path: string, forPath: string): number {
  try {
    return fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_EXCL);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EBUSY') {
      throw new DiskError('EBUSY', `${forPath}: device busy: ${path} is held by the kernel (mounted, or in use by device-mapper)`, { device: forPath });
    }
    throw err;
  }
}

function isBlockDevice(path: string): boolean {
  try {
    return fs.statSync(path).isBlockDevice();
  } catch {
    return false;
  }
}

/** /sys/dev/block/MAJ:MIN of a block device, or undefined. */
export function sysfsOf(st: fs.Stats): string {
  // Linux dev_t: major in bits 8..19 (and 32..43), minor in bits 0..7 and 20..31.
  const major = (st.rdev >> 8) & 0xfff;
  const minor = (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00);
  return `/sys/dev/block/${major}:${minor}`;
}

/** The loop device's backing file, when `path` is an attached loop device. */
function loopBackingFile(path: string): string | undefined {
  try {
    const st = fs.statSync(path);
    if (!st.isBlockDevice()) return undefined;
    const file = fs.readFileSync(`${sysfsOf(st)}/loop/backing_file`, 'utf8').trim();
    return file.endsWith(' (deleted)') || !fs.existsSync(file) ? undefined : file;
  } catch {
    return undefined;
  }
}

/** Loop devices attached to the regular file `path`. */
function loopsBackedBy(path: string): string[] {
  let real: string;
  let names: string[];
  try {
    if (!fs.statSync(path).isFile()) return [];
    real = fs.realpathSync(path);
    names = fs.readdirSync('/sys/block').filter((n) => n.startsWith('loop'));
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const n of names) {
    try {
      if (fs.readFileSync(`/sys/block/${n}/loop/backing_file`, 'utf8').trim() === real && fs.existsSync(`/dev/${n}`)) out.push(`/dev/${n}`);
    } catch {
      // not attached
    }
  }
  return out;
}

/** Other paths to the same disk: a loop device's backing file, or the loop devices over a file. */
export function diskAliases(path: string): string[] {
  const backing = loopBackingFile(path);
  return backing !== undefined ? [backing] : loopsBackedBy(path);
}

/** The size of a block device from sysfs (512-byte units), else blockdev(8); undefined if neither answers. */
export function blockDeviceSizeBytes(path: string): number | undefined {
  try {
    const sectors = Number(fs.readFileSync(`${sysfsOf(fs.statSync(path))}/size`, 'utf8').trim());
    if (Number.isSafeInteger(sectors)) return sectors * 512;
  } catch {
    // fall through
  }
  return undefined;
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
