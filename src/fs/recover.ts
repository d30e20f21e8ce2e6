// Recovering a dead slot of an ocfs2 volume, the offline core of ocfs2's recovery of another
// node (reference/ocfs2.md §5.11, §6; fs/ocfs2/journal.c ocfs2_replay_journal/ocfs2_recover_node):
// replay its journal, recover its local alloc and truncate log, mark the journal clean (DIRTY
// cleared, recovery generation + 1), free its slot in the slot map.
//
// Write order, so that an interrupted recovery can be rerun from the start and ends the same:
//   1. home blocks, flush; the log marked empty (s_start 0, s_sequence end+1), flush — replay.ts;
//   2. allocators (idempotent: bits cleared only if set, counters recomputed), flush;
//   3. journal inode: DIRTY cleared, recovery generation + 1, flush;
//   4. the slot map entry freed, flush.
// Until 3 the journal stays DIRTY, so a rerun sees a dirty slot with an empty log and redoes 2.
//
// Refused while the slot's node still heartbeats on the volume: its o2hb block is watched for a
// bounded window and any change of sequence or generation means it is alive.
// Then, as the kernel's recovery completion does, the orphan directory: every inode in it is
// freed and its entry removed (src/fs/file-ops.ts recoverOrphans), one transaction each, through
// a slot journal — the recovering node's own (under its cluster locks, src/node/recovery.ts), or
// offline the recovered slot's journal, DIRTY while the orphans are processed so a crash in the
// middle leaves a journal the next recovery (or a mount of that slot) replays.

import { SanboxError } from '../errors.js';
import { slotFileName } from '../format/ocfs2/constants.js';
import { recoverAllocators, type AllocRecovery } from './alloc-recovery.js';
import { FileOps, type ClusterLocker } from './file-ops.js';
import { readHeartbeat } from './heartbeat-reader.js';
import { openJournal, writeJournalInode } from './journal-reader.js';
import { writeSlotEntry } from './mount-rules.js';
import type { Ocfs2Volume } from './ocfs2-volume.js';
import { replayJournal, type ReplayResult } from './replay.js';
import { readSlotMap } from './slot-map-reader.js';
import { LIVENESS_OBSERVE_MS_DEFAULT, LIVENESS_POLL_MS } from '../timing.js';
export { LIVENESS_OBSERVE_MS_DEFAULT };

export interface SlotRecovery {
  slot: number;
  /** The node the slot map names for the slot (undefined: the slot is free). */
  nodeNum: number | undefined;
  /** The journal was DIRTY: the slot's node did not unmount cleanly. */
  dirty: boolean;
  replay: ReplayResult | undefined;
  allocators: AllocRecovery | undefined;
  recoveryGenerationBefore: number;
  recoveryGenerationAfter: number;
  slotCleared: boolean;
  /** Entries in the slot's orphan directory once its journal is replayed. */
  orphans: number;
  /** Orphan inodes freed (their entries removed). */
  orphansFreed: number[];
  dryRun: boolean;
}

export interface RecoverOptions {
  /** Liveness window; 0 skips the check (the caller knows the node is fenced). */
  observeMs?: number;
  dryRun?: boolean;
  /** Free the slot in the slot map (a survivor's recovery does; an own-slot mount does not). */
  clearSlot?: boolean;
  /** Called as each step of the write order is durable (a node reports where its recovery's time goes). */
  onPhase?: (phase: RecoveryPhase) => void;
  /**
   * Frees the orphan directory's inodes once the slot is recovered: a node passes its own
   * FileOps (its journal, its locks); `'offline'` uses the slot's own journal without cluster
   * locks (nothing else may have the volume open); undefined leaves them (an own-slot mount).
   */
  orphans?: 'offline' | ((slot: number) => Promise<number[]>);
}

/** The steps of the write order above, in order. */
export type RecoveryPhase = 'replayed' | 'allocators' | 'clean' | 'slotFreed';

/** Recovers one slot (nothing to do when its journal is clean). */
export async function recoverSlot(vol: Ocfs2Volume, slot: number, opts: RecoverOptions = {}): Promise<SlotRecovery> {
  const j = await openJournal(vol, slot);
  const map = await readSlotMap(vol);
  const nodeNum = map.slots[slot]?.nodeNum;
  const out: SlotRecovery = {
    slot, nodeNum, dirty: j.dirty, replay: undefined, allocators: undefined,
    recoveryGenerationBefore: j.recoveryGeneration, recoveryGenerationAfter: j.recoveryGeneration,
    slotCleared: false, orphans: await orphanCount(vol, slot), orphansFreed: [], dryRun: opts.dryRun ?? false,
  };
  const freeSlot = (opts.clearSlot ?? true) && nodeNum !== undefined;
  // The kernel decides by DIRTY alone (a clean journal's log is wiped, never replayed, §5.11).
  // A clean journal whose slot still names a node (it died inside its mount before DIRTY was set,
  // or inside its umount after DIRTY was cleared, or a recoverer died between marking clean and
  // freeing the slot) is not replayed, but its slot is freed, as ocfs2_recover_node does after
  // ocfs2_replay_journal found nothing to do.
  if (!j.dirty && !freeSlot) return out;
  if (nodeNum !== undefined && (opts.observeMs ?? LIVENESS_OBSERVE_MS_DEFAULT) > 0) {
    await refuseIfAlive(vol, slot, nodeNum, opts.observeMs ?? LIVENESS_OBSERVE_MS_DEFAULT);
  }
  if (!j.dirty) {
    if (!opts.dryRun) await writeSlotEntry(vol, slot, undefined);
    out.slotCleared = !opts.dryRun;
    return out;
  }
  out.replay = await replayJournal(vol, slot, { dryRun: opts.dryRun });
  opts.onPhase?.('replayed');
  // The replay may have changed the orphan directory (a dry run reports what the home blocks hold).
  if (!opts.dryRun) out.orphans = await orphanCount(vol, slot);
  out.allocators = await recoverAllocators(vol, slot, { dryRun: opts.dryRun });
  opts.onPhase?.('allocators');
  out.recoveryGenerationAfter = (j.recoveryGeneration + 1) >>> 0;
  if (opts.dryRun) return out;

  await writeJournalInode(vol, j, { dirty: false, recoveryGeneration: out.recoveryGenerationAfter });
  opts.onPhase?.('clean');

  if (freeSlot) {
    await writeSlotEntry(vol, slot, undefined);
    out.slotCleared = true;
    opts.onPhase?.('slotFreed');
  }
  if (out.orphans > 0 && opts.orphans !== undefined) out.orphansFreed = opts.orphans === 'offline' ? await recoverOrphansOffline(vol, slot) : await opts.orphans(slot);
  return out;
}

/** One process, nothing else has the volume open (the caller's exclusive guard): no cluster to lock against. */
const NO_CLUSTER_LOCKS: ClusterLocker = () => Promise.resolve(() => Promise.resolve());

/** The orphans of a recovered slot through its own journal, DIRTY while they are processed. */
async function recoverOrphansOffline(vol: Ocfs2Volume, slot: number): Promise<number[]> {
  await writeJournalInode(vol, await openJournal(vol, slot), { dirty: true });
  const freed = await new FileOps(vol.dev, slot, NO_CLUSTER_LOCKS).recoverOrphans(slot);
  await writeJournalInode(vol, await openJournal(vol, slot), { dirty: false });
  return freed;
}

/** Every dirty slot of the volume (or just `slot`), in slot order. */
export async function recoverVolume(vol: Ocfs2Volume, opts: RecoverOptions & { slot?: number } = {}): Promise<SlotRecovery[]> {
  const slots = opts.slot !== undefined ? [opts.slot] : [...Array(vol.sb.maxSlots).keys()];
  const out: SlotRecovery[] = [];
  for (const s of slots) out.push(await recoverSlot(vol, s, opts));
  return out;
}

/** Watches node `nodeNum`'s o2hb block for `observeMs`; a changed sequence or generation = alive. */
async function refuseIfAlive(vol: Ocfs2Volume, slot: number, nodeNum: number, observeMs: number): Promise<void> {
  const blockOf = async (): Promise<{ seq: bigint; generation: bigint; offsetBytes: number } | undefined> => (await readHeartbeat(vol)).slots.find((s) => s.slot === nodeNum);
  const first = await blockOf();
  // A node that never wrote, or left cleanly (generation 0), is not heartbeating.
  if (first === undefined || first.generation === 0n) return;
  const deadline = Date.now() + observeMs;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, LIVENESS_POLL_MS));
    const now = await blockOf();
    if (now === undefined || now.generation === 0n) return;
    if (now.seq !== first.seq || now.generation !== first.generation) {
      throw new SanboxError('EBUSY', `${vol.dev.name}: slot ${slot}: node ${nodeNum} still heartbeats on the volume (its o2hb block at byte offset ${now.offsetBytes} changed within ${observeMs} ms); recover only a dead node's slot`, { device: vol.dev.name, offsetBytes: now.offsetBytes });
    }
  }
}

async function orphanCount(vol: Ocfs2Volume, slot: number): Promise<number> {
  const dir = await vol.systemInode(slotFileName('orphan_dir', slot));
  return (await vol.readDir(dir)).filter((e) => e.inode !== 0 && e.name !== '.' && e.name !== '..').length;
}
