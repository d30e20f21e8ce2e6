// Wake-ups for the lock manager's waiting loop. Correctness never rests on them: a waiter re-reads
// its window at least every pollMaxMs whatever happens here. They only shorten the wait.
//
// Per-resource hints (hintDir): the hint of lockspace row r is the file `${hintDir}/r<r>`. A
// waiter on window h (rows h and h+1) watches those two files (inotify through fs.watch) once it
// has to wait; a node that wrote a row in a way that may unblock someone (a release, a
// down-conversion, a withdrawn request, a dropped claim) touches that row's file if it exists
// (stat + utimes, IN_ATTRIB). So a release wakes the processes waiting on that resource's rows and
// nobody else; an uncontended lock creates no file and no watch. The files live on the
// local host: across machines (nbd://) no hint arrives and the poll bound applies.
//
// Per-node hints (hintDir): the file `${hintDir}/n<node>` is watched by the process of that node
// once it waits for another node's entry. A writer that knows from its last read of the window who
// is next in the queue touches only those nodes' files (lock-manager.ts, wakeTargets): a hand-off
// among 8 processes wakes the one process that can move on, not the 6 that would read, find
// themselves still queued, and sleep again (the thundering herd that made 8-process hand-offs
// slower than 4). A writer that cannot know (no queue in its view, or other holders that may have
// started a conversion since) touches the row's file: everyone waiting on the row wakes.
//
// Fallback (watchPath, no hintDir): inotify on the whole image file, as version 1 did: every write
// to the image by anyone wakes every waiter.

import fs from 'node:fs';
import path from 'node:path';

/** Rows watched at once per process; the oldest watch is dropped beyond it (inotify watches are a
 * per-user kernel resource: fs.inotify.max_user_watches, 8192 by default on older kernels). */
export const HINT_WATCHES_MAX = 256;

/** Rows whose hint file this process knows exists (forgotten all at once beyond this: a stat each brings them back). */
export const HINT_FILES_KNOWN_MAX = 4096;

/**
 * A hint addressed to this node within this long says the grants ahead of its requests are made
 * on this machine, where they hint (hintsArriving). Across machines (nbd://) none arrive, and
 * waiters keep polling with backoff. A few queue cycles of a busy resource; far below a timeout.
 */
export const NODE_HINT_FRESH_MS = 1000;

export class Waker {
  private wake: (() => void) | undefined;
  private pending = false;
  private watcher: fs.FSWatcher | undefined;
  private readonly rowWatchers = new Map<number, fs.FSWatcher>();
  private hintDirReady = false;
  private readonly knownFiles = new Set<number>();
  private nodeWatcher: fs.FSWatcher | undefined;
  /** When a hint addressed to this node last arrived (performance.now()). */
  private nodeHintAtMs = -Infinity;
  /** Nodes whose hint file this process knows exists. */
  private readonly knownNodeFiles = new Set<number>();
  wakeups = 0;
  hintsSent = 0;

  constructor(
    private readonly hintDir: string | undefined,
    watchPath: string | undefined,
    private readonly log: (m: string) => void,
    /** This process's node: the one whose per-node hint file it watches. */
    private readonly nodeId: number,
  ) {
    if (hintDir === undefined && watchPath !== undefined) {
      try {
        this.watcher = fs.watch(watchPath, { persistent: false }, () => this.poke());
        this.watcher.on('error', () => this.stopWatching());
      } catch (err) {
        log(`cannot watch ${watchPath} for changes (${(err as Error).message}); polling only`);
      }
    }
  }

  private hintPath(row: number): string {
    return path.join(this.hintDir!, `r${row}`);
  }

  private nodeHintPath(node: number): string {
    return path.join(this.hintDir!, `n${node}`);
  }

  /** Creates `file` (and the hint directory) and watches it; the watcher, or undefined (logged: we poll). */
  private watchFile(file: string, onError: () => void, onHint: () => void = () => this.poke()): fs.FSWatcher | undefined {
    try {
      if (!this.hintDirReady) {
        fs.mkdirSync(this.hintDir!, { recursive: true });
        this.hintDirReady = true;
      }
      fs.closeSync(fs.openSync(file, 'a'));
      const watcher = fs.watch(file, { persistent: false }, onHint);
      watcher.on('error', () => {
        watcher.close();
        onError();
      });
      return watcher;
    } catch (err) {
      // Without the hint we still poll; say so.
      this.log(`cannot watch lock hint ${file} (${(err as Error).message}); polling only`);
      return undefined;
    }
  }

  /** Whether hints addressed to this node are arriving (one within NODE_HINT_FRESH_MS). */
  get hintsArriving(): boolean {
    return this.nodeWatcher !== undefined && performance.now() - this.nodeHintAtMs < NODE_HINT_FRESH_MS;
  }

  /**
   * Makes sure a hint sent to this node wakes us; true when that is new (the caller must read
   * again before it decides to wait, as for watchRow).
   */
  watchNode(): boolean {
    if (this.hintDir === undefined || this.nodeWatcher !== undefined) return false;
    this.nodeWatcher = this.watchFile(
      this.nodeHintPath(this.nodeId),
      () => (this.nodeWatcher = undefined),
      () => {
        this.nodeHintAtMs = performance.now();
        this.poke();
      },
    );
    return this.nodeWatcher !== undefined;
  }

  /**
   * Wakes the processes of `nodes` (not ours: the caller pokes its own waiters), if they watch
   * their file: a waiter creates it before it watches and before the read on which it decides to
   * wait, so no file means that node waits without hints (polling) or not at all.
   */
  hintNodes(nodes: Iterable<number>): void {
    if (this.hintDir === undefined) return;
    for (const node of nodes) {
      if (node === this.nodeId) continue;
      const p = this.nodeHintPath(node);
      if (!this.knownNodeFiles.has(node)) {
        if (!fs.existsSync(p)) continue;
        this.knownNodeFiles.add(node);
      }
      this.touch(p, () => this.knownNodeFiles.delete(node));
    }
  }

  /** Sets the file's times (IN_ATTRIB for its watchers). */
  private touch(file: string, onMissing: () => void): void {
    try {
      const now = new Date();
      fs.utimesSync(file, now, now);
      this.hintsSent++;
    } catch {
      // Removed meanwhile, or not ours to touch: the waiter's poll bound covers it.
      onMissing();
    }
  }

  /**
   * Makes sure a change hint for `row` wakes us; true when that is new (the caller must read again
   * before it decides to wait: a hint sent before the watch existed was not seen).
   */
  watchRow(row: number): boolean {
    if (this.hintDir === undefined) return false;
    const w = this.rowWatchers.get(row);
    if (w !== undefined) {
      this.rowWatchers.delete(row); // LRU order
      this.rowWatchers.set(row, w);
      return false;
    }
    const watcher = this.watchFile(this.hintPath(row), () => this.rowWatchers.delete(row));
    if (watcher === undefined) return false;
    this.rowWatchers.set(row, watcher);
    while (this.rowWatchers.size > HINT_WATCHES_MAX) {
      const [oldest, ow] = this.rowWatchers.entries().next().value as [number, fs.FSWatcher];
      ow.close();
      this.rowWatchers.delete(oldest);
    }
    return true;
  }

  /**
   * Tells waiters on `row` that it changed, unless the caller knows nobody can be waiting for it
   * there (`mayHaveWaiters` false: lock-manager.ts, mayHaveWaiters). A waiter creates the file
   * before it starts watching and before the read on which it decides to wait, so no file means
   * nobody waits there now. Files are never removed while waiters run, so a file seen once is
   * remembered (HINT_FILES_KNOWN_MAX) and touched without a stat first. (A stat rather than
   * utimes on a missing file: an ENOENT from utimes costs an exception, several times a stat.)
   */
  hintRow(row: number, mayHaveWaiters: boolean): void {
    if (this.hintDir === undefined || !mayHaveWaiters) return;
    const p = this.hintPath(row);
    if (!this.knownFiles.has(row)) {
      if (!fs.existsSync(p)) return;
      if (this.knownFiles.size >= HINT_FILES_KNOWN_MAX) this.knownFiles.clear();
      this.knownFiles.add(row);
    }
    this.touch(p, () => this.knownFiles.delete(row));
  }

  poke(): void {
    this.wakeups++;
    this.pending = true;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Resolves after ms, or earlier on poke(); a poke that came since the last wait returns at once. */
  wait(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.pending = false;
        resolve();
      };
    });
  }

  clearPending(): void {
    this.pending = false;
  }

  stopWatching(): void {
    this.watcher?.close();
    this.watcher = undefined;
    for (const w of this.rowWatchers.values()) w.close();
    this.rowWatchers.clear();
    this.nodeWatcher?.close();
    this.nodeWatcher = undefined;
  }
}
