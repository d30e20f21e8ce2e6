// Starts a real NBD server on loopback for the NBD tests and the NBD benchmark (only 127.0.0.1
// and Unix sockets are ever used): nbdkit, or qemu-nbd (Debian's qemu-utils).
// - nbdkit's file plugin in dir= mode serves every file in a directory as an export of the same
//   name, so `nbd://127.0.0.1:PORT/a.img` is the image DIR/a.img.
// - qemu-nbd serves one file per process, under one export name (the file's name here).
//
// Both write their pidfile once they are listening, which is our readiness signal. A free port is
// found by binding port 0 and closing it; if another process takes the port in between, the server
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

/** A running NBD server (either kind). */
export interface NbdServer {
  kind: NbdServerKind;
  child: ChildProcess;
  /** nbd://127.0.0.1:PORT/ or nbd+unix:///?socket=… prefix; use uri(exportName). */
  uri(exportName: string, query?: string): string;
  port: number | undefined;
  socketPath: string | undefined;
  stderr(): string;
  /** SIGKILL (like a crash) or SIGTERM, then wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** The historical name: most tests start nbdkit. */
export type Nbdkit = NbdServer;

export type NbdServerKind = 'nbdkit' | 'qemu-nbd';
export const NBD_SERVER_KINDS: readonly NbdServerKind[] = ['nbdkit', 'qemu-nbd'];

export interface QemuNbdOptions {
  /** The one file served; its export name is its base name. */
  file: string;
  unixSocket?: boolean;
  readOnly?: boolean;
}

/**
 * Clients qemu-nbd admits at once (its default is 1, which would refuse a second client). 16
 * matches nbdkit's default of 16 requests served in parallel.
 */
const QEMU_NBD_SHARED_CLIENTS = 16;

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
  return startWithRetries('nbdkit', (listen) => nbdkitArgs(opts, listen), opts.unixSocket ?? false);
}

/** qemu-nbd serving `opts.file` (raw format, writeback cache like nbdkit's file plugin, discard passed down). */
export async function startQemuNbd(opts: QemuNbdOptions): Promise<NbdServer> {
  return startWithRetries('qemu-nbd', (listen) => qemuNbdArgs(opts, listen), opts.unixSocket ?? false);
}

/** One file served by either kind of server, for tests and benchmarks that run against both. */
export async function startNbdServer(kind: NbdServerKind, file: string, opts: { unixSocket?: boolean } = {}): Promise<NbdServer> {
  if (kind === 'qemu-nbd') return startQemuNbd({ file, unixSocket: opts.unixSocket });
  return startNbdkit({ dir: path.dirname(file), unixSocket: opts.unixSocket });
}

interface Listen {
  pidFile: string;
  port: number | undefined;
  socketPath: string | undefined;
}

function nbdkitArgs(opts: NbdkitOptions, l: Listen): string[] {
  const listen = l.socketPath !== undefined ? ['-U', l.socketPath] : ['-i', LOOPBACK, '-p', String(l.port)];
  return [
    '-f', // foreground: the child is nbdkit itself, so killing it kills the server
    '--exit-with-parent',
    '--log=stderr',
    '-P',
    l.pidFile,
    ...listen,
    ...(opts.flags ?? []),
    ...(opts.filters ?? []),
    'file',
    `dir=${opts.dir}`,
    ...(opts.filterParams ?? []),
  ];
}

function qemuNbdArgs(opts: QemuNbdOptions, l: Listen): string[] {
  const listen = l.socketPath !== undefined ? [`--socket=${l.socketPath}`] : [`--bind=${LOOPBACK}`, `--port=${l.port}`];
  return [
    '--persistent', // keep serving after a client leaves
    `--shared=${QEMU_NBD_SHARED_CLIENTS}`,
    '--format=raw',
    '--discard=unmap', // TRIM and WRITE_ZEROES punch holes in the file, as nbdkit's file plugin does
    `--pid-file=${l.pidFile}`,
    `--export-name=${path.basename(opts.file)}`,
    ...(opts.readOnly ? ['--read-only'] : []),
    ...listen,
    opts.file,
  ];
}

async function startWithRetries(kind: NbdServerKind, args: (l: Listen) => string[], unixSocket: boolean): Promise<NbdServer> {
  let lastError = '';
  for (let attempt = 0; attempt < STARTS_MAX; attempt++) {
    const started = await tryStart(kind, args, unixSocket);
    if ('server' in started) return started.server;
    lastError = started.error;
  }
  throw new Error(`${kind} did not start after ${STARTS_MAX} attempts: ${lastError}`);
}

async function tryStart(kind: NbdServerKind, makeArgs: (l: Listen) => string[], unixSocket: boolean): Promise<{ server: NbdServer } | { error: string }> {
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), `sanbox-${kind}-`));
  const pidFile = path.join(runDir, 'server.pid');
  let port: number | undefined;
  let socketPath: string | undefined;
  if (unixSocket) socketPath = path.join(runDir, 'nbd.sock');
  else port = await freePort();
  const args = makeArgs({ pidFile, port, socketPath });
  const child = spawn(kind, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!fs.existsSync(pidFile)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      fs.rmSync(runDir, { recursive: true, force: true });
      return { error: `${kind} exited (${child.exitCode ?? child.signalCode}): ${err.trim()}` };
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      fs.rmSync(runDir, { recursive: true, force: true });
      return { error: `${kind} not ready within ${READY_TIMEOUT_MS} ms: ${err.trim()}` };
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const server: NbdServer = {
    kind,
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
