// The lock manager's reads and writes of its region, done inside the call when the device's
// synchronous form is fit (src/disk/device.ts isSyncFit: a local file below, no fault rule that
// could block the thread): the promise layers of a node's device (view, counted provider device,
// file) cost a promise or two each per I/O, six I/Os per lock+unlock. Anything else (nbd://, a
// fault rule installed) takes the promise form, as before. The verdict is cached under
// syncFitEpoch(), which moves whenever any device's fitness may have changed. A run of in-call I/O
// that has held the event loop too long takes the promise form too (src/disk/turn-budget.ts).

import { mayRunInCall } from '../disk/turn-budget.js';
import { isSyncFit, readInCall, writeInCall, syncFitEpoch, type BlockDevice, type SyncBlockDevice } from '../disk/device.js';

export class InCallIo {
  private fitEpoch = -1;
  private fit: SyncBlockDevice | undefined;

  constructor(readonly device: BlockDevice) {}

  private syncForm(): SyncBlockDevice | undefined {
    const epoch = syncFitEpoch();
    if (epoch !== this.fitEpoch) {
      this.fit = isSyncFit(this.device) ? this.device : undefined;
      this.fitEpoch = epoch;
    }
    return this.fit;
  }

  read(buf: Buffer, offsetBytes: number): Promise<void> {
    const d = this.syncForm();
    if (d === undefined || !mayRunInCall()) return this.device.read(buf, offsetBytes);
    return readInCall(d, buf, offsetBytes);
  }

  write(buf: Buffer, offsetBytes: number): Promise<void> {
    const d = this.syncForm();
    if (d === undefined || !mayRunInCall()) return this.device.write(buf, offsetBytes);
    return writeInCall(d, buf, offsetBytes);
  }
}
