// Running a real tool (lvm2, ocfs2-tools, losetup, blkid) as a judge: bounded, output captured,
// never rejecting. The LVM and ocfs2 helpers (lvm-real.ts, ocfs2-oracle.ts) wrap it with their own
// environment and bounds.

import { execFile } from 'node:child_process';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunToolOptions {
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed. */
  input?: string;
  /** Bound on the run; the child is then killed with killSignal. */
  timeoutMs: number;
  maxBufferBytes: number;
  killSignal?: NodeJS.Signals;
  /** Leave stdin open (an ended stdin is the default). */
  keepStdinOpen?: boolean;
  /** The code reported when the tool did not exit with a number (killed, timed out, not found). */
  noExitCode: number;
}

export function runToolWith(cmd: string, args: string[], opts: RunToolOptions): Promise<ToolResult> {
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      { env: opts.env, timeout: opts.timeoutMs, maxBuffer: opts.maxBufferBytes, ...(opts.killSignal !== undefined ? { killSignal: opts.killSignal } : {}) },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? (err as unknown as { code: number }).code : opts.noExitCode) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else if (!opts.keepStdinOpen) child.stdin?.end();
  });
}
