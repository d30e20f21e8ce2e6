// Run a command while holding a cluster lock (`sanbox lock`, like flock(1)). The command belongs to
// the node that holds the lock: it runs in a process group of its own, recorded in the node's
// record, and dies with the node: the node kills it when it loses the lock (fenced, lockspace
// lost, control connection gone), and whoever fences the node kills the group before taking
// anything over (src/heartbeat/fencer.ts), so a command never outlives its lock inside what is
// someone else's critical section by then.
//
// Two ways to hold the lock:
//   - node N is not running here: join as node N for the command's lifetime, then leave;
//   - node N runs here (its slot lock is held): ask it through its control channel, the lock tied
//     to this connection, so the node releases it if this process goes away.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { readProcStat } from '../disk/power-fence.js';
import { modeName, type Mode } from '../dlm/compat-matrix.js';
import { DlmError, type Lock } from '../dlm/lock-manager.js';
import { SanboxError } from '../errors.js';
import { readClusterImage } from '../heartbeat/cluster-image.js';
import { connectNode, CTL_ANSWER_TIMEOUT_MS } from './ctl.js';
import { startNode, type RunningNode } from './node.js';
import { slotLockHeld } from './slot-lock.js';
import { COMMAND_STOP_POLL_MS, COMMAND_STOP_WAIT_MS } from '../timing.js';

/** Exit status when the lock could not be had (timeout, NOQUEUE conflict), as flock(1) uses 1. */
export const EXIT_NOT_LOCKED = 1;
/** Exit status when the node lost the lock (fenced) while the command ran. */
export const EXIT_FENCED = 3;
/** Signals a caller sends sanbox lock that are passed on to the command's group. */
const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const SIGNAL_NUMBERS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 };

export interface LockRunOptions {
  clusterImage: string;
  nodeId: number;
  resource: string;
  mode: Mode;
  /** Default: the cluster's timing.lockTimeoutMs. */
  timeoutMs?: number;
  noqueue: boolean;
  command: string[];
  log: (msg: string) => void;
  /** One-line notices for the user (stderr). */
  warn: (msg: string) => void;
}

/** A command in its own process group (a session of its own: setsid), which it shares with its children. */
class CommandGroup {
  readonly exit: Promise<number>;
  private constructor(
    readonly child: ChildProcess,
    readonly pgid: number,
    readonly startTicks: bigint,
  ) {
    this.exit = new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? (SIGNAL_NUMBERS[signal] ?? 0) : 0)));
    });
  }

  /**
   * Starts the command stopped: a shell stops itself (SIGSTOP) before it execs the command, so
   * nothing of the command runs until its group is recorded where a fencer finds it (run()). The
   * group is orphaned from the start (its parent is in another session), so if the node dies
   * before run(), no SIGHUP/SIGCONT ever wakes it: the command never runs unrecorded.
   */
  static async start(command: string[], env: NodeJS.ProcessEnv): Promise<CommandGroup> {
    // detached: setsid() in the child, so the command and everything it starts share a group that
    // a fencer can kill as a whole, and that is not the caller's terminal group.
    const child = spawn('/bin/sh', ['-c', 'kill -STOP $$ && exec "$@"', 'sanbox-lock', ...command], { stdio: 'inherit', env, detached: true });
    if (child.pid === undefined) {
      // spawn failed (ENOENT…): the 'error' event says why.
      return new CommandGroup(child, 0, 0n);
    }
    const pid = child.pid;
    const t0 = performance.now();
    let st = readProcStat(pid);
    while (st !== null && st.state !== 'T' && st.state !== 'Z') {
      if (performance.now() - t0 > COMMAND_STOP_WAIT_MS) throw new SanboxError('EINVAL', `the command's shell (pid ${pid}) did not stop itself within ${COMMAND_STOP_WAIT_MS} ms`);
      await new Promise((r) => setTimeout(r, COMMAND_STOP_POLL_MS));
      st = readProcStat(pid);
    }
    return new CommandGroup(child, pid, st?.startTicks ?? 0n);
  }

  /** Lets the stopped command run (once its group is recorded). */
  run(): void {
    this.signal('SIGCONT');
  }

  signal(sig: NodeJS.Signals): void {
    if (this.pgid === 0) return;
    try {
      process.kill(-this.pgid, sig);
    } catch {
      // the group is gone already
    }
  }

  /** Passes the caller's signals on to the group until the returned function is called. */
  forwardSignals(): () => void {
    const handlers = FORWARDED_SIGNALS.map((sig) => {
      const h = (): void => this.signal(sig);
      process.on(sig, h);
      return [sig, h] as const;
    });
    return () => {
      for (const [sig, h] of handlers) process.off(sig, h);
    };
  }
}

function commandEnv(o: LockRunOptions): NodeJS.ProcessEnv {
  return { ...process.env, SANBOX_LOCK_RESOURCE: o.resource, SANBOX_LOCK_MODE: modeName(o.mode), SANBOX_NODE: String(o.nodeId) };
}

/** Records the command's group in this node's record, so a fencer kills it with the node. */
function recordGroup(node: RunningNode, group: CommandGroup | null): Promise<void> {
  return node.recordCommandGroup(group?.pgid ?? 0, group?.startTicks ?? 0n);
}

/** Holds the lock as node N (joining for the command's lifetime); returns the exit status. */
async function runAsNode(o: Required<LockRunOptions>): Promise<number> {
  const t0 = performance.now();
  let lostReason: string | undefined;
  let onLost: (() => void) | undefined;
  const lose = (reason: string): void => {
    lostReason ??= reason;
    onLost?.();
  };
  return withJoinedNode({ clusterImage: o.clusterImage, nodeId: o.nodeId, log: o.log, onSelfFence: (r) => lose(`fenced: ${r}`) }, async (node) => {
    const ls = await node.lockspace();
    o.log(`joined in ${(performance.now() - t0).toFixed(0)} ms; requesting ${modeName(o.mode)} on ${o.resource}`);
    let lock: Lock;
    try {
      lock = await ls.lock(o.resource, o.mode, { timeoutMs: o.timeoutMs, noqueue: o.noqueue });
    } catch (err) {
      if (err instanceof DlmError && (err.code === 'ETIMEDOUT' || err.code === 'EAGAIN')) {
        o.warn(err.message);
        return EXIT_NOT_LOCKED;
      }
      throw err;
    }
    o.log(`granted ${modeName(o.mode)} on ${o.resource} after ${(performance.now() - t0).toFixed(0)} ms`);
    const group = await CommandGroup.start(o.command, commandEnv(o));
    await recordGroup(node, group);
    group.run();
    const unforward = group.forwardSignals();
    onLost = () => {
      o.warn(`node ${o.nodeId} lost its lock on ${o.resource} (${lostReason}): killing the command`);
      group.signal('SIGKILL');
    };
    if (lostReason !== undefined) onLost();
    // The lock manager marks a lock lost when the lockspace goes (fenced, closed): the command goes too.
    const watch = setInterval(() => {
      if (lock.lost !== undefined) lose(lock.lost);
    }, node.info.timing.intervalMs);
    let status: number;
    try {
      status = await group.exit;
    } finally {
      clearInterval(watch);
      unforward();
    }
    if (lostReason !== undefined) return EXIT_FENCED;
    await recordGroup(node, null);
    await lock.unlock();
    return status;
  });
}

/**
 * Joins as node N for the length of `fn` (no control socket: the node lives only for this
 * command), then leaves. `sanbox lock` and the LVM commands given --cluster C --node N use it.
 */
export async function withJoinedNode<T>(o: { clusterImage: string; nodeId: number; log: (msg: string) => void; onSelfFence?: (reason: string) => void }, fn: (node: RunningNode) => Promise<T>): Promise<T> {
  const node = await startNode({ clusterImage: o.clusterImage, nodeId: o.nodeId, control: false, log: o.log, onSelfFence: o.onSelfFence });
  try {
    return await fn(node);
  } finally {
    await node.stop().catch(() => undefined);
  }
}

/** Holds the lock through running node N's control channel; returns the exit status. */
async function runThroughNode(o: Required<LockRunOptions>): Promise<number> {
  const c = await connectNode(o.clusterImage, o.nodeId);
  try {
    o.log(`node ${o.nodeId} runs here: requesting ${modeName(o.mode)} on ${o.resource} through its control channel`);
    try {
      await c.request({ cmd: 'lock', resource: o.resource, mode: modeName(o.mode), timeoutMs: o.timeoutMs, noqueue: o.noqueue, scope: 'connection' }, o.timeoutMs + CTL_ANSWER_TIMEOUT_MS);
    } catch (err) {
      if (/timed out|EAGAIN|NOQUEUE|held in|conflict/i.test((err as Error).message)) {
        o.warn((err as Error).message);
        return EXIT_NOT_LOCKED;
      }
      throw err;
    }
    const group = await CommandGroup.start(o.command, commandEnv(o));
    await c.request({ cmd: 'adopt-group', pgid: group.pgid, startTicks: group.startTicks.toString() });
    group.run();
    const unforward = group.forwardSignals();
    let lost = false;
    // The node going away (killed, fenced, left) closes the connection: the lock is gone, so is the command.
    c.client.onClose(() => {
      lost = true;
      o.warn(`node ${o.nodeId} went away while holding ${o.resource}: killing the command`);
      group.signal('SIGKILL');
    });
    let status: number;
    try {
      status = await group.exit;
    } finally {
      unforward();
    }
    if (lost) return EXIT_FENCED;
    await c.request({ cmd: 'adopt-group', pgid: 0, startTicks: '0' });
    await c.request({ cmd: 'unlock', resource: o.resource });
    return status;
  } finally {
    c.close();
  }
}

export async function runLocked(opts: LockRunOptions): Promise<number> {
  // Checked before the lock is taken, with a shell's exit statuses: 127 not found, 126 not
  // executable (1 means a lock timeout).
  const missing = commandProblem(opts.command[0]!);
  if (missing) {
    opts.warn(`${opts.command[0]}: ${missing.message}`);
    return missing.status;
  }
  const info = await readClusterImage(opts.clusterImage);
  const o: Required<LockRunOptions> = { ...opts, timeoutMs: opts.timeoutMs ?? info.timing.lockTimeoutMs };
  return slotLockHeld(info, o.nodeId) ? runThroughNode(o) : runAsNode(o);
}

/** Why `cmd` cannot be run, as a shell would say it and with its exit status; undefined if it can. */
export function commandProblem(cmd: string): { message: string; status: number } | undefined {
  const candidates = cmd.includes('/') ? [cmd] : (process.env.PATH ?? '').split(':').filter((d) => d !== '').map((d) => path.join(d, cmd));
  let found = false;
  for (const c of candidates) {
    try {
      if (!fs.statSync(c).isFile()) continue;
      found = true;
      fs.accessSync(c, fs.constants.X_OK);
      return undefined;
    } catch {
      // not here, or not executable: keep looking
    }
  }
  return found ? { message: 'permission denied (not executable)', status: 126 } : { message: 'command not found', status: 127 };
}
