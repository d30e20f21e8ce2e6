// Starts a real nbdkit on loopback for the NBD tests and the NBD benchmark (only 127.0.0.1 and
// Unix sockets are ever used). The file plugin in dir= mode serves every file in a directory as an
// export of the same name, so `nbd://127.0.0.1:PORT/a.img` is the image DIR/a.img.
//
// nbdkit writes its pidfile once it is listening, which is our readiness signal. A free port is
// found by binding port 0 and closing it; if another process takes the port in between, nbdkit
// fails to bind and exits, and we try again with a new port (STARTS_MAX times).

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const LOOPBACK = '127.0.0.1';
const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const STARTS_MAX = 5;

export interface NbdkitOptions {
  /** Directory whose files are the exports (file plugin, dir= mode). */
  dir: string;
  /** Filters and their parameters, e.g. ['--filter=delay', 'delay-read=2']: filters go before the plugin, params after. */
  filters?: string[];
  filterParams?: string[];
  /** Listen on a Unix socket instead of TCP. */
  unixSocket?: boolean;
  /** Extra nbdkit flags (e.g. '--no-sr', '-r'). */
  flags?: string[];
}

export interface Nbdkit {
  child: ChildProcess;
  /** nbd://127.0.0.1:PORT/ or nbd+unix:///?socket=… prefix; use uri(exportName). */
  uri(exportName: string, query?: string): string;
  port: number | undefined;
  socketPath: string | undefined;
  stderr(): string;
  /** SIGKILL (like a crash) or SIGTERM, then wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, LOOPBACK, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function startNbdkit(opts: NbdkitOptions): Promise<Nbdkit> {
  let lastError = '';
  for (let attempt = 0; attempt < STARTS_MAX; attempt++) {
    const started = await tryStart(opts);
    if ('server' in started) return started.server;
    lastError = started.error;
  }
  throw new Error(`nbdkit did not start after ${STARTS_MAX} attempts: ${lastError}`);
}

async function tryStart(opts: NbdkitOptions): Promise<{ server: Nbdkit } | { error: string }> {
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanbox-nbdkit-'));
  const pidFile = path.join(runDir, 'nbdkit.pid');
  let port: number | undefined;
  let socketPath: string | undefined;
  const listen: string[] = [];
  if (opts.unixSocket) {
    socketPath = path.join(runDir, 'nbd.sock');
    listen.push('-U', socketPath);
  } else {
    port = await freePort();
    listen.push('-i', LOOPBACK, '-p', String(port));
  }
  const args = [
    '-f', // foreground: the child is nbdkit itself, so killing it kills the server
    '--exit-with-parent',
    '--log=stderr',
    '-P',
    pidFile,
    ...listen,
    ...(opts.flags ?? []),
    ...(opts.filters ?? []),
    'file',
    `dir=${opts.dir}`,
    ...(opts.filterParams ?? []),
  ];
  const child = spawn('nbdkit', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!fs.existsSync(pidFile)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      fs.rmSync(runDir, { recursive: true, force: true });
      return { error: `nbdkit exited (${child.exitCode ?? child.signalCode}): ${err.trim()}` };
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      fs.rmSync(runDir, { recursive: true, force: true });
      return { error: `nbdkit not ready within ${READY_TIMEOUT_MS} ms: ${err.trim()}` };
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const server: Nbdkit = {
    child,
    port,
    socketPath,
    uri(exportName: string, query?: string): string {
      const name = encodeURIComponent(exportName);
      if (socketPath !== undefined) return `nbd+unix:///${name}?socket=${socketPath}${query ? `&${query}` : ''}`;
      return `nbd://${LOOPBACK}:${port}/${name}${query ? `?${query}` : ''}`;
    },
    stderr: () => err,
    async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }
      fs.rmSync(runDir, { recursive: true, force: true });
    },
  };
  return { server };
}
