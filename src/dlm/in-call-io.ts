// The lock manager's reads and writes of its region, done inside the call when the device's
// synchronous form is fit (src/disk/device.ts isSyncFit: a local file below, no fault rule that
// could block the thread): the promise layers of a node's device (view, counted provider device,
// file) cost a promise or two each per I/O, six I/Os per lock+unlock. Anything else (nbd://, a
// fault rule installed) takes the promise form, as before. The verdict is cached under
// syncFitEpoch(), which moves whenever any device's fitness may have changed. A run of in-call I/O
// that has held the event loop too long, or that finds an earlier op still deferred, waits its
// turn in the deferred queue, in issue order (src/disk/turn-budget.ts).

import { deferToNextTurn, mayRunInCall } from '../disk/turn-budget.js';
import { isSyncFit, ioInCall, syncFitEpoch, type BlockDevice, type SyncBlockDevice } from '../disk/device.js';

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
    if (d === undefined) return this.device.read(buf, offsetBytes);
    if (!mayRunInCall()) return deferToNextTurn(() => d.readSync(buf, offsetBytes));
    return ioInCall(d, 'read', buf, offsetBytes);
  }

  write(buf: Buffer, offsetBytes: number): Promise<void> {
    const d = this.syncForm();
    if (d === undefined) return this.device.write(buf, offsetBytes);
    if (!mayRunInCall()) return deferToNextTurn(() => d.writeSync(buf, offsetBytes));
    return ioInCall(d, 'write', buf, offsetBytes);
  }
}
