// Whether a spinning waiter would take a CPU from someone (the lock manager's adaptive spin).
//
// A request at the head of its queue re-reads its window for up to SPIN_MS instead of sleeping,
// because a holder running on another CPU lets go within microseconds. That only pays while every
// runnable task has a CPU: once there are more runnable tasks than CPUs, the spin runs on a CPU
// the holder (or the next request, or anyone) is waiting for, and the release it waits for comes
// later because of it. With 8 processes on 2 CPUs the holder was preempted by spinners, and on a
// machine shared with other work the spin mostly burnt other processes' time. The kernel says how
// many tasks are runnable right now: the fourth field of /proc/loadavg ("running/total", every
// CPU, the reader included). Linux's own mutexes spin only while the owner is on a CPU; we cannot
// see the holder (another process, maybe another machine), but we can see whether the CPUs are
// oversubscribed.
//
// Read with one pread of a descriptor kept open (a few µs), only when a spin would start, and not
// for a pair of processes taking turns (lock-manager.ts, nearHeadOfPair). Where /proc/loadavg
// cannot be read, spinning is allowed (the behaviour before this module).

import fs from 'node:fs';
import os from 'node:os';

const LOADAVG_PATH = '/proc/loadavg';
/** "0.00 0.00 0.00 1234/5678 99999\n" fits with room to spare. */
const LOADAVG_BYTES_MAX = 128;

let fd: number | undefined | null; // null: cannot be read here, do not try again
const buf = Buffer.alloc(LOADAVG_BYTES_MAX);
const cpus = os.availableParallelism();

/** Tasks runnable right now on the machine (the reader included), or undefined where unknown. */
export function runnableTasks(): number | undefined {
  if (fd === null) return undefined;
  try {
    fd ??= fs.openSync(LOADAVG_PATH, 'r');
    const n = fs.readSync(fd, buf, 0, LOADAVG_BYTES_MAX, 0);
    return parseRunnable(buf.toString('latin1', 0, n));
  } catch {
    fd = null;
    return undefined;
  }
}

/** The "running" count of /proc/loadavg's text, or undefined if it is not in the expected form. */
export function parseRunnable(text: string): number | undefined {
  const m = /^\S+ \S+ \S+ (\d+)\/\d+ /.exec(text);
  return m === null ? undefined : Number(m[1]);
}

/** Whether every runnable task (this one included) has a CPU: a spin then takes no one's CPU. */
export function cpuToSpare(): boolean {
  const running = runnableTasks();
  return running === undefined || running <= cpus;
}
