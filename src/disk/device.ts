// The block-device interface every layer above src/disk talks to. Promise-first: every device
// (file, view, logical volume, fault wrapper, NBD) has the promise form; devices that can do it
// cheaply (a local file and views over one) also offer the synchronous form, which is the fast
// path (~2 µs per 4 KiB op against ~40 µs through the thread pool; reference/baselines.md B1).

import { DiskError } from '../errors.js';
import type { SectorSize } from '../format/sector-size.js';

export { isSectorSize, SECTOR_SIZES, type SectorSize } from '../format/sector-size.js';

export interface BlockDevice {
  /** A name for messages: a path, `VG/LV`, `nbd://…`, or `parent[offset+len]` for a view. */
  readonly name: string;
  readonly sizeBytes: number;
  readonly sectorSizeBytes: SectorSize;
  readonly readOnly: boolean;
  /** Reads exactly `buf.length` bytes at `offsetBytes`, or throws. */
  read(buf: Buffer, offsetBytes: number): Promise<void>;
  /** Writes all of `buf` at `offsetBytes`, or throws. */
  write(buf: Buffer, offsetBytes: number): Promise<void>;
  /** Makes every completed write durable. */
  flush(): Promise<void>;
  /** Tells the device a range is unused; afterwards the range reads as zeros. */
  discard(offsetBytes: number, lengthBytes: number): Promise<void>;
  close(): Promise<void>;
}

/** A device that can also do its I/O synchronously, in the calling thread. */
export interface SyncBlockDevice extends BlockDevice {
  readonly sync: true;
  readSync(buf: Buffer, offsetBytes: number): void;
  writeSync(buf: Buffer, offsetBytes: number): void;
  flushSync(): void;
  discardSync(offsetBytes: number, lengthBytes: number): void;
  closeSync(): void;
}

export function isSyncDevice(dev: BlockDevice): dev is SyncBlockDevice {
  return (dev as Partial<SyncBlockDevice>).sync === true;
}

/** The settled promise a promise form hands back when it did its I/O inside the call (FileDisk's way). */
export const IO_DONE: Promise<void> = Promise.resolve();

/**
 * `dev`'s synchronous read or write, done now, as the settled promise a promise form returns: a
 * throw becomes a rejection, as callers of a promise form expect. No closure: it is on every I/O.
 */
export function ioInCall(dev: SyncBlockDevice, op: 'read' | 'write', buf: Buffer, offsetBytes: number): Promise<void> {
  try {
    if (op === 'read') dev.readSync(buf, offsetBytes);
    else dev.writeSync(buf, offsetBytes);
  } catch (err) {
    return Promise.reject(err as Error);
  }
  return IO_DONE;
}

/**
 * A synchronous device whose synchronous form is, for a while, unfit for a caller that must not
 * block its event loop (a node: its heartbeat runs there): `syncFit` is false while a call would
 * hold the thread for longer than the I/O, as a fault layer's latency or stall rule does. (Not an
 * optional member of SyncBlockDevice: that would make a FileDisk no longer a subtype of it, and
 * viewOf's overloads would pick the promise-only form for it.)
 */
export interface SyncFitness {
  readonly syncFit: boolean;
}

let syncFitEpochNow = 0;

/**
 * A device whose syncFit may have changed (a fault rule installed or removed) calls this: every
 * verdict cached under syncFitEpoch() is stale from then on. (A layer above caches its verdict:
 * walking the layers below on every I/O cost ~8 % of a cluster-locked LV read's CPU time.)
 */
export function syncFitChanged(): void {
  syncFitEpochNow++;
}

/** Moves whenever any device's syncFit may have changed (syncFitChanged). */
export function syncFitEpoch(): number {
  return syncFitEpochNow;
}

/**
 * Whether `dev`'s synchronous form may be used now without blocking the thread on an injected
 * fault. Only a device that says so (`syncFit` true) may: a wrapper that forgot to pass its inner
 * device's verdict through is taken as unfit (the promise form, never a sleep on the thread), as
 * the own-slot guard once was, and a stall rule below it hung a node.
 */
export function isSyncFit(dev: BlockDevice): dev is SyncBlockDevice {
  return (dev as Partial<SyncBlockDevice>).sync === true && (dev as Partial<SyncFitness>).syncFit === true;
}

/** Byte-range check shared by all devices: an error naming device, offset and length. */
export function checkRange(dev: { name: string; sizeBytes: number }, offsetBytes: number, lengthBytes: number): void {
  if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0) {
    throw new DiskError('EBOUNDS', `${dev.name}: invalid I/O range offset=${offsetBytes} length=${lengthBytes}`, {
      device: dev.name,
      offsetBytes,
    });
  }
  if (offsetBytes + lengthBytes > dev.sizeBytes) {
    throw new DiskError(
      'EBOUNDS',
      `${dev.name}: I/O beyond end of device: offset ${offsetBytes} length ${lengthBytes} (device size ${dev.sizeBytes})`,
      { device: dev.name, offsetBytes },
    );
  }
}

/** Sector-alignment check for callers that ask for sector I/O. */
export function checkAligned(dev: { name: string; sectorSizeBytes: number }, offsetBytes: number, lengthBytes: number): void {
  const s = dev.sectorSizeBytes;
  if (offsetBytes % s !== 0 || lengthBytes % s !== 0) {
    throw new DiskError(
      'EALIGN',
      `${dev.name}: unaligned sector I/O: offset ${offsetBytes} length ${lengthBytes} (sector size ${s})`,
      { device: dev.name, offsetBytes },
    );
  }
}

export function checkWritable(dev: { name: string; readOnly: boolean }, offsetBytes: number): void {
  if (dev.readOnly) {
    throw new DiskError('EIO', `${dev.name}: device is read-only (write at offset ${offsetBytes})`, {
      device: dev.name,
      offsetBytes,
    });
  }
}

/** Sector I/O helpers: alignment is enforced here, bounds by the device. */
export async function readSectors(dev: BlockDevice, sector: number, count: number): Promise<Buffer> {
  const buf = Buffer.alloc(count * dev.sectorSizeBytes);
  const offsetBytes = sector * dev.sectorSizeBytes;
  checkAligned(dev, offsetBytes, buf.length);
  await dev.read(buf, offsetBytes);
  return buf;
}

export async function writeSectors(dev: BlockDevice, sector: number, data: Buffer): Promise<void> {
  const offsetBytes = sector * dev.sectorSizeBytes;
  checkAligned(dev, offsetBytes, data.length);
  await dev.write(data, offsetBytes);
}
