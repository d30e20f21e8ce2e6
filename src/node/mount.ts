// Mounting an ocfs2 volume in a running node (issue 17 item 1), in the kernel's mount order
// (reference/ocfs2.md §6 "Mount order", §5.11):
//
//   authorize  the volume's cluster stack and name are this cluster's, its features are ones
//              sanbox keeps consistent, the node has quorum, a slot is free or already ours —
//              all read before anything is written (a refusal is one line, nothing written);
//   prepare    heartbeat in the volume's region; the superblock lock (SUPER, EX) while the slot
//              map is reread and our entry written; our journal's META lock EX, held while
//              mounted; our journal replayed if DIRTY (with its allocators, recovery generation
//              + 1); then DIRTY set ("in use"), as the kernel writes it, not through the journal;
//              superblock lock released;
//   umount     (nothing journaled yet) under the superblock lock: DIRTY cleared, slot freed; then
//              the journal lock released and the region left.
//
// Every write goes through the node's provider device (the fence gate is attached): a fenced node
// writes nothing here.

import { SanboxError } from '../errors.js';
import { Mode } from '../dlm/compat-matrix.js';
import type { Lock } from '../dlm/lock-manager.js';
import { openJournal, writeJournalInode } from '../fs/journal-reader.js';
import { authorizeVolume, chooseSlot, journalLockResource, superLockResource, writeSlotEntry } from '../fs/mount-rules.js';
import { Ocfs2Volume } from '../fs/ocfs2-volume.js';
import { recoverSlot, type SlotRecovery } from '../fs/recover.js';
import { FileOps } from '../fs/file-ops.js';
import { clusterLocker } from './cluster-locker.js';
import type { ControlServer } from './control.js';
import { DeadSlotRecovery, type RecoveryHooks } from './recovery.js';

/** A node's log line, with the structured facts of the message when it has some. */
type NodeLog = RecoveryHooks['log'];
import type { MountStatus, RunningNode } from './node.js';
import { volumeKey } from './volume-key.js';
import type { NodeActivations } from './activation.js';
import { isLvSpec } from '../volume/resolve.js';

interface Mounted {
  status: MountStatus;
  journalLock: Lock;
  /** The mount activated its LV (VG/LV not active before): umount deactivates it. */
  activated: boolean;
}

/** The mounts of one node, and the mount/umount operations on it. */
export class NodeMounts {
  private readonly mounted = new Map<string, Mounted>();
  /** One mount or umount at a time per node: each holds the superblock lock of its volume anyway. */
  private queue: Promise<unknown> = Promise.resolve();

  /** Survivors' recovery of dead nodes' slots on the volumes mounted here (src/node/recovery.ts). */
  readonly recovery: DeadSlotRecovery;

  constructor(
    private readonly node: RunningNode,
    private readonly log: NodeLog = () => {},
    /** A VG/LV volume is activated under its LV lock before the mount touches it (issue 18 item 8). */
    private readonly activations?: NodeActivations,
  ) {
    node.beforeStop(() => this.umountAll());
    this.recovery = new DeadSlotRecovery(node, { mountedVolumes: () => [...this.mounted.keys()], serial: (op) => this.serial(op), log });
  }

  mount(spec: string): Promise<MountStatus> {
    return this.serial(() => this.doMount(volumeKey(spec)));
  }

  umount(spec: string): Promise<MountStatus> {
    return this.serial(() => this.doUmount(volumeKey(spec)));
  }

  async umountAll(): Promise<void> {
    for (const key of [...this.mounted.keys()]) await this.umount(key);
  }

  /** Runs `op` after every mount, umount and recovery queued before it. */
  serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async lockTimed(resource: string, mode: Mode): Promise<Lock> {
    const ls = await this.node.lockspace();
    return ls.lock(resource, mode, { timeoutMs: this.node.info.timing.lockTimeoutMs });
  }

  private async doMount(key: string): Promise<MountStatus> {
    const node = this.node;
    const done = this.mounted.get(key);
    if (done !== undefined) throw new SanboxError('EBUSY', `${key}: node ${node.nodeId} has it mounted already (slot ${done.status.slot})`, { device: key });
    // An LV is activated first, under its LV lock: EX, or shared in a shared container so that
    // several nodes mount the same ocfs2 on it. A refusal (another node has it exclusively, a
    // private container of another owner, a deported one) stops the mount before it reads a byte.
    const activated = isLvSpec(key) && this.activations !== undefined && this.activations.modeOf(key) === undefined;
    if (activated) await this.activations!.activate(key, 'auto');
    try {
      // Authorize: reads only.
      const dev = await node.volumeDevice(key);
      const vol0 = await Ocfs2Volume.open(dev);
      authorizeVolume(vol0, node.info.config.clusterName);
      if (!node.membership.hasQuorum()) throw new SanboxError('EAGAIN', `${key}: cannot mount: node ${node.nodeId} has no quorum`, { device: key });
      await chooseSlot(vol0, node.nodeId);

      // Prepare.
      await node.joinVolumeRegion(key);
      const superLock = await this.lockTimed(superLockResource(vol0), Mode.EX);
      let journalLock: Lock | undefined;
      try {
        // Reread under the lock: another node may have taken the last free slot meanwhile.
        const vol = await Ocfs2Volume.open(dev);
        const { slot, reused } = await chooseSlot(vol, node.nodeId);
        journalLock = await this.lockTimed(await journalLockResource(vol, slot), Mode.EX);
        if (!reused) await writeSlotEntry(vol, slot, node.nodeId);
        let rec: SlotRecovery;
        try {
          // Own slot dirty: a previous incarnation of this node died mounted. Replay it as the
          // kernel does at mount (its allocators too; recovery generation + 1); the slot stays ours.
          rec = await recoverSlot(vol, slot, { observeMs: 0, clearSlot: false });
          await writeJournalInode(vol, await openJournal(vol, slot), { dirty: true });
          // Then, as the kernel's mount recovery completion does, the orphans of our own slot
          // (unlinked while open when that incarnation died), through our journal, DIRTY again now.
          // A failure leaves them for a later recovery; the mount stands.
          if (rec.dirty && rec.orphans > 0) {
            await new FileOps(dev, slot, clusterLocker(node)).recoverOrphans(slot).then(
              (freed) => this.log(`${key}: freed ${freed.length} orphan inode(s) of own slot ${slot}: ${freed.join(' ')}`),
              (err: unknown) => this.log(`${key}: orphans of own slot ${slot} left: ${err instanceof Error ? err.message : String(err)}`),
            );
          }
        } catch (err) {
          // A slot this mount claimed and did not get to use goes back (best effort: a fenced
          // node's write is refused, and the slot then waits for recovery like any dead node's).
          if (!reused) await writeSlotEntry(vol, slot, undefined).catch(() => undefined);
          throw err;
        }
        const status: MountStatus = { volume: key, uuid: vol.sb.uuid.toString('hex').toUpperCase(), slot, replayed: rec.dirty, mountedAt: new Date().toISOString() };
        this.mounted.set(key, { status, journalLock, activated });
        node.mounts.set(key, status);
        // Slots of nodes that died before this mount: queued behind this mount in the same queue.
        this.recovery.afterMount(key).catch((err: unknown) => this.log(`${key}: cannot look for dead nodes' slots: ${err instanceof Error ? err.message : String(err)}`));
        return status;
      } catch (err) {
        await journalLock?.unlock().catch(() => undefined);
        throw err;
      } finally {
        await superLock.unlock().catch(() => undefined);
      }
    } catch (err) {
      // Closes the device and leaves the region this mount joined (a --volume home stays).
      await node.leaveVolumeRegion(key).catch(() => undefined);
      if (activated) await this.activations!.deactivate(key).catch(() => undefined);
      throw err;
    }
  }

  private async doUmount(key: string): Promise<MountStatus> {
    const node = this.node;
    const m = this.mounted.get(key);
    if (m === undefined) throw new SanboxError('EINVAL', `${key}: node ${node.nodeId} does not have it mounted`, { device: key });
    const dev = await node.volumeDevice(key);
    // The local alloc window goes back to the global bitmap first, through the journal while it is
    // still DIRTY (ocfs2_shutdown_local_alloc): a clean journal beside a window is refused at mount.
    const returned = await new FileOps(dev, m.status.slot, clusterLocker(node)).releaseLocalAlloc();
    if (returned > 0) this.log(`${key}: local alloc window returned (${returned} unused clusters)`);
    const vol0 = await Ocfs2Volume.open(dev);
    const superLock = await this.lockTimed(superLockResource(vol0), Mode.EX);
    try {
      const vol = await Ocfs2Volume.open(dev);
      await writeJournalInode(vol, await openJournal(vol, m.status.slot), { dirty: false });
      await writeSlotEntry(vol, m.status.slot, undefined);
    } finally {
      await superLock.unlock().catch(() => undefined);
    }
    this.mounted.delete(key);
    node.mounts.delete(key);
    await m.journalLock.unlock().catch(() => undefined);
    await node.leaveVolumeRegion(key);
    if (m.activated) await this.activations!.deactivate(key);
    return m.status;
  }
}

function volumeArg(req: Record<string, unknown>): string {
  const args = req.args;
  const v = Array.isArray(args) ? (args as unknown[])[0] : req.volume;
  if (typeof v !== 'string' || v.length === 0) throw new SanboxError('EINVAL', 'mount/umount: give the volume (an image, nbd://… or VG/LV)');
  return v;
}

/** Registers `mount VOL` and `umount VOL` on the node's control server; returns the node's mounts. */
export function registerMountCommands(control: ControlServer, node: RunningNode, log?: NodeLog, activations?: NodeActivations): NodeMounts {
  const mounts = new NodeMounts(node, log, activations);
  control.handle('mount', async (req) => ({ mounted: await mounts.mount(volumeArg(req)) }));
  control.handle('umount', async (req) => ({ unmounted: await mounts.umount(volumeArg(req)) }));
  return mounts;
}
