// Runs `sanbox ARGS…` inside the test process (tools/cli.ts's main), capturing stdout and stderr:
// hundreds of command lines in seconds where spawning a node process each would take minutes.
// Runs are serialized (stdout/stderr and the environment are process-wide). Only commands that
// end on their own belong here; node, lock, demo and ctl run as processes (runSanbox).

import { main } from '../../tools/cli.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Default bound on one in-process command line. */
const IN_PROCESS_TIMEOUT_MS = 20_000;

let queue: Promise<unknown> = Promise.resolve();

export function runCliInProcess(argv: string[], env: Record<string, string | undefined> = {}, timeoutMs = IN_PROCESS_TIMEOUT_MS): Promise<CliResult> {
  const run = queue.then(() => runNow(argv, env, timeoutMs));
  queue = run.catch(() => undefined);
  return run;
}

async function runNow(argv: string[], env: Record<string, string | undefined>, timeoutMs: number): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const outWrite = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  const capture = (sink: (s: string) => void) =>
    ((chunk: string | Uint8Array, ...rest: unknown[]): boolean => {
      sink(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
      const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      cb?.();
      return true;
    }) as typeof process.stdout.write;
  const savedEnv = new Map(Object.keys(env).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  process.stdout.write = capture((s) => (stdout += s));
  process.stderr.write = capture((s) => (stderr += s));
  let code: number;
  let timer: NodeJS.Timeout | undefined;
  try {
    // A command that hangs (a FIFO opened for reading…) is a defect; the run goes on without it.
    const hung = new Promise<number>((resolve) => {
      timer = setTimeout(() => {
        stderr += `HUNG: no exit within ${timeoutMs} ms\n`;
        resolve(-2);
      }, timeoutMs);
    });
    code = await Promise.race([main(argv), hung]);
  } catch (err) {
    // main never throws: anything here is a crash of the command line itself.
    code = -1;
    stderr += `CRASH: ${(err as Error).stack ?? String(err)}\n`;
  } finally {
    clearTimeout(timer);
    process.stdout.write = outWrite;
    process.stderr.write = errWrite;
    for (const [k, v] of savedEnv) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    process.exitCode = undefined;
  }
  return { code, stdout, stderr };
}
