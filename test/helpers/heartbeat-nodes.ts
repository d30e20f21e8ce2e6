// Spawning `sanbox node` processes for heartbeat/fence tests, and reading their JSON-line logs.

import type { ChildProcess } from 'node:child_process';
import type { ExecutionContext } from 'ava';
import { followJsonLines, runSanbox, SANBOX_BIN, spawnChild } from './tmp.js';

export interface NodeLogLine {
  t: string;
  node: number;
  msg?: string;
  event?: 'up' | 'down' | 'fenced' | 'left';
  peer?: number;
  generation?: string;
  /** Wall-clock ms at which the line was written (from t). */
  atMs: number;
}

export interface NodeProc {
  nodeId: number;
  child: ChildProcess;
  lines: NodeLogLine[];
  stderr: () => string;
  /** Waits for a log line matching pred; returns it. */
  waitLine(pred: (l: NodeLogLine) => boolean, timeoutMs: number, what: string): Promise<NodeLogLine>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnNode(t: ExecutionContext, image: string, nodeId: number, extra: string[] = [], env: NodeJS.ProcessEnv = {}): NodeProc {
  const child = spawnChild(t, process.execPath, [SANBOX_BIN, 'node', '--cluster', image, '--node', String(nodeId), '--json', ...extra], {
    env: { ...process.env, ...env },
  });
  const { lines, waitLine, stderr } = followJsonLines<NodeLogLine>(child, `node ${nodeId}`, (l) => (l.atMs = Date.parse(l.t)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { nodeId, child, lines, stderr, waitLine, exited };
}

export const isEvent = (kind: 'up' | 'down' | 'fenced' | 'left', peer: number) => (l: NodeLogLine) => l.event === kind && l.peer === peer;

/** `sanbox cluster init ARGS…`, failing the test with the command's stderr if it fails. */
export async function clusterInit(t: ExecutionContext, args: string[]): Promise<void> {
  // The run directory (control sockets) goes beside the image, inside the test's temp dir.
  const r = await runSanbox(t, ['cluster', 'init', ...args, '--run-dir', `${args[0]}.run`]);
  t.is(r.code, 0, `cluster init failed: ${r.stderr}`);
}

export interface StatusJson {
  slots: { node: number; name: string; state: string; pid: number | null; ageMs: number | null }[];
}

/** `sanbox cluster status IMG --json`, failing the test with the command's stderr if it fails. */
export async function statusJson(t: ExecutionContext, image: string): Promise<StatusJson> {
  const r = await runSanbox(t, ['cluster', 'status', image, '--json']);
  t.is(r.code, 0, `cluster status failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as StatusJson;
}
