// The control channel of a running node (ARCHITECTURE.md, "A node process is reachable"): one Unix
// socket per node, RUNDIR/node-N.sock, with RUNDIR named in the cluster image's config region.
// Protocol: JSON lines. Each request is one line `{"cmd": "...", ...}`, each answer one line
// `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. The node's own commands are registered by
// src/node/commands.ts; later layers (mount, lv changes) register theirs with handle(). A handler
// may tie state to its connection (ctx.onClose): a lock taken for `sanbox lock --node N` is
// released when that client goes away, whatever way it goes.

import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { isSanboxError, SanboxError } from '../errors.js';
import { CONTROL_REQUEST_TIMEOUT_MS_DEFAULT } from '../timing.js';
export { CONTROL_REQUEST_TIMEOUT_MS_DEFAULT };

/** Bound on one request line, so a confused client cannot make a node buffer without limit. */
const REQUEST_BYTES_MAX = 64 * 1024;

/** Bound on requests a connection may have unanswered at once (a client pipelining without limit). */
const PENDING_REQUESTS_MAX = 16;

export interface ControlContext {
  /**
   * Runs `fn` when the client's connection has closed and every request it sent has been answered
   * (at most once per registration). So a lock tied to the connection is released only after the
   * writes the client sent before it went have landed or failed, as lvmlockd drops a dead
   * command's locks after its I/O; and state a request set up after the close is still undone.
   */
  onClose(fn: () => void): void;
}

export type ControlHandler = (req: Record<string, unknown>, ctx: ControlContext) => Promise<Record<string, unknown>> | Record<string, unknown>;

export function controlSocketPath(runDir: string, nodeId: number): string {
  return path.join(runDir, `node-${nodeId}.sock`);
}

export class ControlServer {
  private readonly server: net.Server;
  private readonly handlers = new Map<string, ControlHandler>();
  /** Open connections, for close({ dropAfterMs }). */
  private readonly sockets = new Set<net.Socket>();

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

  /** Registers a command; a later layer's command may not replace one already registered. */
  handle(cmd: string, h: ControlHandler): void {
    if (this.handlers.has(cmd)) throw new SanboxError('EINVAL', `control command '${cmd}' is registered already`);
    this.handlers.set(cmd, h);
  }

  get commands(): string[] {
    return [...this.handlers.keys()];
  }

  private serve(sock: net.Socket): void {
    let buf = '';
    let pending = 0;
    const closers: (() => void)[] = [];
    const ctx: ControlContext = { onClose: (fn) => closers.push(fn) };
    sock.setEncoding('utf8');
    sock.on('error', () => sock.destroy());
    let closed = false;
    const runClosers = (): void => {
      for (const fn of closers.splice(0)) fn();
    };
    this.sockets.add(sock);
    sock.on('close', () => {
      this.sockets.delete(sock);
      closed = true;
      if (pending === 0) runClosers();
    });
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > REQUEST_BYTES_MAX) {
        sock.end(JSON.stringify({ ok: false, error: `request longer than ${REQUEST_BYTES_MAX} bytes` }) + '\n');
        buf = '';
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (pending >= PENDING_REQUESTS_MAX) {
          sock.end(JSON.stringify({ ok: false, error: `more than ${PENDING_REQUESTS_MAX} requests pending on one connection` }) + '\n');
          return;
        }
        pending++;
        void this.answer(line, ctx).then((ans) => {
          pending--;
          if (!sock.destroyed) sock.write(JSON.stringify(ans, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString(16) : v)) + '\n');
          // The client went while this was in flight: its connection's state is undone now.
          if (closed && pending === 0) runClosers();
        });
      }
    });
  }

  private async answer(line: string, ctx: ControlContext): Promise<Record<string, unknown>> {
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
      return { ok: true, ...(await h(r, ctx)) };
    } catch (err) {
      // The code travels with the message, so a client tells a fenced node's refusal (EFENCED) from others.
      return { ok: false, error: (err as Error).message, ...(isSanboxError(err) ? { code: err.code } : {}) };
    }
  }

  /**
   * Stops listening and resolves once every connection has closed. With dropAfterMs, ends those
   * still open after that long (a fenced node's stop: a client of it that cannot die — stuck in the
   * kernel, its SIGKILL pending — keeps its connection open, and must not keep the node's process
   * alive; review 7, M1). Until then requests already sent are still answered (a fenced node
   * refuses a killed client's queued write, and says so). Their onClose functions run as for any
   * closed connection.
   */
  async close(opts: { dropAfterMs?: number } = {}): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    let timer: NodeJS.Timeout | undefined;
    if (opts.dropAfterMs !== undefined) {
      timer = setTimeout(() => {
        for (const sock of this.sockets) sock.destroy();
      }, opts.dropAfterMs);
    }
    await closed;
    clearTimeout(timer);
    fs.rmSync(this.socketPath, { force: true });
    // The run directory goes with its last socket (rmdir refuses while other nodes' sockets are there).
    try {
      fs.rmdirSync(path.dirname(this.socketPath));
    } catch {
      // not empty, or already gone
    }
  }
}

/** Bound on one answer line, so a confused server cannot make a client buffer without limit. */
const ANSWER_BYTES_MAX = 4 * 1024 * 1024;

/** A connection to a node's control socket; requests are answered in order. */
export class ControlClient {
  private buf = '';
  private waiters: { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }[] = [];
  private failed: Error | undefined;
  private closing = false;
  private readonly closeListeners: (() => void)[] = [];

  private constructor(
    readonly socketPath: string,
    private readonly sock: net.Socket,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => {
      this.buf += c;
      if (this.buf.length > ANSWER_BYTES_MAX) return this.fail(new SanboxError('EIO', `${socketPath}: answer longer than ${ANSWER_BYTES_MAX} bytes`));
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl);
        this.buf = this.buf.slice(nl + 1);
        const w = this.waiters.shift();
        try {
          w?.resolve(JSON.parse(line) as Record<string, unknown>);
        } catch {
          w?.reject(new SanboxError('EIO', `${socketPath}: answer is not JSON`));
        }
      }
    });
    sock.on('error', (err) => this.fail(new SanboxError('EIO', `${socketPath}: ${err.message}`, { cause: err })));
    sock.on('close', () => {
      this.fail(new SanboxError('EIO', `${socketPath}: the node closed the connection`));
      if (!this.closing) for (const fn of this.closeListeners.splice(0)) fn();
    });
  }

  /** Runs `fn` if the node closes the connection (it left, died or was fenced); not after close(). */
  onClose(fn: () => void): void {
    if (this.sock.destroyed && !this.closing) fn();
    else this.closeListeners.push(fn);
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const w of this.waiters.splice(0)) w.reject(err);
    this.sock.destroy();
  }

  /** Connects within timeoutMs. */
  static connect(socketPath: string, timeoutMs = CONTROL_REQUEST_TIMEOUT_MS_DEFAULT): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(socketPath);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new SanboxError('ETIMEDOUT', `${socketPath}: no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        resolve(new ControlClient(socketPath, sock));
      });
      sock.once('error', (err) => {
        clearTimeout(timer);
        reject(new SanboxError('EIO', `${socketPath}: ${err.message}`, { cause: err }));
      });
    });
  }

  /** One request; rejects if no answer comes within timeoutMs (the connection is then closed). */
  request(req: Record<string, unknown>, timeoutMs = CONTROL_REQUEST_TIMEOUT_MS_DEFAULT): Promise<Record<string, unknown>> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new SanboxError('ETIMEDOUT', `${this.socketPath}: no answer within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.sock.write(JSON.stringify(req) + '\n');
    });
  }

  close(): void {
    this.closing = true;
    this.sock.end();
    this.sock.destroy();
  }
}

/** Sends one request to a node's control socket and returns its answer (bounded by timeoutMs in all). */
export async function controlRequest(socketPath: string, req: Record<string, unknown>, timeoutMs = CONTROL_REQUEST_TIMEOUT_MS_DEFAULT): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const c = await ControlClient.connect(socketPath, timeoutMs);
  try {
    return await c.request(req, Math.max(1, timeoutMs - (performance.now() - t0)));
  } finally {
    c.close();
  }
}
