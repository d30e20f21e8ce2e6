// Temp dirs and child processes for tests: every child is killed and reaped in teardown.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext, TestFn } from 'ava';
import { LOCK_DIR_ENV } from '../../src/volume/vg-lock.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const SANBOX_BIN = path.join(REPO_ROOT, 'bin/sanbox.js');

export function tempDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanbox-test-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Reads `lengthBytes` of a file at `offsetBytes`, bypassing sanbox (a judge of what landed on disk). */
export function readFileAt(file: string, offsetBytes: number, lengthBytes: number): Buffer {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(lengthBytes);
    fs.readSync(fd, b, 0, lengthBytes, offsetBytes);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Gives a test file its own host-local LVM lock directory (SANBOX_LOCK_DIR, inherited by the sanbox
 * commands it starts), removed after its tests. Otherwise lock files pile up in the shared
 * $TMPDIR/sanbox-lvm-locks, and two runs of the suite on one machine lock each other's same-named VGs.
 */
export function ownLockDir(test: TestFn): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanbox-locks-'));
  process.env[LOCK_DIR_ENV] = dir;
  test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Spawns a child that is SIGKILLed (and awaited) at teardown if it is still running. */
export function spawnChild(t: ExecutionContext, cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited(child, 5000).catch(() => undefined);
    }
  });
  return child;
}

/** Resolves with the exit code (or signal) once the child is gone; rejects after timeoutMs. */
export function exited(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child ${child.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

/** Collects a child's stdout/stderr as text. */
export function collect(child: ChildProcess): { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return { out: () => out, err: () => err };
}

/** A child's stdout as JSON lines (other lines skipped), and a bounded wait for one matching a predicate. */
export interface JsonLines<T> {
  lines: T[];
  /** The first line matching `pred`, already seen or to come; rejects after timeoutMs with the child's log. */
  waitLine(pred: (l: T) => boolean, timeoutMs: number, what: string): Promise<T>;
  stderr: () => string;
}

export function followJsonLines<T>(child: ChildProcess, who: string, decorate: (l: T) => void = () => {}): JsonLines<T> {
  const lines: T[] = [];
  const waiters = new Set<() => void>();
  let buf = '';
  let err = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    buf += d;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const raw = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        const l = JSON.parse(raw) as T;
        decorate(l);
        lines.push(l);
      } catch {
        // not a JSON line
      }
    }
    for (const w of [...waiters]) w();
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (err += d));
  const waitLine = (pred: (l: T) => boolean, timeoutMs: number, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = (): boolean => {
        const l = lines.find(pred);
        if (l === undefined) return false;
        waiters.delete(onData);
        clearTimeout(timer);
        resolve(l);
        return true;
      };
      const onData = (): void => void check();
      const timer = setTimeout(() => {
        waiters.delete(onData);
        reject(new Error(`${who}: timed out after ${timeoutMs} ms waiting for ${what}; stderr: ${err}; log:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`));
      }, timeoutMs);
      if (!check()) waiters.add(onData);
    });
  return { lines, waitLine, stderr: () => err };
}

/** Waits until `pred()` is true, polling; throws after timeoutMs. */
export async function waitFor(pred: () => boolean, timeoutMs: number, what: string, pollMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Waits until the async `pred()` is true, polling; throws after timeoutMs. */
export async function waitForAsync(pred: () => Promise<boolean>, timeoutMs: number, what: string, pollMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Commands that make a new image file and end on their own, run in the test's process (tools/cli.ts
 * main, the code a `sanbox` process runs) when the test gives no environment or directory of its
 * own: a node process start costs ≈ 0.3 s of CPU, and the suite made hundreds of images this way.
 * Never with --force: only a replacement can meet an image a process holds, and a test may hold
 * it itself, as "another process" of the command's (then the command must be one).
 */
const IN_PROCESS_COMMANDS = ['disk create', 'cluster init'];
/** Bound on one runSanbox unless the test gives its own. */
const RUN_SANBOX_TIMEOUT_MS_DEFAULT = 30_000;

/**
 * Runs `sanbox ARGS…` with a bounded time; resolves after its output is drained. A separate process,
 * but for IN_PROCESS_COMMANDS without --force, opts.env or opts.cwd.
 */
export async function runSanbox(t: ExecutionContext, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<RunResult> {
  if (opts.env === undefined && opts.cwd === undefined && !args.includes('--force') && IN_PROCESS_COMMANDS.some((c) => args.join(' ').startsWith(`${c} `))) {
    // Imported on first use: the CLI's modules cost a worker that never runs one nothing.
    const { runCliInProcess } = await import('./cli-inprocess.js');
    return runCliInProcess(args, { SANBOX_DEVICESFILE: '' }, opts.timeoutMs ?? RUN_SANBOX_TIMEOUT_MS_DEFAULT);
  }
  // No devices file unless a test names one: a user's ~/.config/sanbox/system.devices must not
  // change what the tests' LVM commands see.
  const child = spawnChild(t, process.execPath, [SANBOX_BIN, ...args], { env: { ...process.env, SANBOX_DEVICESFILE: '', ...opts.env }, ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}) });
  const io = collect(child);
  // 'close' (not 'exit') fires once stdout and stderr are drained, so no output is lost.
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const timeoutMs = opts.timeoutMs ?? RUN_SANBOX_TIMEOUT_MS_DEFAULT;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`sanbox ${args.join(' ')}: no exit within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const code = await Promise.race([closed, timeout]);
    return { code, stdout: io.out(), stderr: io.err() };
  } finally {
    clearTimeout(timer);
  }
}
