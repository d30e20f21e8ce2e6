// Recovery of a dead node's slot by the survivors that have the volume mounted (issue 17 item 3),
// in ocfs2's order (reference/ocfs2.md §6; fs/ocfs2/journal.c ocfs2_recover_node and
// ocfs2_replay_journal):
//
//   down     node N declared dead: for each volume we have mounted, note N's slot and that slot's
//            journal recovery generation (ocfs2's slot_recovery_generations[]) and the time;
//   fenced   only now (never on "down" alone: a dead-but-unfenced node may still write):
//            superblock lock EX (serialises every recoverer and every mount/umount);
//            reread the slot map and the journal inode — skip if the slot no longer names N
//            (recovered and maybe reused) or its recovery generation moved (someone else
//            recovered it since we learned of the death); the slot's journal META lock EX (free:
//            the lockspace ignores a fenced incarnation's locks); replay, allocators, mark clean
//            (recovery generation + 1), free the slot, free its orphan directory's inodes through
//            our own journal (src/fs/recover.ts); release both locks.
//
// Every survivor runs this and exactly one does the work: the others find the generation moved
// under the superblock lock. A recoverer that dies mid-way holds the superblock lock until it is
// fenced; the next survivor then finds the generation unchanged and redoes the whole recovery,
// which ends the same (replay and allocator recovery are idempotent, recover.ts's write order).

import { SanboxError } from '../errors.js';
import { Mode } from '../dlm/compat-matrix.js';
import type { Lock } from '../dlm/lock-manager.js';
import type { MembershipEvent } from '../heartbeat/membership-api.js';
import { openJournal } from '../fs/journal-reader.js';
import { journalLockResource, superLockResource, writeSlotEntry } from '../fs/mount-rules.js';
import { Ocfs2Volume } from '../fs/ocfs2-volume.js';
import { recoverSlot, type RecoveryPhase } from '../fs/recover.js';
import { FileOps } from '../fs/file-ops.js';
import { clusterLocker } from './cluster-locker.js';
import { readSlotMap } from '../fs/slot-map-reader.js';
import type { RunningNode } from './node.js';

/**
 * Tries at taking the superblock lock before a recovery is given up (logged). Each try waits
 * lockTimeoutMs (5 × deadMs): a recoverer holding it that dies is fenced well within one try, so
 * more than a few timeouts in a row mean a live holder is stuck, which an operator must see.
 */
const SUPER_LOCK_TRIES_MAX = 6;

/** What a survivor learned at a node's death, per mounted volume. */
interface Death {
  volume: string;
  nodeId: number;
  generation: bigint;
  /** Its slot when it died (undefined: it held none, e.g. another survivor recovered it already). */
  slot: number | undefined;
  recoveryGeneration: number;
  /** Monotonic (performance.now()) time of the "down" event; undefined: dead before we mounted. */
  deathAtMs: number | undefined;
  /** Wall-clock (Date.now()) times of the "down" and "fenced" events, reported with the recovery. */
  downAtEpochMs?: number;
  fencedAtEpochMs?: number;
}

export interface RecoveryHooks {
  /** Volumes this node has mounted now, by volume key. */
  mountedVolumes(): string[];
  /** Runs `op` in the node's mount/umount queue. */
  serial<T>(op: () => Promise<T>): Promise<T>;
  /** `data` carries the structured facts of the message (a recovery's outcome), for --json. */
  log(msg: string, data?: Record<string, unknown>): void;
}

/**
 * Wall-clock times (Date.now()) of one recovery's steps: another process on the same host (the
 * demo, bench:fs) sets them beside the time it killed the node, and sees where failover time goes.
 * `down` and `fenced` are undefined for a node that died before this one mounted.
 */
export interface RecoveryTimesEpochMs {
  down: number | undefined;
  fenced: number | undefined;
  superLock: number;
  journalLock: number;
  replayed: number;
  allocators: number;
  clean: number;
  slotFreed: number;
}

/** One replayed transaction: its JBD2 sequence number and the home blocks it wrote. */
export interface ReplayedTransactionReport {
  sequence: number;
  homeBlocks: number[];
}

export type RecoveryOutcome =
  | {
      kind: 'recovered'; node: number; slot: number; transactions: number; homeBlocks: number; afterDeathMs: number | undefined; recoveryGeneration: number;
      replayed: ReplayedTransactionReport[]; times: RecoveryTimesEpochMs;
    }
  | { kind: 'skipped'; node: number; slot: number | undefined; reason: string };

/** Subscribes to the node's membership and recovers dead nodes' slots on every mounted volume. */
export class DeadSlotRecovery {
  /** Deaths noted at "down", by `${nodeId}:${generation}`; each resolves once the slot and generation are read. */
  private readonly deaths = new Map<string, Promise<Death[]>>();

  constructor(private readonly node: RunningNode, private readonly hooks: RecoveryHooks) {
    // For the node's life: its membership stops emitting when the node stops.
    node.membership.subscribe((ev) => this.onEvent(ev));
  }

  private onEvent(ev: MembershipEvent): void {
    if (ev.nodeId === this.node.nodeId) return;
    const key = `${ev.nodeId}:${ev.generation}`;
    if (ev.kind === 'down') {
      const downAtEpochMs = Date.now();
      const noted = this.noteDeath(ev).then((ds) => ds.map((d) => ({ ...d, downAtEpochMs }))).catch((err: unknown) => {
        this.hooks.log(`recovery of node ${ev.nodeId}: cannot read its slot: ${errText(err)}`);
        return [];
      });
      this.deaths.set(key, noted);
    } else if (ev.kind === 'fenced') {
      const noted = this.deaths.get(key);
      this.deaths.delete(key);
      if (noted === undefined) return;
      const fencedAtEpochMs = Date.now();
      void noted.then((deaths) => deaths.forEach((d) => this.queue({ ...d, fencedAtEpochMs })));
    } else if (ev.kind === 'left') {
      // A clean leave: it unmounted first, nothing to recover.
      this.deaths.delete(key);
    }
  }

  /**
   * Called once a mount of `volume` is done (in the mount queue): the slots of nodes already dead
   * are recovered as ocfs2's mount does (ocfs2_mark_dead_nodes) — a fenced one now (queued after
   * the mount), a dead one not yet fenced once its "fenced" event comes. Slots of live nodes and
   * of nodes this membership never saw are left (`sanbox recover` handles the latter offline).
   */
  async afterMount(volume: string): Promise<void> {
    const vol = await Ocfs2Volume.open(await this.node.volumeDevice(volume));
    const map = await readSlotMap(vol);
    const members = this.node.membership.members();
    for (const [slot, entry] of map.slots.entries()) {
      const m = members.find((x) => x.nodeId === entry.nodeNum);
      if (m === undefined || m.nodeId === this.node.nodeId || (m.state !== 'fenced' && m.state !== 'dead')) continue;
      const j = await openJournal(vol, slot);
      const d: Death = { volume, nodeId: m.nodeId, generation: m.generation, slot, recoveryGeneration: j.recoveryGeneration, deathAtMs: undefined };
      if (m.state === 'fenced') {
        this.queue(d);
        continue;
      }
      const key = `${m.nodeId}:${m.generation}`;
      const before = this.deaths.get(key) ?? Promise.resolve([]);
      // Once fenced, recovered with the deaths noted at "down" (on other volumes).
      this.deaths.set(key, before.then((ds) => [...ds.filter((x) => x.volume !== volume), d]));
    }
  }

  /** Node d.nodeId runs again in another incarnation than the dead one. */
  private backUp(d: Death): boolean {
    const m = this.node.membership.members().find((x) => x.nodeId === d.nodeId);
    return m !== undefined && m.state === 'up' && m.generation !== d.generation;
  }

  private queue(d: Death): void {
    this.hooks.serial(() => this.recover(d)).catch((err: unknown) => this.hooks.log(`recovery of slot ${d.slot} of node ${d.nodeId} on ${d.volume} failed: ${errText(err)}`));
  }

  /** Reads, for each mounted volume, the dead node's slot and its recovery generation (reads only). */
  private async noteDeath(ev: MembershipEvent): Promise<Death[]> {
    const out: Death[] = [];
    for (const volume of this.hooks.mountedVolumes()) {
      const vol = await Ocfs2Volume.open(await this.node.volumeDevice(volume));
      const slot = (await readSlotMap(vol)).slots.findIndex((s) => s.nodeNum === ev.nodeId);
      if (slot < 0) {
        out.push({ volume, nodeId: ev.nodeId, generation: ev.generation, slot: undefined, recoveryGeneration: 0, deathAtMs: ev.atMs });
        continue;
      }
      const j = await openJournal(vol, slot);
      out.push({ volume, nodeId: ev.nodeId, generation: ev.generation, slot, recoveryGeneration: j.recoveryGeneration, deathAtMs: ev.atMs });
    }
    return out;
  }

  private async superLock(vol: Ocfs2Volume, d: Death): Promise<Lock> {
    const ls = await this.node.lockspace();
    for (let tryNo = 1; ; tryNo++) {
      try {
        return await ls.lock(superLockResource(vol), Mode.EX, { timeoutMs: this.node.info.timing.lockTimeoutMs });
      } catch (err) {
        if (!(err instanceof SanboxError && err.code === 'ETIMEDOUT') || tryNo >= SUPER_LOCK_TRIES_MAX) throw err;
        this.hooks.log(`recovery of slot ${d.slot} of node ${d.nodeId}: still waiting for the superblock lock (${errText(err)})`);
      }
    }
  }

  /** The ocfs2 flow for one dead slot; the caller is in the node's mount queue. */
  async recover(d: Death): Promise<RecoveryOutcome | undefined> {
    if (!this.hooks.mountedVolumes().includes(d.volume)) return undefined;
    if (!this.node.membership.isFenced(d.nodeId, d.generation)) throw new SanboxError('EINVAL', `node ${d.nodeId} is not fenced: its journal must not be recovered`);
    if (d.slot === undefined) {
      const out: RecoveryOutcome = { kind: 'skipped', node: d.nodeId, slot: undefined, reason: 'no slot' };
      this.hooks.log(`skipped recovery of node ${d.nodeId} on ${d.volume}: it held no slot there when it died (recovered already, or never mounted)`, { recovery: out });
      return out;
    }
    return this.recoverSlotOf({ ...d, slot: d.slot });
  }

  private async recoverSlotOf(d: Death & { slot: number }): Promise<RecoveryOutcome> {
    const dev = await this.node.volumeDevice(d.volume);
    this.hooks.log(`recovering slot ${d.slot} of node ${d.nodeId} on ${d.volume} (fenced; recovery generation ${d.recoveryGeneration})`);
    const superLock = await this.superLock(await Ocfs2Volume.open(dev), d);
    const superLockAt = Date.now();
    let out: RecoveryOutcome & { slot: number };
    try {
      const vol = await Ocfs2Volume.open(dev);
      const holder = (await readSlotMap(vol)).slots[d.slot]?.nodeNum;
      const j = await openJournal(vol, d.slot);
      if (j.recoveryGeneration !== d.recoveryGeneration) {
        out = { kind: 'skipped', node: d.nodeId, slot: d.slot, reason: `recovery generation of slot ${d.slot} moved from ${d.recoveryGeneration} to ${j.recoveryGeneration}: another node recovered it` };
      } else if (holder !== d.nodeId) {
        out = { kind: 'skipped', node: d.nodeId, slot: d.slot, reason: `slot ${d.slot} no longer belongs to node ${d.nodeId} (${holder === undefined ? 'free' : `node ${holder}`})` };
      } else if (this.backUp(d)) {
        // A new incarnation of the node owns the slot again (its mount replays its own journal,
        // and once mounted it holds the journal lock a recovery would wait on in vain).
        out = { kind: 'skipped', node: d.nodeId, slot: d.slot, reason: `node ${d.nodeId} is back (a new incarnation) and takes its own slot` };
      } else {
        const ls = await this.node.lockspace();
        const journalLock = await ls.lock(await journalLockResource(vol, d.slot), Mode.EX, { timeoutMs: this.node.info.timing.lockTimeoutMs });
        try {
          const journalLockAt = Date.now();
          const phaseAt = new Map<RecoveryPhase, number>();
          // After the slot is freed, its orphans, through this node's own journal under its cluster locks (ocfs2_recover_orphans).
          const own = this.node.mounts.get(d.volume)?.slot;
          const orphans = own === undefined ? undefined : (slot: number) => new FileOps(dev, own, clusterLocker(this.node)).recoverOrphans(slot);
          const rec = await recoverSlot(vol, d.slot, { observeMs: 0, clearSlot: true, onPhase: (p) => phaseAt.set(p, Date.now()), ...(orphans ? { orphans } : {}) });
          if (rec.orphansFreed.length > 0) this.hooks.log(`freed ${rec.orphansFreed.length} orphan inode(s) of slot ${d.slot} on ${d.volume}: ${rec.orphansFreed.join(' ')}`);
          // A journal left clean (the node died inside its umount, between DIRTY cleared and the
          // slot freed) is not replayed, but the slot is still freed, as ocfs2_recover_node does.
          if (!rec.slotCleared) await writeSlotEntry(vol, d.slot, undefined);
          const slotFreed = Date.now();
          // Steps a clean journal skipped took no time: they count as done when the slot was freed.
          const at = (p: RecoveryPhase): number => phaseAt.get(p) ?? slotFreed;
          out = {
            kind: 'recovered', node: d.nodeId, slot: d.slot,
            replayed: (rec.replay?.transactions ?? []).map((tx) => ({ sequence: tx.sequence, homeBlocks: tx.homeBlocks })),
            times: {
              down: d.downAtEpochMs, fenced: d.fencedAtEpochMs, superLock: superLockAt, journalLock: journalLockAt,
              replayed: at('replayed'), allocators: at('allocators'), clean: at('clean'), slotFreed,
            },
            transactions: rec.replay?.transactions.length ?? 0,
            homeBlocks: rec.replay?.blocksWritten ?? 0,
            afterDeathMs: d.deathAtMs === undefined ? undefined : Math.round(performance.now() - d.deathAtMs),
            recoveryGeneration: rec.recoveryGenerationAfter,
          };
        } finally {
          await journalLock.unlock().catch(() => undefined);
        }
      }
    } finally {
      await superLock.unlock().catch(() => undefined);
    }
    this.hooks.log(out.kind === 'recovered'
      ? `recovered slot ${out.slot} of node ${d.nodeId}: ${out.transactions} transactions, ${out.homeBlocks} home blocks, ${out.afterDeathMs === undefined ? 'dead before this node mounted' : `${out.afterDeathMs} ms after the death`} (recovery generation ${out.recoveryGeneration}) on ${d.volume}`
      : `skipped recovery of slot ${out.slot} of node ${d.nodeId} on ${d.volume}: ${out.reason}`, { recovery: out });
    return out;
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
