// Running the real LVM2 tools (2.03.16) as judges of sanbox images: loop devices attached for a
// test and detached in teardown, a private configuration (no backups/archives written, only the
// test's loop devices scanned via --devices), and JSON reports in bytes.

import type { ExecutionContext } from 'ava';
import { runToolWith, type ToolResult } from './run-tool.js';
import { runSanbox } from './tmp.js';

export type { ToolResult } from './run-tool.js';

/** Bound on any single real-tool run. */
const TOOL_TIMEOUT_MS = 30_000;
/** `losetup -f` can race with other tests taking the same free device; retry this many times. */
const LOSETUP_TRIES = 5;

export const LVM_ENV: NodeJS.ProcessEnv = { ...process.env, LVM_SUPPRESS_FD_WARNINGS: '1' };
/** Keeps lvm2 from writing /etc/lvm/backup and /etc/lvm/archive (lvm2.md §10). */
export const LVM_CONFIG = 'backup/backup=0 backup/archive=0 devices/scan_lvs=0';

/** A real tool with the LVM environment; stdin stays open as execFile leaves it; a run that does not exit with a code gives 1. */
export function runTool(cmd: string, args: string[]): Promise<ToolResult> {
  return runToolWith(cmd, args, { env: LVM_ENV, timeoutMs: TOOL_TIMEOUT_MS, maxBufferBytes: 16 << 20, keepStdinOpen: true, noExitCode: 1 });
}

/**
 * Attaches `image` to a free loop device, detached at teardown unless detachLoop() did it first.
 * Each attachment is its own record: once detached, /dev/loopN may be attached again by another
 * test (even in this process), and that one must not be detached by our teardown.
 */
export async function attachLoop(t: ExecutionContext, image: string, extra: string[] = []): Promise<string> {
  let last: ToolResult | undefined;
  for (let i = 0; i < LOSETUP_TRIES; i++) {
    last = await runTool('losetup', [...extra, '-f', '--show', image]);
    if (last.code === 0) {
      const dev = last.stdout.trim();
      const attachment = { dev, attached: true };
      live.set(dev, attachment);
      t.teardown(() => detachAttachment(attachment));
      return dev;
    }
    await new Promise((r) => setTimeout(r, 100 * (i + 1)));
  }
  throw new Error(`losetup -f --show ${image} failed: ${last?.stderr}`);
}

interface Attachment {
  dev: string;
  attached: boolean;
}
/** The current attachment of each loop device this process attached. */
const live = new Map<string, Attachment>();

async function detachAttachment(a: Attachment): Promise<void> {
  if (!a.attached) return;
  a.attached = false;
  if (live.get(a.dev) === a) live.delete(a.dev);
  await runTool('losetup', ['-d', a.dev]);
}

/** Detaches a loop device attached by attachLoop, now (its teardown then does nothing). */
export async function detachLoop(dev: string): Promise<void> {
  const a = live.get(dev);
  if (a) await detachAttachment(a);
}

/** An lvm command restricted to `devs`, with the private config. */
export function lvm(cmd: string, devs: string[], args: string[]): Promise<ToolResult> {
  return runTool(cmd, ['--devices', devs.join(','), '--config', LVM_CONFIG, ...args]);
}

/** An lvm command restricted to `devs` as a host whose system ID is `systemId` (undefined: lvm2's default, none). */
export function lvmAsHost(cmd: string, devs: string[], systemId: string | undefined, args: string[]): Promise<ToolResult> {
  const sid = systemId === undefined ? '' : ` global/system_id_source="lvmlocal" local/system_id="${systemId}"`;
  return runTool(cmd, ['--devices', devs.join(','), '--config', LVM_CONFIG + sid, ...args]);
}

/** A JSON report (`pvs`, `vgs`, `lvs`) in bytes: the rows of its first report. */
export async function lvmReport(t: ExecutionContext, cmd: 'pvs' | 'vgs' | 'lvs', devs: string[], fields: string[], extra: string[] = []): Promise<Record<string, string>[]> {
  const args = ['--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', fields.join(','), ...extra];
  if (cmd === 'lvs') args.unshift('--driverloaded', 'n');
  const r = await lvm(cmd, devs, args);
  t.is(r.code, 0, `${cmd}: ${r.stderr}`);
  t.deepEqual(warnings(r.stderr), [], `${cmd} warnings`);
  const parsed = JSON.parse(r.stdout) as { report: Record<string, Record<string, string>[]>[] };
  const first = parsed.report[0]!;
  return Object.values(first)[0] ?? [];
}

/** WARNING lines that mean something is wrong with the metadata (not the dm-less environment). */
export function warnings(stderr: string): string[] {
  return stderr
    .split('\n')
    .filter((l) => /WARNING|Inconsistent|CHECK|error/i.test(l))
    .filter((l) => !/Activation disabled|not zeroed|NOT backed up/.test(l));
}

/** Bound on one sanbox CLI run in the LVM tests. */
const SANBOX_TIMEOUT_MS = 30_000;

/**
 * Runs `sanbox ARGS…` as a separate process (runSanbox: waits for 'close', so all of its
 * stdout/stderr has been read; killed at teardown if still running). A child ended by a signal
 * has code -1.
 */
export async function sanboxCli(t: ExecutionContext, args: string[], env: NodeJS.ProcessEnv = {}): Promise<ToolResult> {
  const r = await runSanbox(t, args, { env, timeoutMs: SANBOX_TIMEOUT_MS });
  return { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
}
