// The demo's files (issue 17 item 7): nodes write files through their slot journals by their
// control sockets (what `sanbox ctl C N fs put|get|ls` sends), the demo keeps the sha256 of every
// file a node acknowledged, and after a node is killed and its slot recovered reads every one back
// through a survivor. File contents go through local files (`localFile`): a control request is
// capped at 64 KiB, and the demo's files are up to 1 MiB.

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openDevice } from '../disk/index.js';
import { sleepMs } from '../disk/sleep.js';
import { SanboxError } from '../errors.js';
import { readJournal } from '../fs/journal-reader.js';
import { Ocfs2Volume } from '../fs/ocfs2-volume.js';
import { answerBoundMs, connectNode, type NodeConnection } from './ctl.js';

/** How often the journal is looked at for a held put's committed transaction. */
const JOURNAL_POLL_MS = 20;

/** Reads the volume (read-only, no guard: its nodes have it open) with `op`. */
async function withVolume<T>(volume: string, op: (vol: Ocfs2Volume) => Promise<T>): Promise<T> {
  const dev = await openDevice(volume, { guard: 'none', readOnly: true });
  try {
    return await op(await Ocfs2Volume.open(dev));
  } finally {
    await dev.close();
  }
}

/** The committed transactions in `slot`'s journal, as a replay would find them (reads only). */
export function committedInJournal(volume: string, slot: number): Promise<number[]> {
  return withVolume(volume, async (vol) => (await readJournal(vol, slot)).scan.transactions.map((t) => t.sequence));
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A file a node was asked to put, and what came of it. */
export interface DemoFile {
  path: string;
  node: number;
  sizeBytes: number;
  sha256: string;
  /** Acknowledged: the node answered after the transaction's commit was durable. */
  acknowledged: boolean;
  /** JBD2 transaction that carried it (acknowledged files only). */
  sequence: number | undefined;
  /** After the recovery: 'intact' (same sha256), 'absent', or 'CHANGED' / 'MISSING' (a failure). */
  afterRecovery?: 'intact' | 'absent' | 'CHANGED' | 'MISSING';
}

/** One node's control connection for file operations on the demo volume. */
export class DemoFiles {
  private constructor(
    private readonly conn: NodeConnection,
    readonly nodeId: number,
    private readonly volume: string,
    private readonly scratchDir: string,
    private readonly answerMs: number,
  ) {}

  static async connect(image: string, nodeId: number, volume: string, scratchDir: string): Promise<DemoFiles> {
    const conn = await connectNode(image, nodeId);
    fs.mkdirSync(scratchDir, { recursive: true });
    return new DemoFiles(conn, nodeId, volume, scratchDir, answerBoundMs('fs', conn.info.timing.lockTimeoutMs));
  }

  private fs(sub: string, volPath: string, extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.conn.request({ cmd: 'fs', args: [sub, this.volume, volPath], ...extra }, this.answerMs);
  }

  /** mkdir; resolves to the directory's inode number. */
  async mkdir(volPath: string): Promise<number> {
    return doneOf(await this.fs('mkdir', volPath)).inode;
  }

  /**
   * Puts `sizeBytes` random bytes at `volPath`. The returned file records the content's sha256 at
   * once; `acked` settles when the node answers (rejects if it never does, e.g. it was killed).
   */
  put(volPath: string, sizeBytes: number): { file: DemoFile; acked: Promise<DemoFile> } {
    const data = randomBytes(sizeBytes);
    const local = path.join(this.scratchDir, `put-${this.nodeId}-${volPath.replaceAll('/', '_')}`);
    fs.writeFileSync(local, data);
    const file: DemoFile = { path: volPath, node: this.nodeId, sizeBytes, sha256: sha256(data), acknowledged: false, sequence: undefined };
    const acked = this.fs('put', volPath, { localFile: local }).then((ans) => {
      file.acknowledged = true;
      file.sequence = doneOf(ans).sequence;
      return file;
    });
    return { file, acked };
  }

  /** The file's content as this node reads it under its PR lock. */
  async get(volPath: string): Promise<Buffer> {
    const local = path.join(this.scratchDir, `get-${this.nodeId}-${volPath.replaceAll('/', '_')}`);
    await this.fs('get', volPath, { localFile: local });
    return fs.readFileSync(local);
  }

  /** Names in a directory (without '.' and '..'). */
  async ls(volPath: string): Promise<string[]> {
    const ans = await this.fs('ls', volPath);
    if (!Array.isArray(ans.entries)) throw new SanboxError('EIO', `node ${this.nodeId}: fs ls answered without entries`);
    return (ans.entries as { name?: unknown }[]).map((e) => String(e.name)).filter((n) => n !== '.' && n !== '..');
  }

  /** Installs a fault rule in the node (what `sanbox ctl C N fault set` sends). */
  async fault(rule: Record<string, unknown>): Promise<void> {
    await this.conn.request({ cmd: 'fault-set', ...rule });
  }

  /**
   * Puts a new file into the directory whose inode is `o.dirInode`, with a fault rule in the node
   * that holds the write of that directory's block back home (a create writes the new inode home
   * first, then the directory): resolves once the put's transaction is committed in slot
   * `o.slot`'s journal, the node sitting in its checkpoint, the put not acknowledged.
   */
  async putHeldAfterCommit(volPath: string, sizeBytes: number, o: { slot: number; dirInode: number; timeoutMs: number }): Promise<{ put: { file: DemoFile; acked: Promise<DemoFile> }; committedSequence: number }> {
    const blockBytes = await withVolume(this.volume, async (vol) => vol.blockSizeBytes);
    await this.fault({ action: 'stall', op: 'write', device: this.volume, offsetBytes: o.dirInode * blockBytes, lengthBytes: blockBytes });
    const before = await committedInJournal(this.volume, o.slot);
    const put = this.put(volPath, sizeBytes);
    put.acked.catch(() => undefined); // the caller kills the node before it answers (and checks that)
    let committed = before;
    for (const deadline = Date.now() + o.timeoutMs; committed.length <= before.length; ) {
      if (Date.now() > deadline) throw new SanboxError('ETIMEDOUT', `node ${this.nodeId}'s put of ${volPath} did not commit within ${o.timeoutMs} ms`);
      await sleepMs(JOURNAL_POLL_MS);
      committed = await committedInJournal(this.volume, o.slot);
    }
    return { put, committedSequence: committed.at(-1)! };
  }

  /**
   * Reads every file back and marks it: acknowledged files must be intact; a file never
   * acknowledged may be whole ('intact') or 'absent', never anything else.
   */
  async verify(files: DemoFile[]): Promise<void> {
    const listed = new Map<string, string[]>();
    for (const f of files) {
      const dir = path.posix.dirname(f.path);
      if (!listed.has(dir)) listed.set(dir, await this.ls(dir));
      if (!listed.get(dir)!.includes(path.posix.basename(f.path))) {
        f.afterRecovery = f.acknowledged ? 'MISSING' : 'absent';
        continue;
      }
      f.afterRecovery = sha256(await this.get(f.path)) === f.sha256 ? 'intact' : 'CHANGED';
    }
  }

  close(): void {
    this.conn.close();
  }
}

/** The `done` record of a change's answer: {path, inode, sequence}. */
function doneOf(ans: Record<string, unknown>): { inode: number; sequence: number } {
  const d = ans.done as { inode?: unknown; sequence?: unknown } | undefined;
  if (typeof d?.inode !== 'number' || typeof d.sequence !== 'number') throw new SanboxError('EIO', `fs answered without an inode and a transaction: ${JSON.stringify(ans)}`);
  return { inode: d.inode, sequence: d.sequence };
}
