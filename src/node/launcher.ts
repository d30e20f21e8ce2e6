// The local-cluster launcher: starts `sanbox node` processes (separate OS processes, as the
// nodes of a real cluster are), collects their JSON event lines, and kills and reaps them.
// Every wait is bounded; `stopAll` leaves no child behind.

import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SanboxError } from '../errors.js';
import type { MembershipEvent } from '../heartbeat/membership-api.js';
import type { RecoveryOutcome } from './recovery.js';
import { LAUNCHER_EVENT_POLL_MS, LEAVE_TIMEOUT_MS } from '../timing.js';

/** bin/sanbox.js, from dist/src/node/launcher.js. */
export const SANBOX_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/sanbox.js');


export interface NodeEventLine {
  t: string;
  node: number;
  event?: MembershipEvent['kind'];
  peer?: number;
  msg?: string;
  /** A recovery's outcome, on the line that reports it (src/node/recovery.ts). */
  recovery?: RecoveryOutcome;
  /** Observer's wall clock when the line arrived. */
  receivedAtMs: number;
}

export class LaunchedNode {
  readonly events: NodeEventLine[] = [];
  stderr = '';
  private readonly exitPromise: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly nodeId: number,
    readonly child: ChildProcess,
  ) {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.events.push({ ...(JSON.parse(line) as Omit<NodeEventLine, 'receivedAtMs'>), receivedAtMs: Date.now() });
        } catch {
          // not a JSON line: ignore (the node logs JSON with --json)
        }
      }
    });
    child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exitPromise = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves when the process has exited; rejects after timeoutMs. */
  async exited(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new SanboxError('EINVAL', `node ${this.nodeId} (pid ${this.pid}) did not exit within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exitPromise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The first event matching `pred`, waiting up to timeoutMs. */
  async waitEvent(pred: (e: NodeEventLine) => boolean, timeoutMs: number, what: string): Promise<NodeEventLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.find(pred);
      if (hit) return hit;
      if (Date.now() > deadline) throw new SanboxError('EINVAL', `node ${this.nodeId}: no ${what} within ${timeoutMs} ms${this.stderr ? `; stderr: ${this.stderr.trim()}` : ''}`);
      if (!this.running) {
        const last = this.events.filter((e) => e.msg !== undefined).at(-1)?.msg;
        const how = this.child.exitCode !== null ? `with status ${this.child.exitCode}` : `on ${this.child.signalCode}`;
        throw new SanboxError('EINVAL', `node ${this.nodeId} exited ${how} before ${what}${last !== undefined ? ` (it last said: ${last})` : ''}${this.stderr ? `: ${this.stderr.trim()}` : ''}`);
      }
      await new Promise((r) => setTimeout(r, LAUNCHER_EVENT_POLL_MS));
    }
  }
}

export interface LaunchOptions {
  clusterImage: string;
  nodeId: number;
  name?: string;
  env?: NodeJS.ProcessEnv;
  extraArgs?: string[];
}

export function launchNode(opts: LaunchOptions): LaunchedNode {
  const args = [SANBOX_BIN, 'node', '--cluster', opts.clusterImage, '--node', String(opts.nodeId), '--json'];
  if (opts.name !== undefined) args.push('--name', opts.name);
  args.push(...(opts.extraArgs ?? []));
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  return new LaunchedNode(opts.nodeId, child);
}

/** SIGTERM (a clean leave) to every running node, SIGKILL to any that do not leave in time; reaps all. */
export async function stopAll(nodes: LaunchedNode[]): Promise<void> {
  await Promise.all(
    nodes.map(async (n) => {
      if (!n.running) return;
      n.child.kill('SIGTERM');
      try {
        await n.exited(LEAVE_TIMEOUT_MS);
      } catch {
        n.child.kill('SIGKILL');
        await n.exited(LEAVE_TIMEOUT_MS).catch(() => undefined);
      }
    }),
  );
}
