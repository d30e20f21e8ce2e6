// The node loop (`sanbox node`): join, report membership events, run until told to stop (SIGINT,
// SIGTERM, `ctl … leave`) or until the node fences itself, then leave.
// tools/commands/cluster-actions.ts only parses options and prints what this reports.

import type { MembershipEvent } from '../heartbeat/membership-api.js';
import { NodeMounts, registerMountCommands } from './mount.js';
import { NodeActivations, registerActivationCommands } from './activation.js';
import { registerFsCommands } from './fs-commands.js';
import { startNode, type StartNodeOptions } from './node.js';
import { EXIT_SELF_FENCED } from './exit-status.js';

/** Signals that make a node leave cleanly. */
const LEAVE_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

export interface NodeLoopOutput {
  /** `data`: the message's structured facts (a recovery's outcome), printed with it under --json. */
  log(msg: string, data?: Record<string, unknown>): void;
  event(ev: MembershipEvent): void;
}

/** Runs node `opts.nodeId` until it leaves or fences itself; returns the exit status. */
export async function runNode(opts: Omit<StartNodeOptions, 'log' | 'onSelfFence'> & { mounts?: string[] }, out: NodeLoopOutput): Promise<number> {
  const t0 = Date.now();
  let exitCode = 0;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  let mounts: NodeMounts | undefined;
  let activations: NodeActivations | undefined;
  const node = await startNode({
    ...opts,
    commands: [...(opts.commands ?? []), (control, n) => {
      activations = registerActivationCommands(control, n);
      mounts = registerMountCommands(control, n, out.log, activations);
      registerFsCommands(control, n, mounts);
    }],
    log: out.log,
    onMembershipEvent: out.event,
    onSelfFence: () => {
      exitCode = EXIT_SELF_FENCED;
      done();
    },
  });
  activations ??= new NodeActivations(node);
  mounts ??= new NodeMounts(node, out.log, activations);
  for (const vol of opts.mounts ?? []) {
    try {
      const m = await mounts.mount(vol);
      out.log(`mounted ${m.volume} in slot ${m.slot}${m.replayed ? ' (its journal was dirty and was replayed)' : ''}`);
    } catch (err) {
      // A refused mount ends the node: it was asked to run with the volume mounted.
      await node.stop();
      throw err;
    }
  }
  out.log(`ready after ${Date.now() - t0} ms`);
  for (const sig of LEAVE_SIGNALS) process.once(sig, done);
  // A `leave` on the control socket stops the heartbeat: then the loop ends too.
  const poll = setInterval(() => {
    if (!node.heartbeat.isRunning && node.heartbeat.fencedReason === undefined) done();
  }, node.info.timing.intervalMs);
  await finished;
  clearInterval(poll);
  for (const sig of LEAVE_SIGNALS) process.off(sig, done);
  await node.stop();
  out.log(exitCode === EXIT_SELF_FENCED ? 'stopped: fenced' : 'left the cluster');
  return exitCode;
}
