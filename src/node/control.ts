// The control channel of a running node (ARCHITECTURE.md, "A node process is reachable"): one Unix
// socket per node, RUNDIR/node-N.sock, with RUNDIR named in the cluster image's config region.
// Protocol: JSON lines. Each request is one line `{"cmd": "...", ...}`, each answer one line
// `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Commands today: `status`, `leave`.
// Later work (kill, stall, fail-io) adds commands by registering handlers.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { SanboxError } from '../errors.js';

/** Bound on one request line, so a confused client cannot make a node buffer without limit. */
const REQUEST_BYTES_MAX = 64 * 1024;
/** Default bound on one control request (connect, send, answer): a live node answers in milliseconds. */
const CONTROL_REQUEST_TIMEOUT_MS_DEFAULT = 5000;

export type ControlHandler = (req: Record<string, unknown>) => Promise<Record<string, unknown>> | Record<string, unknown>;

export function controlSocketPath(runDir: string, nodeId: number): string {
  return path.join(runDir, `node-${nodeId}.sock`);
}

export class ControlServer {
  private readonly server: net.Server;
  private readonly handlers = new Map<string, ControlHandler>();

  private constructor(readonly socketPath: string) {
    this.server = net.createServer((sock) => this.serve(sock));
  }

  /** Listens on RUNDIR/node-N.sock. The caller holds the node's slot lock, so a leftover socket is stale. */
  static async listen(runDir: string, nodeId: number): Promise<ControlServer> {
    fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
    const p = controlSocketPath(runDir, nodeId);
    fs.rmSync(p, { force: true });
    const s = new ControlServer(p);
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', reject);
      s.server.listen(p, () => {
        s.server.off('error', reject);
        resolve();
      });
    });
    // The socket must not keep a node process alive on its own.
    s.server.unref();
    return s;
  }

  handle(cmd: string, h: ControlHandler): void {
    this.handlers.set(cmd, h);
  }

  private serve(sock: net.Socket): void {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => sock.destroy());
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > REQUEST_BYTES_MAX) {
        sock.end(JSON.stringify({ ok: false, error: `request longer than ${REQUEST_BYTES_MAX} bytes` }) + '\n');
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        void this.answer(line).then((ans) => {
          if (!sock.destroyed) sock.write(JSON.stringify(ans, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString(16) : v)) + '\n');
        });
      }
    });
  }

  private async answer(line: string): Promise<Record<string, unknown>> {
    let req: unknown;
    try {
      req = JSON.parse(line);
    } catch {
      return { ok: false, error: 'request is not JSON' };
    }
    if (typeof req !== 'object' || req === null || typeof (req as { cmd?: unknown }).cmd !== 'string') return { ok: false, error: 'request needs a "cmd" string' };
    const r = req as Record<string, unknown>;
    const h = this.handlers.get(r.cmd as string);
    if (h === undefined) return { ok: false, error: `unknown command '${String(r.cmd)}' (known: ${[...this.handlers.keys()].join(', ')})` };
    try {
      return { ok: true, ...(await h(r)) };
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    fs.rmSync(this.socketPath, { force: true });
    // The run directory goes with its last socket (rmdir refuses while other nodes' sockets are there).
    try {
      fs.rmdirSync(path.dirname(this.socketPath));
    } catch {
      // not empty, or already gone
    }
  }
}

/** Sends one request to a node's control socket and returns its answer (bounded by timeoutMs). */
export async function controlRequest(socketPath: string, req: Record<string, unknown>, timeoutMs = CONTROL_REQUEST_TIMEOUT_MS_DEFAULT): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new SanboxError('EIO', `${socketPath}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (c: string) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        sock.end();
        try {
          resolve(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>);
        } catch (err) {
          reject(err);
        }
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(new SanboxError('EIO', `${socketPath}: ${err.message}`, { cause: err }));
    });
  });
}
