// A node writes only its own slot's sectors in every table of per-node slots it shares with other
// nodes: o2hb heartbeat slots (reference/ocfs2.md §4.4: slot n is written by node n alone) and the
// cluster image's node records (single-writer sectors). Those tables need no lock only because of
// that rule, so it is asserted on the device the node writes through, under every writer: a write
// that touches another node's slot is a bug in sanbox and never reaches the disk.

import { assert } from '../errors.js';
import { isSyncDevice, isSyncFit, type BlockDevice, type SectorSize, type SyncBlockDevice, type SyncFitness } from './device.js';

/** Slot n of a table is [offsetBytes + n × slotBytes, + slotBytes) on the device. */
export interface SlotTable {
  /** For messages, e.g. `heartbeat` or `node records`. */
  what: string;
  offsetBytes: number;
  slotBytes: number;
  slotCount: number;
}

/** Asserts that a write of [offsetBytes, +lengthBytes) touches, in every table, at most node `nodeId`'s slot. */
export function checkOwnSlots(deviceName: string, tables: readonly SlotTable[], nodeId: number, offsetBytes: number, lengthBytes: number): void {
  const end = offsetBytes + lengthBytes;
  for (const t of tables) {
    const tableEnd = t.offsetBytes + t.slotCount * t.slotBytes;
    if (end <= t.offsetBytes || offsetBytes >= tableEnd || lengthBytes === 0) continue;
    const own = t.offsetBytes + nodeId * t.slotBytes;
    assert(
      offsetBytes >= own && end <= own + t.slotBytes,
      `${deviceName}: node ${nodeId} writes [${offsetBytes}, ${end}) in the ${t.what} table, outside its own slot [${own}, ${own + t.slotBytes})`,
    );
  }
}

class OwnSlots implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly sectorSizeBytes: SectorSize;
  readonly readOnly: boolean;

  constructor(
    protected readonly inner: BlockDevice,
    protected readonly nodeId: number,
    protected readonly tables: readonly SlotTable[],
  ) {
    this.name = inner.name;
    this.sizeBytes = inner.sizeBytes;
    this.sectorSizeBytes = inner.sectorSizeBytes;
    this.readOnly = inner.readOnly;
    for (const t of tables) {
      assert(nodeId >= 0 && nodeId < t.slotCount, `${inner.name}: node ${nodeId} has no slot in the ${t.what} table of ${t.slotCount}`);
    }
  }

  read(buf: Buffer, offsetBytes: number): Promise<void> {
    return this.inner.read(buf, offsetBytes);
  }
  async write(buf: Buffer, offsetBytes: number): Promise<void> {
    checkOwnSlots(this.name, this.tables, this.nodeId, offsetBytes, buf.length);
    await this.inner.write(buf, offsetBytes);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    checkOwnSlots(this.name, this.tables, this.nodeId, offsetBytes, lengthBytes);
    await this.inner.discard(offsetBytes, lengthBytes);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

class SyncOwnSlots extends OwnSlots implements SyncBlockDevice, SyncFitness {
  readonly sync = true as const;
  constructor(
    private readonly syncInner: SyncBlockDevice,
    nodeId: number,
    tables: readonly SlotTable[],
  ) {
    super(syncInner, nodeId, tables);
  }
  /** Fit as the device below is: a fault rule there (a stall sleeps in the synchronous form) makes this unfit too. */
  get syncFit(): boolean {
    return isSyncFit(this.syncInner);
  }
  readSync(buf: Buffer, offsetBytes: number): void {
    this.syncInner.readSync(buf, offsetBytes);
  }
  writeSync(buf: Buffer, offsetBytes: number): void {
    checkOwnSlots(this.name, this.tables, this.nodeId, offsetBytes, buf.length);
    this.syncInner.writeSync(buf, offsetBytes);
  }
  flushSync(): void {
    this.syncInner.flushSync();
  }
  discardSync(offsetBytes: number, lengthBytes: number): void {
    checkOwnSlots(this.name, this.tables, this.nodeId, offsetBytes, lengthBytes);
    this.syncInner.discardSync(offsetBytes, lengthBytes);
  }
  closeSync(): void {
    this.syncInner.closeSync();
  }
}

/** `dev` with every write checked by checkOwnSlots; synchronous when `dev` is. Closing it closes `dev`. */
export function ownSlotsOnly(dev: SyncBlockDevice, nodeId: number, tables: readonly SlotTable[]): SyncBlockDevice;
export function ownSlotsOnly(dev: BlockDevice, nodeId: number, tables: readonly SlotTable[]): BlockDevice;
export function ownSlotsOnly(dev: BlockDevice, nodeId: number, tables: readonly SlotTable[]): BlockDevice {
  return isSyncDevice(dev) ? new SyncOwnSlots(dev, nodeId, tables) : new OwnSlots(dev, nodeId, tables);
}
