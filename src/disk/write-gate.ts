// Every write passes a gate. The fencing work (src/disk/fence-*.ts) supplies the real gate: a
// per-(device, node) lock the writer holds shared across check-and-write, and that a fencer takes
// exclusively to preempt, so no write that starts after a preempt completes can land
// (ARCHITECTURE.md, "Every write passes a fence gate"). A device with no fencing uses OPEN_GATE.
//
// A device whose writes can wait between enter and the moment they leave this process (an NBD
// request queued for room in the pipeline: nbd-device.ts) asks the gate again right before it
// sends such a write (check), and drops what it still holds back once the node fences itself
// (onSelfFence): the self-fence argument (timing.ts: selfFenceMs + watchdogMs < deadMs) is about
// when writes stop leaving the node, not when they were issued (review 7, M2).

export interface WriteGate {
  /** Called before each write; throws (DiskError EFENCED) if this writer has been fenced. */
  enter(deviceName: string, offsetBytes: number): void;
  /**
   * Called for a write that entered and then waited inside this process, right before it leaves
   * it; throws as enter would if this writer has been fenced meanwhile. It does not enter again:
   * the write's one leave() still follows, whether this throws or not.
   */
  check(deviceName: string, offsetBytes: number): void;
  /** Called after the write returns or fails; must not throw. */
  leave(): void;
  /**
   * Calls `listener` (at most once) when this writer fences itself for good, so a device can fail
   * the writes it holds back instead of sending them. Only gates that can fence themselves offer it.
   */
  onSelfFence?(listener: (reason: string) => void): void;
}

export const OPEN_GATE: WriteGate = {
  enter() {},
  check() {},
  leave() {},
};
