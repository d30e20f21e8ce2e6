// Every timing value of sanbox, in this one file (as sanlock's timeouts.c): the heartbeat and
// protocol values derived from three named inputs, and at the end the fixed bounds on local work.
// docs/heartbeat.md explains the inequality that makes self-fencing safe.
//
// Inputs:
//   intervalMs     — a node writes its heartbeat block and reads all blocks once per interval.
//   deadThreshold  — intervals without a seq change after which a node is dead (o2hb's
//                    dead_threshold, reference/ocfs2.md §4.6).
//   ioTimeoutMs    — a single heartbeat write that has not completed within this time has failed.
//
// Derived (all on the observer's or writer's monotonic clock):
//   deadMs          = intervalMs × deadThreshold            written as hb_dead_ms; a peer is dead
//                     when its seq has not moved for max(our deadMs, its hb_dead_ms).
//   selfFenceMs     = deadMs − max(intervalMs, SELF_FENCE_MARGIN_MS_MIN)
//                     a node whose last successful heartbeat write STARTED this long ago stops
//                     all its I/O. With o2cb timing this is o2hb's write timeout,
//                     interval × (threshold − 1) = 60 s; scaled-down timings keep at least
//                     SELF_FENCE_MARGIN_MS_MIN of margin for a loaded machine's timer lag.
//   watchdogMs      = intervalMs / 4                         how often the self-fence deadline is
//                     checked, independently of the heartbeat loop.
//   joinProbeMs     = 3 × intervalMs (at least 2 writes of a live peer at the cluster's interval),
//                     how long a joining node watches its slot for another live writer.
//   fenceGateWaitMs = ioTimeoutMs                            how long a disk fence waits for a
//                     victim stalled inside a write before escalating to the power fence.
//   powerFenceWaitMs= 5 × ioTimeoutMs (at least 2 s)         bound on waiting for a SIGKILLed pid.
//   powerFencePollMs= intervalMs / 20 (at least 1)           how often that wait looks (5 ms local).
//   fenceRetryMsMax = 10 × ioTimeoutMs                       longest pause between two attempts to
//                     fence the same dead node (a failed fence failed on I/O or a stuck victim:
//                     ten I/O timeouts give the cause time to clear; 5 s local).
//   reservationLockWaitMs = 10 × ioTimeoutMs                 bound on waiting for another node's
//                     PR command (they take well under a millisecond; 5 s local).
//   lockPollMinMs   = intervalMs / 100 (at least 1)          the lock manager's first re-read of a
//   lockPollMaxMs   = intervalMs / 2                         contended resource, doubling up to the
//                     max, which bounds the hand-off latency when no wake-up hint arrives (50 ms local).
//   lockTimeoutMs   = 5 × deadMs                             default wait for a lock: outlasts a
//                     holder's death, its fencing and a few queued holders (10 s local).
//   nbdIoTimeoutMs  = 5 × deadMs                             an NBD request outstanding this long
//                     is failed; heartbeat writes have their own, tighter ioTimeoutMs (10 s local).
//   quorumHoldMs    = 5 × deadMs                             how long a node without quorum holds
//                     (queues) I/O to volumes of shared and private containers and to the ocfs2
//                     volumes it mounted, counted from the loss, before failing it with EIO
//                     (src/disk/quorum-hold.ts; dm-multipath's no_path_retry). Quorum comes back
//                     only when peers are seen up again: a peer stalled past the dead time fences
//                     itself when it resumes, so the minority waits for restarted peers to join,
//                     which takes their start, join probe and a few heartbeat rounds — well inside
//                     five dead times (10 s local, 310 s o2cb).
//
// The derived values are recorded in the cluster image's config region (src/format/cluster-image.ts,
// `derived timing`, in the order of DERIVED_TIMING_FIELDS), so every node of a cluster uses the
// same values even if sanbox versions derive them differently; an image recorded before a field
// existed gets that field derived from its inputs.
//
// Safety (docs/heartbeat.md): selfFenceMs + watchdogMs < deadMs; see checkTiming below.

import { SanboxError } from './errors.js';

export interface TimingInputs {
  intervalMs: number;
  deadThreshold: number;
  ioTimeoutMs: number;
}

export interface Timing extends TimingInputs {
  preset: string;
  deadMs: number;
  selfFenceMs: number;
  watchdogMs: number;
  joinProbeMs: number;
  fenceGateWaitMs: number;
  powerFenceWaitMs: number;
  powerFencePollMs: number;
  fenceRetryMsMax: number;
  reservationLockWaitMs: number;
  lockPollMinMs: number;
  lockPollMaxMs: number;
  lockTimeoutMs: number;
  nbdIoTimeoutMs: number;
  quorumHoldMs: number;
  /** o2hb: a slot is live after this many observed seq changes (O2HB_LIVE_THRESHOLD is 2; we count changes after our first read). */
  liveChanges: number;
}

/**
 * Presets. `local`: scaled for processes on one machine — a 100 ms interval and death after
 * 2 s. `o2cb`: the real o2hb defaults (O2HB_REGION_TIMEOUT_MS 2000, dead_threshold 31,
 * 62 s dead time, 60 s write timeout; reference/ocfs2.md §4.6).
 */
export const TIMING_PRESETS: Record<'local' | 'o2cb', TimingInputs> = {
  local: { intervalMs: 100, deadThreshold: 20, ioTimeoutMs: 500 },
  o2cb: { intervalMs: 2000, deadThreshold: 31, ioTimeoutMs: 10_000 },
};
export type TimingPreset = keyof typeof TIMING_PRESETS;

/**
 * Least time between a node fencing itself and its peers declaring it dead. o2hb's margin is one
 * 2 s interval; at a 100 ms interval one interval is within the timer lag of a loaded machine.
 */
export const SELF_FENCE_MARGIN_MS_MIN = 300;
/** o2hb only accepts dead thresholds above 2 (reference/ocfs2.md §4.6). */
export const DEAD_THRESHOLD_MIN = 3;
/** Bounds that keep a typo from producing a cluster that never (or always) declares death. */
export const INTERVAL_MS_MIN = 10;
export const INTERVAL_MS_MAX = 60_000;

export function deriveTiming(inputs: TimingInputs, preset = 'custom'): Timing {
  const t: Timing = {
    ...inputs,
    preset,
    deadMs: inputs.intervalMs * inputs.deadThreshold,
    selfFenceMs: inputs.intervalMs * inputs.deadThreshold - Math.max(inputs.intervalMs, SELF_FENCE_MARGIN_MS_MIN),
    watchdogMs: Math.max(1, Math.floor(inputs.intervalMs / 4)),
    joinProbeMs: 3 * inputs.intervalMs,
    fenceGateWaitMs: inputs.ioTimeoutMs,
    powerFenceWaitMs: Math.max(2000, 5 * inputs.ioTimeoutMs),
    powerFencePollMs: Math.max(1, Math.floor(inputs.intervalMs / 20)),
    fenceRetryMsMax: 10 * inputs.ioTimeoutMs,
    reservationLockWaitMs: 10 * inputs.ioTimeoutMs,
    lockPollMinMs: Math.max(1, Math.floor(inputs.intervalMs / 100)),
    lockPollMaxMs: Math.max(1, Math.floor(inputs.intervalMs / 2)),
    lockTimeoutMs: 5 * inputs.intervalMs * inputs.deadThreshold,
    nbdIoTimeoutMs: 5 * inputs.intervalMs * inputs.deadThreshold,
    quorumHoldMs: 5 * inputs.intervalMs * inputs.deadThreshold,
    liveChanges: 1,
  };
  checkTiming(t);
  return t;
}

/** The derived values recorded in the config region, in this order (append only: the order is on disk). */
export const DERIVED_TIMING_FIELDS = [
  'deadMs',
  'selfFenceMs',
  'watchdogMs',
  'joinProbeMs',
  'fenceGateWaitMs',
  'powerFenceWaitMs',
  'powerFencePollMs',
  'fenceRetryMsMax',
  'reservationLockWaitMs',
  'lockPollMinMs',
  'lockPollMaxMs',
  'lockTimeoutMs',
  'nbdIoTimeoutMs',
  'quorumHoldMs',
] as const satisfies readonly (keyof Timing)[];

/** The values to record for `t`, in DERIVED_TIMING_FIELDS order. */
export function recordedTiming(t: Timing): number[] {
  return DERIVED_TIMING_FIELDS.map((k) => t[k]);
}

/**
 * The timing of an image: derived from its inputs, then overlaid with the values it recorded (an
 * older image records fewer: the rest stay derived). The result must pass checkTiming.
 */
export function timingFromRecord(inputs: TimingInputs, preset: string, recorded: readonly number[]): Timing {
  const t = deriveTiming(inputs, preset);
  DERIVED_TIMING_FIELDS.forEach((k, i) => {
    const v = recorded[i];
    if (v !== undefined) t[k] = v;
  });
  checkTiming(t);
  return t;
}

export function presetTiming(name: string): Timing {
  if (!(name in TIMING_PRESETS)) throw new SanboxError('EINVAL', `unknown timing preset '${name}' (known: ${Object.keys(TIMING_PRESETS).join(', ')})`);
  return deriveTiming(TIMING_PRESETS[name as TimingPreset], name);
}

/**
 * The inequality (docs/heartbeat.md): let S be the start of a node's last successful heartbeat
 * write. Peers saw that write no earlier than S, so they declare death no earlier than
 * S + deadMs. The node itself stops all I/O by S + selfFenceMs + watchdogMs (its watchdog timer
 * notices within one watchdog period; a write still in flight is refused by its own gate). So we
 * need selfFenceMs + watchdogMs < deadMs, i.e. watchdogMs < intervalMs, with a margin. A
 * heartbeat write may take up to ioTimeoutMs and must not by itself exhaust the self-fence budget:
 * ioTimeoutMs + intervalMs <= selfFenceMs.
 */
export function checkTiming(t: Timing): void {
  const bad = (msg: string): never => {
    throw new SanboxError('EINVAL', `bad heartbeat timing: ${msg}`);
  };
  for (const k of ['intervalMs', 'deadThreshold', 'ioTimeoutMs'] as const) {
    if (!Number.isInteger(t[k]) || t[k] <= 0) bad(`${k} must be a positive integer, not ${t[k]}`);
  }
  if (t.intervalMs < INTERVAL_MS_MIN || t.intervalMs > INTERVAL_MS_MAX) bad(`interval ${t.intervalMs} ms is outside ${INTERVAL_MS_MIN}..${INTERVAL_MS_MAX}`);
  if (t.deadThreshold < DEAD_THRESHOLD_MIN) bad(`dead threshold ${t.deadThreshold} must be at least ${DEAD_THRESHOLD_MIN}`);
  if (!(t.selfFenceMs + t.watchdogMs < t.deadMs)) bad(`self-fence deadline ${t.selfFenceMs} + ${t.watchdogMs} ms is not below the dead time ${t.deadMs} ms`);
  for (const k of DERIVED_TIMING_FIELDS) if (!Number.isSafeInteger(t[k]) || t[k] <= 0) bad(`${k} must be a positive integer, not ${t[k]}`);
  if (t.lockPollMinMs > t.lockPollMaxMs) bad(`lock poll ${t.lockPollMinMs}..${t.lockPollMaxMs} ms is an empty range`);
  if (!(t.ioTimeoutMs + t.intervalMs <= t.selfFenceMs)) bad(`I/O timeout ${t.ioTimeoutMs} ms + interval ${t.intervalMs} ms exceeds the self-fence deadline ${t.selfFenceMs} ms`);
}

/**
 * What library code uses when no cluster image tells it the cluster's timing (a lockspace or NBD
 * device opened outside a node, tests, benchmarks): the local preset's derived values. A node
 * passes its cluster's recorded values instead.
 */
export const LOCAL_TIMING: Timing = deriveTiming(TIMING_PRESETS.local, 'local');

/**
 * Bound on a layout change's lock-out (lvextend, lvreduce, lvremove, each pvmove chunk run with
 * --cluster; src/volume/lockout.ts): from the changer's request for the LV locks EX to holding
 * them. Each node doing I/O through the LV sees the blocking notice within one poll of its lock
 * manager (lockPollMaxMs; a wake-up hint is sooner), drains its in-flight I/O — a write finishes
 * or fails within ioTimeoutMs, the bound the fence gate holds every write to — and releases with
 * one cell write; the changer sees the release within another lockPollMaxMs. The second
 * ioTimeoutMs is margin for a loaded machine (the local preset: 2 × 50 + 2 × 500 = 1100 ms).
 * lvmlockd has no such bound: it fails at once (our --nowait).
 */
export function layoutLockoutBoundMs(t: Timing): number {
  return 2 * t.lockPollMaxMs + 2 * t.ioTimeoutMs;
}

/**
 * Bound on the whole change once the changer holds the VG lock: the lock-out above, then the
 * commit — lvm2's protocol (lvm2.md §4.3) writes the text, the precommit header and the commit
 * header in every metadata area, each a write within ioTimeoutMs on a healthy disk, and reads the
 * VG before and after (one more each).
 */
export function layoutChangeBoundMs(t: Timing): number {
  return layoutLockoutBoundMs(t) + 5 * t.ioTimeoutMs;
}

// ---------------------------------------------------------------------------------------------
// Fixed bounds. These do not scale with a cluster's heartbeat: they bound local work (a spawned
// helper, a control connection, a demo step, a poll of a local file) or follow a fixed fact of the
// real systems. Each says where it comes from.

/** The join probe watches at most this long: more than the kernel's 2 s seq step (ocfs2.md §4.4). */
export const JOIN_PROBE_MS_MAX = 3000;
/** Shortest pause between two reads of the slot during the join probe. */
export const JOIN_PROBE_POLL_MS_MIN = 5;

/**
 * How long `recover` watches a slot's o2hb block before calling its node gone: two of the
 * kernel's 2 s heartbeat steps (O2HB_REGION_TIMEOUT_MS, reference/ocfs2.md §4.6) plus margin, so a
 * live kernel node is seen writing at least once.
 */
export const LIVENESS_OBSERVE_MS_DEFAULT = 4500;
/** How often the heartbeat block is reread within that window. */
export const LIVENESS_POLL_MS = 250;

/** Default bound on one control request (connect, send, answer): a live node answers in milliseconds. */
export const CONTROL_REQUEST_TIMEOUT_MS_DEFAULT = 5000;
/**
 * Bound on connecting to a node's control socket: a live node accepts at once (even when its
 * event loop is busy); a stopped (SIGSTOP) node is caught by the request's bound.
 */
export const CTL_CONNECT_TIMEOUT_MS = 1000;
/** Bound on a control request's answer (a lock request adds its own lock timeout to this). */
export const CTL_ANSWER_TIMEOUT_MS = CONTROL_REQUEST_TIMEOUT_MS_DEFAULT;
/** How long a launched node may take to leave after SIGTERM before it is killed. */
export const LEAVE_TIMEOUT_MS = 5000;
/** How often the launcher looks at the event lines it collected. */
export const LAUNCHER_EVENT_POLL_MS = 10;
/** Bounds on the demo's steps (the local preset declares death in ~2 s; these allow a loaded machine). */
export const DEMO_READY_TIMEOUT_MS = 10_000;
export const DEMO_SEE_EACH_OTHER_TIMEOUT_MS = 10_000;
export const DEMO_FENCE_MARGIN_MS = 10_000;
/** Bound on a `sanbox lock` command's shell stopping itself before exec (a fork and a kill(2): milliseconds), and its poll. */
export const COMMAND_STOP_WAIT_MS = 5000;
export const COMMAND_STOP_POLL_MS = 1;

/** How often a stalled operation or a fault control file is rechecked. */
export const FAULT_CONTROL_POLL_MS = 10;
/** Default bound on connecting to and negotiating with an NBD server (loopback: about a millisecond). */
export const NBD_CONNECT_TIMEOUT_MS_DEFAULT = 5_000;
/** Retry period of the reservation store's non-blocking lock attempts. */
export const PR_LOCK_RETRY_MS = 1;
/** Bounds on the util-linux helpers we spawn (fallocate --punch-hole, blockdev --getsize64); a hung one counts as failed. */
export const PUNCH_HOLE_TIMEOUT_MS = 10_000;
export const BLOCKDEV_TIMEOUT_MS = 5000;
/** How long an LVM command waits for another one's metadata change on this host before giving up. */
export const VG_LOCK_WAIT_MS = 30_000;
/** Poll interval of the VG lock's non-blocking flock (a blocking flock would freeze the event loop). */
export const VG_LOCK_POLL_MS = 5;
/** fio's runs in `sanbox bench` are bounded: the workload's time plus this for start-up and its JSON. */
export const FIO_SLACK_MS = 30_000;
/** The finest bucket of `sanbox bench`'s throughput timeline. */
export const TIMELINE_BUCKET_MIN_MS = 20;
/** How often `sanbox bench` reports progress while a workload runs. */
export const PROGRESS_INTERVAL_MS = 100;
