// Whether node N runs on this machine: a node process holds its slot's lock file for as long as it
// runs (src/node/node.ts takes it at join). Small on purpose: ctl.ts asks it to explain a node it
// cannot reach, and lock-run.ts and lvm-node.ts to choose between the running node and joining as
// it, without loading the node runtime.

import fs from 'node:fs';
import path from 'node:path';
import { LockFile } from '../disk/reservations.js';
import { reservationSpec, type ClusterImageInfo } from '../heartbeat/cluster-image.js';

/** The lock file of node N's slot on this machine, in `lockDir` (reservationSpec(info).lockDir). */
export function slotLockPath(lockDir: string, nodeId: number): string {
  return path.join(lockDir, `slot-${nodeId}.lock`);
}

/** True if a node process holds node N's slot lock on this machine (it is running here). */
export function slotLockHeld(info: ClusterImageInfo, nodeId: number): boolean {
  const l = new LockFile(slotLockPath(reservationSpec(info).lockDir, nodeId));
  try {
    if (!fs.existsSync(l.path)) return false;
    if (!l.tryLock('ex')) return true;
    l.unlock();
    return false;
  } finally {
    l.close();
  }
}
