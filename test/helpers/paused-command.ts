// A sanbox command run with SANBOX_PAUSE_AT=POINT (src/disk/pause-point.ts): it stops itself
// (SIGSTOP) at that point, and the test does things meanwhile, then SIGCONTs it. Killed at teardown.

import type { ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import { readProcStat } from '../../src/disk/power-fence.js';
import type { PausePoint } from '../../src/disk/pause-point.js';
import { collect, SANBOX_BIN, spawnChild, waitFor } from './tmp.js';

/** Bound on the command reaching its pause point (it may wait for locks and join a cluster first). */
const PAUSE_MS = 30_000;

export interface PausedCommand {
  child: ChildProcess;
  /** Its stderr so far. */
  err: () => string;
  out: () => string;
}

/** `sanbox ARGS…` stopped at `point`; fails the test if it ended before it got there. */
export async function pausedCommand(t: ExecutionContext, args: string[], point: PausePoint, env: NodeJS.ProcessEnv = {}): Promise<PausedCommand> {
  const child = spawnChild(t, process.execPath, [SANBOX_BIN, ...args], { env: { ...process.env, SANBOX_DEVICESFILE: '', ...env, SANBOX_PAUSE_AT: point } });
  const io = collect(child);
  const line = new RegExp(`SANBOX_PAUSE_AT=${point}: pid \\d+ stops`);
  await waitFor(() => line.test(io.err()) || child.exitCode !== null, PAUSE_MS, `${args.join(' ')} to reach ${point}`);
  t.is(child.exitCode, null, `${args.join(' ')} reached ${point}: ${io.err()}`);
  await waitFor(() => readProcStat(child.pid!)?.state === 'T', PAUSE_MS, `${args.join(' ')} to be stopped`);
  return { child, err: io.err, out: io.out };
}

/** Its stderr without the pause point's own line. */
export function errorLines(c: PausedCommand): string[] {
  return c.err().trim().split('\n').filter((x) => x !== '' && !/SANBOX_PAUSE_AT/.test(x));
}
