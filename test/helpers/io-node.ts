// The test's side of test/helpers/volume-io-node.ts: spawn it as node N, send it commands, wait
// (bounded) for its JSON-line answers and events.

import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { REPO_ROOT, spawnChild } from './tmp.js';

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
  const events: IoEvent[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  let err = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      events.push(JSON.parse(buf.slice(0, nl)) as IoEvent);
      buf = buf.slice(nl + 1);
    }
    for (const w of [...waiters]) w();
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (err += d));
  const wait = (pred: (e: IoEvent) => boolean, timeoutMs: number, what: string): Promise<IoEvent> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        const e = events.find(pred);
        if (e === undefined) return false;
        waiters.delete(onData);
        clearTimeout(timer);
        resolve(e);
        return true;
      };
      const onData = (): void => void check();
      const timer = setTimeout(() => {
        waiters.delete(onData);
        const log = events.map((e) => JSON.stringify(e)).join('\n');
        reject(new Error(`io node ${nodeId}: timed out after ${timeoutMs} ms waiting for ${what}; stderr: ${err}; events:\n${log}`));
      }, timeoutMs);
      if (!check()) waiters.add(onData);
    });
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
