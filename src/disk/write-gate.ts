// Every write passes a gate. The fencing work (src/disk/fence-*.ts) supplies the real gate: a
// per-(device, node) lock the writer holds shared across check-and-write, and that a fencer takes
// exclusively to preempt, so no write that starts after a preempt completes can land
// (ARCHITECTURE.md, "Every write passes a fence gate"). A device with no fencing uses OPEN_GATE.

export interface WriteGate {
  /** Called before each write; throws (DiskError EFENCED) if this writer has been fenced. */
  enter(deviceName: string, offsetBytes: number): void;
  /** Called after the write returns or fails; must not throw. */
  leave(): void;
}

export const OPEN_GATE: WriteGate = {
  enter() {},
  leave() {},
};
