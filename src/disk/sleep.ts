// Pauses for the disk layer's bounded waits.

const SLEEP_CELL = new Int32Array(new SharedArrayBuffer(4));

/**
 * Blocks the calling thread for `ms` without spinning: for the synchronous write path (fence gate
 * lock files, injected latency and stalls), which cannot yield to the event loop.
 */
export function sleepSyncMs(ms: number): void {
  Atomics.wait(SLEEP_CELL, 0, 0, ms);
}

export function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
