// A window (offset, length) onto another device that is itself a device: partitions, PV data
// areas and logical-volume segments are views. Every I/O is checked against the window, so
// nothing done through a view can reach outside it.

import { DiskError } from '../errors.js';
import { checkRange, isSyncDevice, isSyncFit, type BlockDevice, type SectorSize, type SyncBlockDevice, type SyncFitness } from './device.js';

class View implements BlockDevice {
  readonly name: string;
  readonly sectorSizeBytes: SectorSize;
  readonly readOnly: boolean;

  constructor(
    protected readonly parent: BlockDevice,
    readonly startBytes: number,
    readonly sizeBytes: number,
    name?: string,
  ) {
    checkRange(parent, startBytes, sizeBytes);
    this.name = name ?? `${parent.name}[${startBytes}+${sizeBytes}]`;
    this.sectorSizeBytes = parent.sectorSizeBytes;
    this.readOnly = parent.readOnly;
  }

  async read(buf: Buffer, offsetBytes: number): Promise<void> {
    checkRange(this, offsetBytes, buf.length);
    await this.parent.read(buf, this.startBytes + offsetBytes);
  }
  async write(buf: Buffer, offsetBytes: number): Promise<void> {
    checkRange(this, offsetBytes, buf.length);
    await this.parent.write(buf, this.startBytes + offsetBytes);
  }
  async flush(): Promise<void> {
    await this.parent.flush();
  }
  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    checkRange(this, offsetBytes, lengthBytes);
    await this.parent.discard(this.startBytes + offsetBytes, lengthBytes);
  }
  /** A view does not own its parent: closing it does not close the parent. */
  async close(): Promise<void> {}
}

class SyncView extends View implements SyncBlockDevice, SyncFitness {
  readonly sync = true as const;
  constructor(
    private readonly syncParent: SyncBlockDevice,
    startBytes: number,
    sizeBytes: number,
    name?: string,
  ) {
    super(syncParent, startBytes, sizeBytes, name);
  }
  readSync(buf: Buffer, offsetBytes: number): void {
    checkRange(this, offsetBytes, buf.length);
    this.syncParent.readSync(buf, this.startBytes + offsetBytes);
  }
  writeSync(buf: Buffer, offsetBytes: number): void {
    checkRange(this, offsetBytes, buf.length);
    this.syncParent.writeSync(buf, this.startBytes + offsetBytes);
  }
  flushSync(): void {
    this.syncParent.flushSync();
  }
  discardSync(offsetBytes: number, lengthBytes: number): void {
    checkRange(this, offsetBytes, lengthBytes);
    this.syncParent.discardSync(this.startBytes + offsetBytes, lengthBytes);
  }
  closeSync(): void {}
  get syncFit(): boolean {
    return isSyncFit(this.syncParent);
  }
}

/** A view over `parent`; synchronous when the parent is. The window must be sector-aligned. */
export function viewOf(parent: SyncBlockDevice, startBytes: number, sizeBytes: number, name?: string): SyncBlockDevice;
export function viewOf(parent: BlockDevice, startBytes: number, sizeBytes: number, name?: string): BlockDevice;
export function viewOf(parent: BlockDevice, startBytes: number, sizeBytes: number, name?: string): BlockDevice {
  if (startBytes % parent.sectorSizeBytes !== 0 || sizeBytes % parent.sectorSizeBytes !== 0) {
    throw new DiskError('EALIGN', `${parent.name}: view [${startBytes}+${sizeBytes}] is not aligned to ${parent.sectorSizeBytes}-byte sectors`, {
      device: parent.name,
      offsetBytes: startBytes,
    });
  }
  return isSyncDevice(parent) ? new SyncView(parent, startBytes, sizeBytes, name) : new View(parent, startBytes, sizeBytes, name);
}
