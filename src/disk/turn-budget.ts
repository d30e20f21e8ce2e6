// How long I/O may run inside its call before the event loop must turn.
//
// sanbox's local-file I/O runs inside the call (pread/pwrite on the main thread: a page-cache hit
// costs about a microsecond, less than a trip through the thread pool), and the promise forms of
// FileDisk, an LV and a cluster-locked LV return an already settled promise. A caller that awaits
// such I/O in a loop therefore never yields: its awaits resolve as microtasks, and the timers (the
// heartbeat, the self-fence watchdog, the control channel) wait until the loop ends. A 64 MiB
// `fs put` held a node's loop for up to 864 ms at load 27 (review, 2026-12-06), half of the local
// preset's self-fence deadline; since every write of a node checks its heartbeat lease, a node
// starved past it fences itself on its next write.
//
// So the promise forms ask mayRunInCall() first. A ticker (an unref'd interval) marks each turn of
// the loop; when none was seen for SYNC_RUN_BUDGET_MS, I/O is done in the next timers phase instead
// (deferToNextTurn), where the overdue heartbeat timer runs before it. The ticker stops itself when
// no I/O asked for a while, so an idle process is not woken for it.
//
// Order. Local-file I/O lands in issue order, and callers rely on it (a later write of a sector
// wins; the lock manager's cell writes, review 4 finding 2). A deferred op runs a turn later, so
// while ANY deferred op is pending mayRunInCall() says no and every later op joins the one FIFO
// queue behind it; the queue drains in issue order, SYNC_RUN_BUDGET_MS per timers phase at most.
// One queue for the process, not one per device: several handles of one image are normal (a
// node's device and its LVs' PVs; a view and its file), and per-handle queues would let a write
// through one handle pass an earlier one through another. The price is that a starved loop defers
// every device's I/O for a turn, which is what the budget is for anyway. FileDisk's discard and
// flush take their turn in the queue too (inOrder / afterDeferred). Synchronous forms called
// directly (readSync/writeSync) are the caller's explicit choice and bypass the queue.

import { assert } from '../errors.js';

/**
 * The longest a run of in-call I/O may hold the event loop. Well under the smallest self-fence
 * margin (timing.ts SELF_FENCE_MARGIN_MS_MIN, 300 ms), and long enough that a loop of page-cache
 * I/O pays one timer turn (≥ 1 ms) per 30 ms: about 3 % of its throughput, in long runs only.
 */
export const SYNC_RUN_BUDGET_MS = 30;
/** How often the ticker marks a turn of the loop (a third of the budget: an idle loop is never taken for a starved one). */
const TICK_MS = 10;
/** The clock is read on every CLOCK_EVERY_OPS-th ask (a clock read is a sizeable part of a 1 µs I/O). */
const CLOCK_EVERY_OPS = 8;
/** Ticks without any I/O after which the ticker stops (1 s). */
const IDLE_TICKS_MAX = 100;

assert(TICK_MS * 2 < SYNC_RUN_BUDGET_MS, 'the ticker must tick at least twice per budget');

let ticker: NodeJS.Timeout | undefined;
let lastTickMs = 0;
let asksSinceClock = 0;
let asksSinceTick = 0;
let idleTicks = 0;
let starved = false;

function tick(): void {
  lastTickMs = performance.now();
  starved = false;
  if (asksSinceTick === 0 && ++idleTicks > IDLE_TICKS_MAX) {
    clearInterval(ticker);
    ticker = undefined;
  } else if (asksSinceTick > 0) idleTicks = 0;
  asksSinceTick = 0;
}

/** Ops deferred to a later turn, in issue order (drained by drainDeferred). */
const deferred: (() => void)[] = [];
let drainArmed = false;

/**
 * Whether I/O may run inside the call now: false once the loop has not turned for
 * SYNC_RUN_BUDGET_MS, and false while an earlier op waits in the deferred queue (issue order).
 */
export function mayRunInCall(): boolean {
  asksSinceTick++;
  if (ticker === undefined) {
    tick();
    ticker = setInterval(tick, TICK_MS);
    ticker.unref();
    if (deferred.length === 0) return true;
  }
  if (starved || deferred.length > 0) return false;
  if (++asksSinceClock < CLOCK_EVERY_OPS) return true;
  asksSinceClock = 0;
  starved = performance.now() - lastTickMs > SYNC_RUN_BUDGET_MS;
  return !starved;
}

/** Whether an op waits in the deferred queue (a flush must then wait its turn: afterDeferred). */
export function deferredPending(): boolean {
  return deferred.length > 0;
}

/**
 * Runs the queue in the timers phase, oldest first, for at most SYNC_RUN_BUDGET_MS; the rest
 * waits for the next timers phase, so a long queue does not hold the loop either.
 */
function drainDeferred(): void {
  drainArmed = false;
  const startMs = performance.now();
  let ran = 0;
  while (ran < deferred.length) {
    deferred[ran++]!();
    if (ran % CLOCK_EVERY_OPS === 0 && performance.now() - startMs > SYNC_RUN_BUDGET_MS) break;
  }
  deferred.splice(0, ran);
  if (deferred.length > 0) armDrain();
}

function armDrain(): void {
  if (drainArmed) return;
  drainArmed = true;
  setTimeout(drainDeferred, 0);
}

/**
 * Runs `op` in a later timers phase (after timers already due, such as an overdue heartbeat),
 * after every op deferred before it.
 */
export function deferToNextTurn<T>(op: () => T): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    deferred.push(() => {
      try {
        resolve(op());
      } catch (err) {
        reject(err as Error);
      }
    });
    armDrain();
  });
}

/** Runs `op` inside the call when mayRunInCall() allows, else in its turn in the deferred queue. */
export function inOrder<T>(op: () => T): Promise<T> {
  if (!mayRunInCall()) return deferToNextTurn(op);
  try {
    return Promise.resolve(op());
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

/** Resolves once every op deferred before the call has run (at once when none is pending). */
export function afterDeferred(): Promise<void> {
  return deferred.length === 0 ? Promise.resolve() : deferToNextTurn(() => undefined);
}
