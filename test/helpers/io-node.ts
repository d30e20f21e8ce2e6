// The test's side of test/helpers/volume-io-node.ts: spawn it as node N, send it commands, wait
// (bounded) for its JSON-line answers and events.

import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { followJsonLines, REPO_ROOT, spawnChild } from './tmp.js';

const WORKER = path.join(REPO_ROOT, 'dist/test/helpers/volume-io-node.js');

export interface IoEvent {
  ev: 'joined' | 'quorum' | 'done' | 'failed' | 'log';
  id?: string;
  quorate?: boolean;
  up?: number[];
  code?: string;
  msg?: string;
  byte?: number;
  atMs: number;
}

export interface IoNode {
  events: IoEvent[];
  send(line: string): void;
  /** The first event matching `pred` (already seen or to come); rejects after timeoutMs. */
  wait(pred: (e: IoEvent) => boolean, timeoutMs: number, what: string): Promise<IoEvent>;
  /** The answer to command `id` (done or failed), if there is one yet. */
  answer(id: string): IoEvent | undefined;
  kill(): void;
  /** Sends a signal to the process (SIGSTOP/SIGCONT: a stalled node). */
  signal(sig: NodeJS.Signals): void;
  readonly pid: number;
}

/** `fence`: the node's fence policy (default the node's, 'both'); `env`: more environment (e.g. another host's lock directory). */
export function spawnIoNode(t: ExecutionContext, image: string, nodeId: number, devices: string[], opts: { fence?: 'disk' | 'power' | 'both'; env?: NodeJS.ProcessEnv } = {}): IoNode {
  const child = spawnChild(t, process.execPath, [WORKER, image, String(nodeId), ...(opts.fence !== undefined ? [opts.fence] : [])], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, SANBOX_DEVICES: devices.join(','), SANBOX_DEVICESFILE: '', ...opts.env },
  });
  const { lines: events, waitLine: wait } = followJsonLines<IoEvent>(child, `io node ${nodeId}`);
  return {
    events,
    send: (line) => void child.stdin!.write(line + '\n'),
    wait,
    answer: (id) => events.find((e) => (e.ev === 'done' || e.ev === 'failed') && e.id === id),
    kill: () => void child.kill('SIGKILL'),
    signal: (sig) => void child.kill(sig),
    pid: child.pid!,
  };
}

/** Waits for the answer to command `id`. */
export function answered(n: IoNode, id: string, timeoutMs: number): Promise<IoEvent> {
  return n.wait((e) => (e.ev === 'done' || e.ev === 'failed') && e.id === id, timeoutMs, `the answer to ${id}`);
}

/** Waits for `n` to join, then has it open `spec` as `name` (`open`, or `openlocked`: under the LV lock) and write its first block. */
export async function joinedWithOpen(n: IoNode, name: string, spec: string, timeoutMs: number, how: 'open' | 'openlocked' = 'open'): Promise<void> {
  await n.wait((e) => e.ev === 'joined', timeoutMs, `node joined`);
  n.send(`${how} ${name} ${spec}`);
  const opened = await answered(n, `open:${name}`, timeoutMs);
  if (opened.ev !== 'done') throw new Error(`${how} ${spec}: ${opened.msg ?? ''}`);
  n.send(`write ${name}-w ${name} 0`);
  const wrote = await answered(n, `${name}-w`, timeoutMs);
  if (wrote.ev !== 'done') throw new Error(`first write to ${spec}: ${wrote.msg ?? ''}`);
}
