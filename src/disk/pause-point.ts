// Pause points for the stall tests (issue 18, the fenced-changer test): a process started with
// SANBOX_PAUSE_AT=POINT stops itself (SIGSTOP) when it reaches POINT, after one line on stderr
// saying so (`sanbox: SANBOX_PAUSE_AT=vg-commit: pid 1234 stops …`), so a test can stall it at an
// exact step without strace, do things to the cluster meanwhile (fence its node, change the VG as
// another node), then SIGCONT it and see what it does. Read here only; unset, it does nothing.
//
//   vg-commit   in commitVg (src/volume/vg.ts), after the new metadata text is written and checked
//               against a competing commit, right before the first mda header switches to it:
//               the commit point of an LVM metadata change. The VG lock (and a lock-out's LV
//               locks) are held then.
//   lockout-vetted  in withLayoutLockout (src/volume/lockout.ts), after the change's vet (lvreduce's
//               and lvremove's "LV is mounted" check, which holds the volume's superblock lock PR
//               from there on) and before the LV locks are asked for: the VG lock EX is held.
//   lease-checked   in a node's gated write (src/disk/fence-gate.ts), after the gate's check
//               and the heartbeat lease's, right before the pwrite: the process stops INSIDE
//               its fence gate (it keeps the gate, as a write blocked in the kernel does), on the
//               first write to the device whose file name SANBOX_PAUSE_DEVICE gives (any device
//               when unset), once. A fencer then waits for the gate and escalates to the power fence.
//   takeover-preempt  in a container takeover (src/node/failover.ts), after the fenced owner's
//               slot was read under the VG lock EX, right before its key is preempted on the PVs.
//   node-connected  in an LVM command run through running node N (src/node/lvm-node.ts
//               withLvmNode), once connected to N's control socket and before it registers as N's
//               client: it has taken nothing yet (no lock, no flock, no write), and a fence of N
//               does not kill it (N's record does not name it), so it resumes to find N gone.

import path from 'node:path';
import { DiskError } from '../errors.js';
import { endAllLocalLeases } from './reservations.js';

export const PAUSE_AT_ENV = 'SANBOX_PAUSE_AT';

export const PAUSE_AT_DEVICE_ENV = 'SANBOX_PAUSE_DEVICE';

export const PAUSE_POINTS = ['vg-commit', 'lockout-vetted', 'lease-checked', 'takeover-preempt', 'node-connected'] as const;
export type PausePoint = (typeof PAUSE_POINTS)[number];

/** Stops this process at `point` when SANBOX_PAUSE_AT names it; `what` goes into the stderr line. */
export function pauseAt(point: PausePoint, what: string, env: NodeJS.ProcessEnv = process.env): void {
  const want = env[PAUSE_AT_ENV];
  if (want === undefined || want === '') return;
  // A typo must not silently run the test without its stall.
  if (!(PAUSE_POINTS as readonly string[]).includes(want)) throw new DiskError('EINVAL', `${PAUSE_AT_ENV}='${want}' is not a pause point (${PAUSE_POINTS.join(', ')})`);
  if (want !== point) return;
  // Stopped between writes, not inside a fence-gate lease (which a lease would otherwise stretch
  // over the stop): a fencer waiting for a stopped lease holder escalates to the power fence and
  // kills it, a safe outcome but not the one a test stalls a process here to see (it resumes).
  endAllLocalLeases();
  process.stderr.write(`sanbox: ${PAUSE_AT_ENV}=${point}: pid ${process.pid} stops ${what}\n`);
  // The kernel stops the process before kill returns; it goes on from here at SIGCONT.
  process.kill(process.pid, 'SIGSTOP');
}

// Read once at load: the check below runs on every gated write of a node.
let insideWriteArmed = process.env[PAUSE_AT_ENV] === 'lease-checked';

/** The 'lease-checked' point (above): stops this process inside a gated write to `deviceName`, keeping its gate. */
export function pauseInsideWrite(deviceName: string, offsetBytes: number): void {
  if (!insideWriteArmed) return;
  const only = process.env[PAUSE_AT_DEVICE_ENV];
  if (only !== undefined && only !== '' && path.basename(deviceName) !== only) return;
  insideWriteArmed = false;
  process.stderr.write(`sanbox: ${PAUSE_AT_ENV}=lease-checked: pid ${process.pid} stops inside its write to ${deviceName} at offset ${offsetBytes}\n`);
  process.kill(process.pid, 'SIGSTOP');
}
