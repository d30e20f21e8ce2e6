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
}

export function spawnIoNode(t: ExecutionContext, image: string, nodeId: number, devices: string[]): IoNode {
  const child = spawnChild(t, process.execPath, [WORKER, image, String(nodeId)], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, SANBOX_DEVICES: devices.join(','), SANBOX_DEVICESFILE: '' },
  });
  const { lines: events, waitLine: wait } = followJsonLines<IoEvent>(child, `io node ${nodeId}`);
  return {
    events,
    send: (line) => void child.stdin!.write(line + '\n'),
    wait,
    answer: (id) => events.find((e) => (e.ev === 'done' || e.ev === 'failed') && e.id === id),
    kill: () => void child.kill('SIGKILL'),
  };
}

/** Waits for the answer to command `id`. */
export function answered(n: IoNode, id: string, timeoutMs: number): Promise<IoEvent> {
  return n.wait((e) => (e.ev === 'done' || e.ev === 'failed') && e.id === id, timeoutMs, `the answer to ${id}`);
}
