// A logical volume as a block device: its segment map (linear and striped segments) laid over
// views of the PVs' data areas. LE l of a linear segment is PE first_pe + (l - start_extent) at
// byte pe_start + PE × extent_size of that PV; a k-stripe segment interleaves stripe_size chunks
// round-robin over k areas of extent_count/k PEs each (lvm2.md §5.5).
//
// The device carries a layout generation (the VG seqno it was built from): a layout change under
// the cluster's lock-out (src/volume/locked-lv.ts) builds a new map, swapped in only while no I/O
// is in flight.

import { deferToNextTurn, mayRunInCall } from '../disk/turn-budget.js';
import { checkRange, checkWritable, isSyncDevice, isSyncFit, ioInCall, syncFitEpoch, viewOf, type BlockDevice, type SectorSize, type SyncBlockDevice, type SyncFitness } from '../disk/index.js';
import { SanboxError } from '../errors.js';
import { LVM_SECTOR_BYTES, type LvModel, type VgModel } from '../format/lvm/vg-model.js';

interface MappedSegment {
  startBytes: number;
  lengthBytes: number;
  stripeSizeBytes: number;
  /** One view per stripe (one for linear), each extent_count/k extents long. */
  areas: BlockDevice[];
}

export interface LvLayout {
  /** The VG seqno the map was built from. */
  generation: number;
  /** The LV's uuid (dashed), the name of its cluster lock. */
  lvId: string;
  segments: MappedSegment[];
  sizeBytes: number;
}

/** Builds the segment map of `lv` over the PV devices (keyed like the text: pv0, pv1, …). */
export function mapLv(vg: VgModel, lv: LvModel, pvDevs: Map<string, BlockDevice>): LvLayout {
  const extentBytes = vg.extentSizeSectors * LVM_SECTOR_BYTES;
  const segments: MappedSegment[] = [];
  for (const seg of lv.segments) {
    if (seg.type !== 'striped') {
      throw new SanboxError('EINVAL', `${vg.name}/${lv.name}: segment type '${seg.type}' cannot be opened by sanbox (only linear and striped)`);
    }
    const per = seg.extentCount / seg.stripeCount;
    const areas = seg.stripes.map((st) => {
      const pv = vg.pvs.find((p) => p.key === st.pv);
      const dev = pvDevs.get(st.pv);
      if (!pv || !dev) throw new SanboxError('ENOENT', `${vg.name}/${lv.name}: PV ${st.pv} is not available`);
      const startBytes = pv.peStartSectors * LVM_SECTOR_BYTES + st.firstPe * extentBytes;
      return viewOf(dev, startBytes, per * extentBytes, `${vg.name}/${lv.name}:${st.pv}`);
    });
    segments.push({
      startBytes: seg.startExtent * extentBytes,
      lengthBytes: seg.extentCount * extentBytes,
      stripeSizeBytes: seg.stripeCount > 1 ? seg.stripeSizeSectors! * LVM_SECTOR_BYTES : per * extentBytes,
      areas,
    });
  }
  const sizeBytes = segments.reduce((n, s) => n + s.lengthBytes, 0);
  return { generation: vg.seqno, lvId: lv.id, segments, sizeBytes };
}

/** One piece of a request: which area, where in it, and where in the caller's buffer. */
interface Piece {
  area: BlockDevice;
  areaOffsetBytes: number;
  bufOffset: number;
  lengthBytes: number;
}

/** Splits [offsetBytes, +length) of the LV into per-area pieces. */
export function mapRange(layout: LvLayout, offsetBytes: number, lengthBytes: number): Piece[] {
  const pieces: Piece[] = [];
  let pos = offsetBytes;
  const end = offsetBytes + lengthBytes;
  let si = 0;
  while (pos < end) {
    while (si < layout.segments.length && layout.segments[si]!.startBytes + layout.segments[si]!.lengthBytes <= pos) si++;
    const seg = layout.segments[si]!;
    const rel = pos - seg.startBytes;
    const k = seg.areas.length;
    const chunk = Math.floor(rel / seg.stripeSizeBytes);
    const within = rel - chunk * seg.stripeSizeBytes;
    const area = seg.areas[chunk % k]!;
    const areaOffsetBytes = Math.floor(chunk / k) * seg.stripeSizeBytes + within;
    const n = Math.min(seg.stripeSizeBytes - within, end - pos, seg.startBytes + seg.lengthBytes - pos);
    pieces.push({ area, areaOffsetBytes, bufOffset: pos - offsetBytes, lengthBytes: n });
    pos += n;
  }
  return pieces;
}

/** Re-reads the VG metadata from the LV's own PV devices and maps the LV again. */
export type LayoutReader = () => Promise<LvLayout>;

export class LvDevice implements BlockDevice {
  readonly sectorSizeBytes: SectorSize;
  readonly readOnly: boolean;
  protected layout: LvLayout;
  private closed = false;
  private readonly closeHooks: (() => void | Promise<void>)[] = [];

  /** `owned` are the PV devices this LV device closes when it is closed. */
  constructor(
    readonly name: string,
    layout: LvLayout,
    pvDevs: BlockDevice[],
    private readonly owned: BlockDevice[] = [],
    private readonly reader?: LayoutReader,
  ) {
    this.layout = layout;
    this.sectorSizeBytes = pvDevs.some((d) => d.sectorSizeBytes === 4096) ? 4096 : 512;
    this.readOnly = pvDevs.some((d) => d.readOnly);
    this.pvDevs = pvDevs;
  }
  protected readonly pvDevs: BlockDevice[];

  /** Follows the layout: a swapped-in layout may be larger. */
  get sizeBytes(): number {
    return this.layout.sizeBytes;
  }

  /** The VG seqno of the layout in use. */
  get generation(): number {
    return this.layout.generation;
  }

  /**
   * Swaps in a newer layout. A live swap (I/O may be in flight) may only keep or grow the size;
   * `drained` (the caller holds every I/O back, as the lock-out does) also allows a shrink and
   * moved extents.
   */
  swapLayout(next: LvLayout, drained = false): void {
    if (next.generation < this.layout.generation) throw new SanboxError('EINVAL', `${this.name}: layout generation ${next.generation} is older than ${this.layout.generation}`);
    if (next.lvId !== this.layout.lvId) throw new SanboxError('EINVAL', `${this.name}: layout of LV ${next.lvId} offered for LV ${this.layout.lvId}`);
    if (!drained && next.sizeBytes < this.sizeBytes) throw new SanboxError('EINVAL', `${this.name}: a live layout swap cannot shrink the device`);
    this.layout = next;
  }

  /**
   * Re-reads the VG from the PV devices and swaps in the new layout when its generation moved.
   * The lock-out (locked-lv.ts) calls this with `drained` after a change, holding the LV's lock.
   */
  async refresh(drained = false): Promise<number> {
    if (!this.reader) throw new SanboxError('EINVAL', `${this.name}: this LV device cannot re-read its metadata`);
    const next = await this.reader();
    if (next.generation !== this.layout.generation) this.swapLayout(next, drained);
    return this.layout.generation;
  }

  /** The LV's uuid (dashed). */
  get lvId(): string {
    return this.layout.lvId;
  }

  protected live(offsetBytes: number): void {
    if (this.closed) throw new SanboxError('ECLOSED', `${this.name}: device is closed`, { device: this.name, offsetBytes });
  }

  async read(buf: Buffer, offsetBytes: number): Promise<void> {
    this.live(offsetBytes);
    checkRange(this, offsetBytes, buf.length);
    for (const p of mapRange(this.layout, offsetBytes, buf.length)) {
      await p.area.read(buf.subarray(p.bufOffset, p.bufOffset + p.lengthBytes), p.areaOffsetBytes);
    }
  }

  async write(buf: Buffer, offsetBytes: number): Promise<void> {
    this.live(offsetBytes);
    checkWritable(this, offsetBytes);
    checkRange(this, offsetBytes, buf.length);
    for (const p of mapRange(this.layout, offsetBytes, buf.length)) {
      await p.area.write(buf.subarray(p.bufOffset, p.bufOffset + p.lengthBytes), p.areaOffsetBytes);
    }
  }

  async flush(): Promise<void> {
    for (const d of this.pvDevs) await d.flush();
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.live(offsetBytes);
    checkRange(this, offsetBytes, lengthBytes);
    for (const p of mapRange(this.layout, offsetBytes, lengthBytes)) await p.area.discard(p.areaOffsetBytes, p.lengthBytes);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const d of this.owned) await d.close();
    await this.runCloseHooks();
  }

  /**
   * Runs `fn` once when the device is closed, after its PVs (e.g. to release its in-use guard, or
   * a node's open claim: src/volume/open-claim.ts); close() waits for what it returns.
   */
  onClose(fn: () => void | Promise<void>): void {
    this.closeHooks.push(fn);
  }

  protected async runCloseHooks(): Promise<void> {
    for (const fn of this.closeHooks.splice(0)) await fn();
  }

  protected markClosed(): boolean {
    if (this.closed) return false;
    this.closed = true;
    return true;
  }

  protected get ownedDevices(): BlockDevice[] {
    return this.owned;
  }
}

/**
 * The synchronous form, when every PV device has one (local files): same mapping, no promises.
 * Its promise read and write do the synchronous form inside the call, as FileDisk's do (one
 * promise per I/O instead of one per layer), unless a PV's synchronous form could block the
 * thread on an injected fault now (syncFit).
 */
export class SyncLvDevice extends LvDevice implements SyncBlockDevice, SyncFitness {
  readonly sync = true as const;

  /** The epoch fitVerdict was taken at (src/disk/device.ts syncFitEpoch); -1: never. */
  private fitEpoch = -1;
  private fitVerdict = false;

  /** Every PV device's synchronous form is fit now (no fault rule on any: src/disk/device.ts), re-walked only when a rule changed. */
  get syncFit(): boolean {
    const epoch = syncFitEpoch();
    if (epoch !== this.fitEpoch) {
      this.fitVerdict = this.pvDevs.every(isSyncFit);
      this.fitEpoch = epoch;
    }
    return this.fitVerdict;
  }

  // When the turn budget says no (turn-budget.ts), the whole synchronous op waits its turn in the
  // deferred queue, in issue order: not the promise form piece by piece, whose later pieces would
  // be issued a turn later, behind ops issued after this one.
  override read(buf: Buffer, offsetBytes: number): Promise<void> {
    if (!this.syncFit) return super.read(buf, offsetBytes);
    if (!mayRunInCall()) return deferToNextTurn(() => this.readSync(buf, offsetBytes));
    return ioInCall(this, 'read', buf, offsetBytes);
  }

  override write(buf: Buffer, offsetBytes: number): Promise<void> {
    if (!this.syncFit) return super.write(buf, offsetBytes);
    if (!mayRunInCall()) return deferToNextTurn(() => this.writeSync(buf, offsetBytes));
    return ioInCall(this, 'write', buf, offsetBytes);
  }

  // A discard goes to each PV's promise form, every piece issued now: a gated PV queues a long
  // zeroing as slices (file-disk.ts discard), so the loop turns between them instead of holding the
  // heartbeat for the whole range (review 7, L8); issued in one go, the pieces keep issue order.
  override discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    if (!this.syncFit) return super.discard(offsetBytes, lengthBytes);
    try {
      this.live(offsetBytes);
      checkRange(this, offsetBytes, lengthBytes);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return Promise.all(mapRange(this.layout, offsetBytes, lengthBytes).map((p) => p.area.discard(p.areaOffsetBytes, p.lengthBytes))).then(() => undefined);
  }

  readSync(buf: Buffer, offsetBytes: number): void {
    this.live(offsetBytes);
    checkRange(this, offsetBytes, buf.length);
    for (const p of mapRange(this.layout, offsetBytes, buf.length)) {
      (p.area as SyncBlockDevice).readSync(buf.subarray(p.bufOffset, p.bufOffset + p.lengthBytes), p.areaOffsetBytes);
    }
  }

  writeSync(buf: Buffer, offsetBytes: number): void {
    this.live(offsetBytes);
    checkWritable(this, offsetBytes);
    checkRange(this, offsetBytes, buf.length);
    for (const p of mapRange(this.layout, offsetBytes, buf.length)) {
      (p.area as SyncBlockDevice).writeSync(buf.subarray(p.bufOffset, p.bufOffset + p.lengthBytes), p.areaOffsetBytes);
    }
  }

  flushSync(): void {
    for (const d of this.pvDevs) (d as SyncBlockDevice).flushSync();
  }

  discardSync(offsetBytes: number, lengthBytes: number): void {
    this.live(offsetBytes);
    checkRange(this, offsetBytes, lengthBytes);
    for (const p of mapRange(this.layout, offsetBytes, lengthBytes)) (p.area as SyncBlockDevice).discardSync(p.areaOffsetBytes, p.lengthBytes);
  }

  closeSync(): void {
    if (!this.markClosed()) return;
    for (const d of this.ownedDevices) (d as SyncBlockDevice).closeSync();
    // A hook's asynchronous part (a lock release) finishes after closeSync returns.
    void this.runCloseHooks().catch(() => undefined);
  }

  override swapLayout(next: LvLayout, drained = false): void {
    if (!next.segments.every((s) => s.areas.every(isSyncDevice))) throw new SanboxError('EINVAL', `${this.name}: a synchronous LV needs synchronous PV devices`);
    super.swapLayout(next, drained);
  }
}

/** An LV device; the synchronous form when every PV device offers one. */
export function makeLvDevice(name: string, layout: LvLayout, pvDevs: BlockDevice[], owned: BlockDevice[] = [], reader?: LayoutReader): LvDevice {
  const allSync = pvDevs.every(isSyncDevice) && layout.segments.every((s) => s.areas.every(isSyncDevice));
  return allSync ? new SyncLvDevice(name, layout, pvDevs, owned, reader) : new LvDevice(name, layout, pvDevs, owned, reader);
}
