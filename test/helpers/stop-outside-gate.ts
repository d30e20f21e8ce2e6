// Stopping a node process (SIGSTOP) between two writes, not inside its fence gate on one device: a
// node stopped inside it holds the gate, so a disk fence cannot complete there and escalates to the
// power fence (src/heartbeat/fencer.ts preempt) — another case than a test of the disk fence means.

import { readProcStat } from '../../src/disk/power-fence.js';
import { LockFile } from '../../src/disk/reservations.js';
import { waitFor } from './tmp.js';

/** Stop-and-probe rounds before giving up on catching the process outside its gate. */
const STOP_TRIES_MAX = 50;
/** Bound on a signalled process showing as stopped in /proc. */
const STOPPED_MS = 2000;

/**
 * SIGSTOPs `pid` at a moment it does not hold its gate (`gateLockPath`: the node's gate lock on
 * the device, reservations.ts gateLockPath), probed with a non-blocking exclusive attempt; when it
 * is held, resumes the process briefly and tries again. False if no try caught it outside.
 */
export async function stopOutsideGate(pid: number, gateLockPath: string, signal: (sig: NodeJS.Signals) => void = (sig) => process.kill(pid, sig)): Promise<boolean> {
  const probe = new LockFile(gateLockPath);
  try {
    for (let i = 0; i < STOP_TRIES_MAX; i++) {
      signal('SIGSTOP');
      await waitFor(() => readProcStat(pid)?.state === 'T', STOPPED_MS, `pid ${pid} stopped`);
      if (probe.tryLock('ex')) {
        probe.unlock();
        return true;
      }
      signal('SIGCONT');
      await new Promise((r) => setTimeout(r, 5));
    }
    return false;
  } finally {
    probe.close();
  }
}
