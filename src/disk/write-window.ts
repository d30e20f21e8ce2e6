// A device whose writes are allowed only inside one window, for a writer that is not trusted with
// the rest: the cluster image as a node hands it to a client on its control socket (an LVM command
// run as the node, src/node/remote-device.ts) may be written only in its device-list region, never
// in the header, the heartbeat slots, the node records, the reservation state or the lockspace
// (review 4, finding 3). Reads pass everywhere (the command reads the header to find the region).
// Unlike own-slots.ts, whose refusals are assertions (a sanbox bug), a refusal here is an answer to
// a request from outside: a one-line DiskError naming the device, the offset and the window.

import { DiskError } from '../errors.js';
import { checkRange, type BlockDevice, type SectorSize } from './device.js';

export interface WriteWindow {
  offsetBytes: number;
  lengthBytes: number;
  /** What the window is, for refusals (e.g. "the device-list region"). */
  what: string;
}

class WindowedWrites implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly sectorSizeBytes: SectorSize;
  readonly readOnly: boolean;

  constructor(
    private readonly inner: BlockDevice,
    private readonly window: WriteWindow | undefined,
    private readonly writer: string,
    private readonly owns: boolean,
  ) {
    this.name = inner.name;
    this.sizeBytes = inner.sizeBytes;
    this.sectorSizeBytes = inner.sectorSizeBytes;
    // Without a window nothing is written: say so, so a reader (an LVM scan) treats it as read-only.
    this.readOnly = inner.readOnly || window === undefined;
  }

  private check(op: string, offsetBytes: number, lengthBytes: number): void {
    checkRange(this, offsetBytes, lengthBytes);
    const w = this.window;
    if (w !== undefined && offsetBytes >= w.offsetBytes && offsetBytes + lengthBytes <= w.offsetBytes + w.lengthBytes) return;
    const where = w === undefined ? 'nowhere (it has no such window)' : `only in ${w.what} [${w.offsetBytes}, ${w.offsetBytes + w.lengthBytes})`;
    throw new DiskError('EINVAL', `${this.name}: ${op} of [${offsetBytes}, ${offsetBytes + lengthBytes}) refused: ${this.writer} writes this device ${where}`, { device: this.name, offsetBytes });
  }

  read(buf: Buffer, offsetBytes: number): Promise<void> {
    return this.inner.read(buf, offsetBytes);
  }
  async write(buf: Buffer, offsetBytes: number): Promise<void> {
    this.check('write', offsetBytes, buf.length);
    await this.inner.write(buf, offsetBytes);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.check('discard', offsetBytes, lengthBytes);
    await this.inner.discard(offsetBytes, lengthBytes);
  }
  /** Closes `inner` only when the window owns it (writesOnlyIn's `owns`). */
  async close(): Promise<void> {
    if (this.owns) await this.inner.close();
  }
}

/**
 * `dev` with writes and discards refused (one line) outside `window` (everywhere, without one);
 * `writer` names who is refused. Closing it closes `dev` only when `owns` is set.
 */
export function writesOnlyIn(dev: BlockDevice, window: WriteWindow | undefined, writer: string, owns = false): BlockDevice {
  return new WindowedWrites(dev, window, writer, owns);
}
