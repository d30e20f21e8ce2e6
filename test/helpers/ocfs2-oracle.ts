// Running the real ocfs2-tools (mkfs.ocfs2, fsck.ocfs2, debugfs.ocfs2) and blkid as oracles, and
// parsing what they print. Every run is bounded by a timeout. Quirks (reference/ocfs2.md §8):
// the tools fork to run a missing /sbin/modprobe and may print their output more than once, and
// mkfs.ocfs2 exits 1 on success, so it is judged by fsck, never by its exit status.

import fs from 'node:fs';
import { runToolWith, type ToolResult } from './run-tool.js';

export type { ToolResult } from './run-tool.js';

/** Default bound on one ocfs2-tools run. */
const TOOL_TIMEOUT_MS_DEFAULT = 60_000;

/**
 * RLIMIT_MEMLOCK for fsck.ocfs2: Linux's default for an unprivileged process (8 MiB since 5.16),
 * so the run does not depend on the limit the test runner happens to have.
 */
const FSCK_MEMLOCK_BYTES = 8 * 1024 * 1024;
/**
 * fsck.ocfs2 sizes its I/O cache by the volume and free memory (512 MiB for a 64 MiB volume on a
 * machine with memory to spare) and mlock()s it; as root (CAP_IPC_LOCK) the mlock succeeds and
 * faults in and zeroes all of it: ≈ 4 s of system time per run, most of a crash enumeration's
 * time. Run without CAP_IPC_LOCK and under the default memlock limit, as a non-root user runs it:
 * the mlock of a big cache fails, and fsck halves the cache until it fits (o2fsck_init_cache;
 * 1024 blocks). The cache only saves re-reads: the same passes run over the same blocks.
 */
const FSCK_WRAPPER = ['--bounding-set=-ipc_lock', '--inh-caps=-ipc_lock', '--', 'prlimit', `--memlock=${FSCK_MEMLOCK_BYTES}`, '--'];

/**
 * A real tool, SIGKILLed at its bound; a run that does not exit with a code gives -1. fsck.ocfs2
 * runs through setpriv and prlimit (util-linux; both exec it, so its status and output are its own).
 */
export function runTool(cmd: string, args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<ToolResult> {
  const [file, argv] = cmd === 'fsck.ocfs2' ? ['setpriv', [...FSCK_WRAPPER, cmd, ...args]] : [cmd, args];
  return runToolWith(file, argv, { input: opts.input, timeoutMs: opts.timeoutMs ?? TOOL_TIMEOUT_MS_DEFAULT, maxBufferBytes: 64 * 1024 * 1024, killSignal: 'SIGKILL', noExitCode: -1 });
}

/** The first copy of a tool's output: when the first line recurs, the output repeats from there. */
export function firstCopy(out: string): string {
  const lines = out.split('\n');
  const first = lines.findIndex((l) => l.trim() !== '');
  if (first < 0) return out;
  const again = lines.indexOf(lines[first]!, first + 1);
  return (again < 0 ? lines : lines.slice(0, again)).join('\n');
}

export function hasTool(cmd: string): boolean {
  return ['/usr/sbin', '/sbin', '/usr/bin', '/bin'].some((d) => fs.existsSync(`${d}/${cmd}`));
}

/** Makes an image with the real mkfs.ocfs2 and checks it with fsck (its exit status is meaningless). */
export async function realMkfs(img: string, sizeBytes: number, args: string[]): Promise<void> {
  fs.writeFileSync(img, '');
  fs.truncateSync(img, sizeBytes);
  await runTool('mkfs.ocfs2', [...args, img], { input: 'y\n', timeoutMs: 120_000 });
}

export async function fsckOk(img: string): Promise<{ ok: boolean; out: string }> {
  const r = await runTool('fsck.ocfs2', ['-fn', img], { timeoutMs: 120_000 });
  const out = r.stdout + r.stderr;
  return { ok: r.code === 0 && out.includes('All passes succeeded.'), out };
}

export async function debugfs(img: string, request: string): Promise<string> {
  const r = await runTool('debugfs.ocfs2', ['-R', request, img], { timeoutMs: 60_000 });
  return firstCopy(r.stdout);
}

/** `debugfs.ocfs2 -R stats` as a map of its "Key: value" fields (several per line). */
export function parseStats(out: string): Map<string, string> {
  const m = new Map<string, string>();
  const keys = [
    'Revision', 'Mount Count', 'Max Mount Count', 'State', 'Errors', 'Check Interval', 'Creator OS', 'Feature Compat', 'Feature Incompat',
    'Tunefs Incomplete', 'Feature RO compat', 'Root Blknum', 'System Dir Blknum', 'First Cluster Group Blknum', 'Block Size Bits',
    'Cluster Size Bits', 'Max Node Slots', 'Extended Attributes Inline Size', 'Label', 'UUID', 'Hash', 'DX Seeds', 'Cluster stack',
    'Cluster name', 'Cluster flags', 'FS Generation', 'Clusters',
  ];
  for (const line of out.split('\n')) {
    for (const k of keys) {
      const re = new RegExp(`(?:^|\\s)${k.replace(/ /g, '\\s')}:\\s*(.*?)(?=\\s{2,}[A-Z][A-Za-z .#]*:|$)`);
      const hit = re.exec(line.replace(/\t/g, ' '));
      if (hit && !m.has(k)) m.set(k, hit[1]!.trim());
    }
    const gen = /Inode: 2\s+Mode: \S+\s+Generation: (\d+)/.exec(line);
    if (gen) m.set('Generation', gen[1]!);
  }
  return m;
}

export function parseBlkid(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const hit of out.matchAll(/([A-Z_]+)="([^"]*)"/g)) m.set(hit[1]!, hit[2]!);
  return m;
}

export interface DebugfsLogBlock {
  block: number;
  lastBlock: number;
  kind: string;
  seq?: number;
  tags: { blocknr: number; flags: string[] }[];
  revokes: number[];
  rCount?: number;
}

/** Parses `debugfs.ocfs2 -R "logdump N"` into blocks. */
export function parseLogdump(out: string): { sb: Map<string, string>; blocks: DebugfsLogBlock[] } {
  const sb = new Map<string, string>();
  const blocks: DebugfsLogBlock[] = [];
  let cur: DebugfsLogBlock | undefined;
  for (const raw of out.split('\n')) {
    const line = raw.trim();
    let m = /^Block (\d+)(?: to (\d+))?: (.*)$/.exec(line);
    if (m) {
      const kind = m[3]!.startsWith('Journal Superblock') ? 'superblock' : m[3]!.startsWith('Journal Descriptor') ? 'descriptor'
        : m[3]!.startsWith('Journal Commit') ? 'commit' : m[3]!.startsWith('Journal Revoke') ? 'revoke' : m[3]!.startsWith('Unknown') ? 'data' : m[3]!;
      cur = { block: Number(m[1]), lastBlock: Number(m[2] ?? m[1]), kind, tags: [], revokes: [] };
      blocks.push(cur);
      continue;
    }
    if (!cur) continue;
    if (cur.kind === 'superblock') {
      for (const hit of line.matchAll(/([A-Za-z][A-Za-z ]*?):\s+(\S+)/g)) sb.set(hit[1]!.trim(), hit[2]!);
      continue;
    }
    m = /^Seq: (\d+)/.exec(line);
    if (m) cur.seq = Number(m[1]);
    m = /^\d+\.\s+(\d+)\s+(.*)$/.exec(line);
    if (m && cur.kind === 'descriptor') cur.tags.push({ blocknr: Number(m[1]), flags: m[2]!.trim() === 'none' ? [] : m[2]!.trim().split(/\s+/) });
    m = /^r_count:\s+(\d+)/.exec(line);
    if (m) cur.rCount = Number(m[1]);
    m = /^revoke\[\d+\]:\s+(\d+)/.exec(line);
    if (m) cur.revokes.push(Number(m[1]));
  }
  return { sb, blocks };
}

/** The names `debugfs.ocfs2 -R "ls -l DIR"` lists, '.' and '..' left out, in its order. */
export async function debugfsNames(img: string, dir: string): Promise<string[]> {
  return (await debugfs(img, `ls -l ${dir}`)).split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 9).map((f) => f.slice(8).join(' ')).filter((n) => n !== '.' && n !== '..');
}

/** An allocator's used bits (`debugfs.ocfs2 -R "stat //NAME"`: global_bitmap, inode_alloc:0000, …). */
export async function allocatorUsed(img: string, name: string): Promise<number> {
  const m = /Bitmap Total: \d+\s+Used: (\d+)/.exec(await debugfs(img, `stat //${name}`));
  if (m === null) throw new Error(`debugfs shows no bitmap counts for //${name}`);
  return Number(m[1]);
}
