// The sparse-file disk: a regular file used as a block device with positioned I/O only
// (pread/pwrite; never seek+read, so several users of one fd cannot race on a file position).
// The promise form does its syscalls synchronously inside the promise: a local file op takes
// ~2 µs, a thread-pool hop ~40 µs (reference/baselines.md B1).

import fs from 'node:fs';
import nodePath from 'node:path';
import { execFileSync } from 'node:child_process';
import fsExt from 'fs-ext';
import { DiskError, SanboxError } from '../errors.js';
import { checkRange, checkWritable, SECTOR_SIZES, type SectorSize, type SyncBlockDevice, type SyncFitness } from './device.js';
import { blockDeviceSizeBytes, InUseGuard, probeInUse, type GuardMode } from './in-use-guard.js';
import { readRecordedSectorSize, sidecarPath, writeRecordedSectorSize } from './sector-size.js';
import { fileKind, systemError } from './system-error.js';
import { OPEN_GATE, type WriteGate } from './write-gate.js';
import { BLOCKDEV_TIMEOUT_MS, PUNCH_HOLE_TIMEOUT_MS } from '../timing.js';
import { afterDeferred, inOrder } from './turn-budget.js';

/** Discards at least this long are punched out of the file (freeing blocks) where no fence gate guards it; shorter ones are zeroed. */
const PUNCH_HOLE_MIN_BYTES = 1024 * 1024;
/** lseek(2) whence values that find a sparse file's written parts (linux/fs.h; fs-ext exports only SET, CUR and END). */
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
/** Zeroing buffer for discards and short-range writes. */
const ZERO_CHUNK_BYTES = 1024 * 1024;
/**
 * A gated discard runs as slices of a multiple of this (one zeroing chunk; sector-aligned for every
 * sector size), each its own queued op, so the event loop can turn between them (discard says why).
 */
const DISCARD_SLICE_BYTES_MIN = ZERO_CHUNK_BYTES;
/** At most this many slices per discard (their closures and promises live until it ends): 16 GiB in 1 MiB slices. */
const DISCARD_SLICES_MAX = 16384;
/** Bound on retries when the kernel transfers fewer bytes than asked without an error. */
const SHORT_IO_RETRIES_MAX = 16;

export interface OpenOptions {
  readOnly?: boolean;
  /** 'shared' (default) marks the disk in use; 'exclusive' is for destructive tools; 'none' for probes. */
  guard?: GuardMode | 'none';
  /** The fence gate every write passes (default: no fencing). */
  gate?: WriteGate;
}

export class FileDisk implements SyncBlockDevice, SyncFitness {
  readonly sync = true as const;
  /** A plain file: its synchronous form never sleeps on an injected fault (device.ts isSyncFit). */
  readonly syncFit = true as const;
  private fd: number | undefined;
  /** fdatasyncs of the promise form not yet done (close waits for them). */
  private readonly flushesInFlight = new Set<Promise<void>>();

  private constructor(
    readonly name: string,
    fd: number,
    readonly sizeBytes: number,
    readonly sectorSizeBytes: SectorSize,
    readonly readOnly: boolean,
    private readonly guard: InUseGuard | undefined,
    private readonly gate: WriteGate,
  ) {
    this.fd = fd;
  }

  static open(path: string, opts: OpenOptions = {}): FileDisk {
    if (path.trim() === '') throw new DiskError('EINVAL', 'an empty device name ("") was given', { device: path });
    const readOnly = opts.readOnly ?? false;
    let st: fs.Stats;
    try {
      st = fs.statSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DiskError('ENOENT', `${path}: no such device or image`, { device: path });
      throw systemError(path, 'stat', err);
    }
    if (!st.isFile() && !st.isBlockDevice()) throw new DiskError('EINVAL', `${path}: not a disk (${fileKind(st)}; a disk is a regular file or a block device)`, { device: path });
    const { sectorSizeBytes } = readRecordedSectorSize(path);
    const guardMode = opts.guard ?? 'shared';
    const guard = guardMode === 'none' ? undefined : InUseGuard.acquire(path, guardMode);
    let fd: number;
    try {
      fd = fs.openSync(path, readOnly ? 'r' : 'r+');
    } catch (err) {
      guard?.release();
      throw systemError(path, 'open', err);
    }
    // A block device reports size 0 through stat; fstat of a regular file is its device size.
    const sizeBytes = st.isFile() ? st.size : blockDeviceSize(fd, path);
    return new FileDisk(path, fd, sizeBytes, sectorSizeBytes, readOnly, guard, opts.gate ?? OPEN_GATE);
  }

  private liveFd(offsetBytes: number): number {
    if (this.fd === undefined) throw new DiskError('ECLOSED', `${this.name}: device is closed`, { device: this.name, offsetBytes });
    return this.fd;
  }

  readSync(buf: Buffer, offsetBytes: number): void {
    checkRange(this, offsetBytes, buf.length);
    this.transferAll('read', this.liveFd(offsetBytes), buf, offsetBytes);
  }

  /**
   * pread/pwrite until all of `buf` is transferred. A transfer of 0 bytes is retried at most
   * SHORT_IO_RETRIES_MAX times: for a read the file shrank under us (someone truncated the image),
   * a short transfer we cannot complete.
   */
  private transferAll(op: 'read' | 'write', fd: number, buf: Buffer, offsetBytes: number): void {
    let doneBytes = 0;
    let retries = 0;
    while (doneBytes < buf.length) {
      let n: number;
      try {
        n = op === 'read' ? fs.readSync(fd, buf, doneBytes, buf.length - doneBytes, offsetBytes + doneBytes) : fs.writeSync(fd, buf, doneBytes, buf.length - doneBytes, offsetBytes + doneBytes);
      } catch (err) {
        throw ioError(this.name, op, offsetBytes + doneBytes, buf.length - doneBytes, err);
      }
      if (n === 0 && ++retries > SHORT_IO_RETRIES_MAX) {
        throw new DiskError('ESHORT', `${this.name}: short ${op} at offset ${offsetBytes}: ${doneBytes} of ${buf.length} bytes`, {
          device: this.name,
          offsetBytes: offsetBytes + doneBytes,
        });
      }
      doneBytes += n;
    }
  }

  writeSync(buf: Buffer, offsetBytes: number): void {
    checkWritable(this, offsetBytes);
    checkRange(this, offsetBytes, buf.length);
    const fd = this.liveFd(offsetBytes);
    this.gate.enter(this.name, offsetBytes);
    try {
      this.transferAll('write', fd, buf, offsetBytes);
    } finally {
      this.gate.leave();
    }
  }

  flushSync(): void {
    const fd = this.liveFd(0);
    if (this.readOnly) return;
    try {
      fs.fdatasyncSync(fd);
    } catch (err) {
      throw ioError(this.name, 'flush', 0, 0, err);
    }
  }

  /**
   * Makes the range read as zeros. Where no fence gate guards this device (a standalone tool's
   * open), a long range is punched out of the file; otherwise the written parts of the range are
   * overwritten with zeros, each chunk a gated write, and its holes are left as they are.
   *
   * Why a gated device never punches (review 7, L4): Node has no fallocate(2), so the punch is a
   * child process, util-linux's fallocate(1), and a fence cannot stop it. The fence gate's lock
   * fd is close-on-exec, so the child does not hold the gate; the power fence kills and waits
   * for the node's pid only. A punch that takes seconds (writeback of dirty pages in the range on
   * a loaded host) outlives a node killed meanwhile, and lands after the fence was reported done,
   * in extents the survivors may have reused. A zero write in this process is a write like any
   * other: gated, checked against the heartbeat lease chunk by chunk, and ended with the process
   * (a kill waits for a pwrite in progress). The other ways out were larger: an addon of our own
   * for fallocate(2), or passing the gate's lock to the child and making every fence (the power
   * fence's record too, which takes no gate) wait for it. The price: a node's discard frees no
   * blocks (it allocates none either: a hole stays a hole, found with SEEK_DATA/SEEK_HOLE).
   */
  discardSync(offsetBytes: number, lengthBytes: number): void {
    checkWritable(this, offsetBytes);
    checkRange(this, offsetBytes, lengthBytes);
    const fd = this.liveFd(offsetBytes);
    if (this.gate === OPEN_GATE) {
      if (lengthBytes >= PUNCH_HOLE_MIN_BYTES && this.punchHole(offsetBytes, lengthBytes)) return;
    } else {
      // A fenced node's discard is refused, as its writes are, even where there is nothing to zero.
      this.gate.enter(this.name, offsetBytes);
      this.gate.leave();
    }
    const zeros = Buffer.alloc(Math.min(lengthBytes, ZERO_CHUNK_BYTES));
    for (const [fromBytes, toBytes] of writtenExtents(fd, offsetBytes, offsetBytes + lengthBytes)) {
      for (let at = fromBytes; at < toBytes; at += zeros.length) {
        const n = Math.min(zeros.length, toBytes - at);
        this.writeSync(n === zeros.length ? zeros : zeros.subarray(0, n), at);
      }
    }
  }

  /**
   * Node has no fallocate(2); util-linux's fallocate(1) punches the hole (discards are rare and
   * large, so one process spawn is cheap next to the blocks it frees). Only for a device no fence
   * gate guards (discardSync says why). Returns false if it cannot.
   */
  private punchHole(offsetBytes: number, lengthBytes: number): boolean {
    try {
      execFileSync('fallocate', ['--punch-hole', '--offset', String(offsetBytes), '--length', String(lengthBytes), this.name], {
        stdio: 'ignore',
        timeout: PUNCH_HOLE_TIMEOUT_MS,
      });
      return true;
    } catch {
      return false;
    }
  }

  closeSync(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    fs.closeSync(fd);
    this.guard?.release();
  }

  // In the call, unless a run of in-call I/O has held the event loop too long or an earlier op
  // still waits its turn (turn-budget.ts: then in issue order, a turn later).
  read(buf: Buffer, offsetBytes: number): Promise<void> {
    return inOrder(() => this.readSync(buf, offsetBytes));
  }
  write(buf: Buffer, offsetBytes: number): Promise<void> {
    return inOrder(() => this.writeSync(buf, offsetBytes));
  }
  /**
   * Unlike read and write, the promise form does its fdatasync in the thread pool: a flush can
   * take hundreds of ms on a busy host (measured: 170 ms at load 15, seconds under heavier I/O),
   * and a node process whose event loop sits in it stops heartbeating and fences itself. The ~40 µs
   * hop is noise next to the flush. Closing waits for flushes in flight, so their fd stays ours.
   */
  async flush(): Promise<void> {
    this.liveFd(0);
    if (this.readOnly) return;
    // A flush covers the writes issued before it: those still deferred run first (turn-budget.ts),
    // and close waits for it from here on.
    const done = afterDeferred().then(
      () => new Promise<void>((resolve, reject) => fs.fdatasync(this.liveFd(0), (err) => (err ? reject(ioError(this.name, 'flush', 0, 0, err)) : resolve()))),
    );
    this.flushesInFlight.add(done);
    try {
      await done;
    } finally {
      this.flushesInFlight.delete(done);
    }
  }
  /**
   * A gated discard zeroes what was written (discardSync), which can be gigabytes; done in one
   * call it would hold the event loop until it ends, the heartbeat would stop and the node fence
   * itself half-way (review 7, L8). So it is queued as slices, each its own op (turn-budget.ts):
   * they all join the queue now, before any later op, so issue order is kept, and the loop turns
   * between slices once a run has used its budget. Each slice finds its written parts when it
   * runs, so a write queued before the discard is zeroed too.
   */
  discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    if (this.gate === OPEN_GATE || lengthBytes <= DISCARD_SLICE_BYTES_MIN) return inOrder(() => this.discardSync(offsetBytes, lengthBytes));
    const sliceBytes = Math.ceil(lengthBytes / DISCARD_SLICES_MAX / DISCARD_SLICE_BYTES_MIN) * DISCARD_SLICE_BYTES_MIN;
    const slices: Promise<void>[] = [];
    for (let at = offsetBytes; at < offsetBytes + lengthBytes; at += sliceBytes) {
      const n = Math.min(sliceBytes, offsetBytes + lengthBytes - at);
      slices.push(inOrder(() => this.discardSync(at, n)));
    }
    return Promise.all(slices).then(() => undefined);
  }
  async close(): Promise<void> {
    // Ops issued before close and still in the deferred queue (turn-budget.ts) run first: a write
    // issued before close lands instead of failing ECLOSED.
    await afterDeferred();
    await Promise.allSettled([...this.flushesInFlight]);
    this.closeSync();
  }
}

/**
 * The written (data) parts of [fromBytes, toBytes) of the file open as `fd`, in order
 * (lseek SEEK_DATA/SEEK_HOLE). A file system that cannot tell reports the whole file as data
 * (Linux's generic lseek), as does a block device; if the lseek itself fails, the rest of the
 * range counts as written, so a discard zeroes too much rather than too little.
 */
function* writtenExtents(fd: number, fromBytes: number, toBytes: number): Generator<[number, number]> {
  let at = fromBytes;
  while (at < toBytes) {
    let dataAt: number;
    let holeAt: number;
    try {
      dataAt = fsExt.seekSync(fd, at, SEEK_DATA);
      holeAt = fsExt.seekSync(fd, dataAt, SEEK_HOLE);
    } catch (err) {
      // ENXIO: no data at or after `at` (up to the end of the file).
      if ((err as NodeJS.ErrnoException).code !== 'ENXIO') yield [at, toBytes];
      return;
    }
    if (dataAt >= toBytes) return;
    if (holeAt <= dataAt) {
      // Not what lseek promises (the file changed under us?): count the rest as written.
      yield [dataAt, toBytes];
      return;
    }
    yield [dataAt, Math.min(holeAt, toBytes)];
    at = holeAt;
  }
}

function ioError(name: string, op: string, offsetBytes: number, lengthBytes: number, err: unknown): SanboxError {
  if (err instanceof SanboxError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
  return new DiskError('EIO', `${name}: ${op} failed at offset ${offsetBytes} length ${lengthBytes}: ${code}`, {
    device: name,
    offsetBytes,
    cause: err,
  });
}

function blockDeviceSize(fd: number, path: string): number {
  // Node cannot ioctl(BLKGETSIZE64); lseek is not exposed either: sysfs first, else util-linux.
  const fromSysfs = blockDeviceSizeBytes(path);
  if (fromSysfs !== undefined) return fromSysfs;
  try {
    const out = execFileSync('blockdev', ['--getsize64', path], { encoding: 'utf8', timeout: BLOCKDEV_TIMEOUT_MS });
    return Number(out.trim());
  } catch (err) {
    fs.closeSync(fd);
    throw new DiskError('EIO', `${path}: cannot read block device size`, { device: path, cause: err });
  }
}

export interface CreateOptions {
  sizeBytes: number;
  sectorSizeBytes?: SectorSize;
  /** Replace an existing image (its contents are discarded). Refused while it is in use. */
  force?: boolean;
}

/**
 * Creates a sparse image: the file gets its size with ftruncate, so no data block is allocated.
 * Over an existing image (with force) it first takes the in-use guard exclusively, so an image
 * another process has open is left untouched and the call fails with EBUSY.
 *
 * Atomic: the new image and its sidecar are built beside the target under temporary names and
 * renamed into place, so a failure (EFBIG for a size the file system cannot hold, ENOSPC, EROFS…)
 * leaves whatever was there untouched and no half-made file behind to block a retry.
 */
export function createImage(path: string, opts: CreateOptions): void {
  const plan = planCreate(path, opts);
  try {
    plan.makeTemp();
    plan.commit();
  } finally {
    plan.cleanUp();
  }
}

/**
 * Like createImage, and `fill` writes the new image's contents before anyone can see them: the
 * image is built beside `path` (fill gets that temporary path, which it opens, writes, flushes and
 * closes itself, so the opener's fault injection applies) and renamed into place only after fill
 * succeeded, so a failure anywhere (ENOSPC, EIO, a bad value) leaves what was at `path` untouched
 * (issue 15).
 */
export async function createImageWith(path: string, opts: CreateOptions, fill: (tmpPath: string) => Promise<void>): Promise<void> {
  const plan = planCreate(path, opts);
  try {
    plan.makeTemp();
    await fill(plan.tmp);
    plan.commit();
  } finally {
    plan.cleanUp();
  }
}

interface CreatePlan {
  tmp: string;
  makeTemp(): void;
  commit(): void;
  cleanUp(): void;
}

/** The checks of a create (sector size, size, what is at `path`, force, in use) and its three steps. */
function planCreate(path: string, opts: CreateOptions): CreatePlan {
  const sectorSizeBytes = opts.sectorSizeBytes ?? 512;
  if (!SECTOR_SIZES.includes(sectorSizeBytes)) {
    throw new DiskError('EINVAL', `${path}: sector size must be 512 or 4096, not ${sectorSizeBytes}`, { device: path });
  }
  if (!Number.isSafeInteger(opts.sizeBytes) || opts.sizeBytes <= 0 || opts.sizeBytes % sectorSizeBytes !== 0) {
    throw new DiskError('EINVAL', `${path}: size ${opts.sizeBytes} is not a positive multiple of the sector size ${sectorSizeBytes}`, {
      device: path,
    });
  }
  let exists = false;
  try {
    const st = fs.statSync(path);
    exists = true;
    if (!st.isFile()) throw new DiskError('EINVAL', `${path}: exists and is not a regular file; refusing to replace it`, { device: path });
  } catch (err) {
    if (err instanceof DiskError) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (exists && !opts.force) {
    throw new DiskError('EEXIST', `${path}: already exists (use --force to replace it)`, { device: path });
  }
  const guard = exists ? InUseGuard.acquire(path, 'exclusive') : undefined;
  const tmp = tempBeside(path);
  let sidecarTmp: string | undefined;
  return {
    tmp,
    makeTemp(): void {
      try {
        // 'wx': a fresh name of our own; the image gets its size before anyone can see it.
        const fd = fs.openSync(tmp, 'wx');
        try {
          fs.ftruncateSync(fd, opts.sizeBytes);
        } finally {
          fs.closeSync(fd);
        }
      } catch (err) {
        throw systemError(path, `create a ${opts.sizeBytes}-byte image`, err);
      }
      // The temporary image's own sidecar, so it opens with its sector size while it is filled.
      writeRecordedSectorSize(tmp, sectorSizeBytes);
      sidecarTmp = sidecarPath(tmp);
    },
    commit(): void {
      if (sidecarTmp === undefined) throw new Error(`${path}: commit before the temporary image was made`);
      if (!exists && fs.existsSync(path)) throw new DiskError('EEXIST', `${path}: already exists (created by another process meanwhile)`, { device: path });
      try {
        fs.renameSync(tmp, path);
        fs.renameSync(sidecarTmp, sidecarPath(path));
      } catch (err) {
        throw systemError(path, 'put the new image in place', err);
      }
    },
    cleanUp(): void {
      fs.rmSync(tmp, { force: true });
      fs.rmSync(sidecarPath(tmp), { force: true });
      guard?.release();
    },
  };
}

/** A temporary name in the same directory (so rename is atomic). */
function tempBeside(path: string): string {
  return nodePath.join(nodePath.dirname(path), `.${nodePath.basename(path)}.${process.pid}.${Date.now().toString(36)}.tmp`);
}

export interface DiskInfo {
  path: string;
  sizeBytes: number;
  sectorSizeBytes: SectorSize;
  sectorSizeRecorded: boolean;
  allocatedBytes: number;
  inUse: boolean;
  holderPids: number[];
}

export function diskInfo(path: string): DiskInfo {
  if (path.trim() === '') throw new DiskError('EINVAL', 'an empty device name ("") was given', { device: path });
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new DiskError('ENOENT', `${path}: no such device or image`, { device: path });
    throw systemError(path, 'stat', err);
  }
  // Checked before anything opens it: opening a FIFO blocks until a writer appears.
  if (!st.isFile() && !st.isBlockDevice()) throw new DiskError('EINVAL', `${path}: not a disk (${fileKind(st)}; a disk is a regular file or a block device)`, { device: path });
  const { sectorSizeBytes, recorded } = readRecordedSectorSize(path);
  const { inUse, holderPids } = probeInUse(path);
  const sizeBytes = st.isFile() ? st.size : blockDeviceSizeBytes(path);
  if (sizeBytes === undefined) throw new DiskError('EIO', `${path}: cannot read the block device's size from sysfs`, { device: path });
  return {
    path,
    sizeBytes,
    sectorSizeBytes,
    sectorSizeRecorded: recorded,
    allocatedBytes: st.blocks * 512, // st_blocks counts 512-byte units whatever the fs block size
    inUse,
    holderPids,
  };
}
