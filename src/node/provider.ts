// The device provider: every device a node writes is opened here (the cluster image, ocfs2
// volumes, each PV under an LV, nbd:// exports), so each one carries this node's fence gate, its
// fault wrapper (rules set through the control channel) and I/O counters. Volume, fs and lock code
// get their devices from the provider, never from openDevice, so a fenced node can write nothing
// anywhere: self-fencing the provider closes every gate at once (ARCHITECTURE.md, "This phase").
//
// Per device, in order from the caller down:
//   CountedDevice → FaultDevice (control-channel rules) → [FaultDevice (SANBOX_FAULTS file)] → FileDisk/NBD, whose writes pass the gate.
// A local device gets a FenceGate over reservation state on disk (the cluster image's region, or
// a sidecar `DEV.fence/reservations` for a volume or PV); this node registers its key there and
// creates the WERO reservation if none exists. An nbd:// device gets a SelfFenceGate: the target
// does the refusing there, by cutting a fenced node off.

import path from 'node:path';
import { FaultDevice, shadowingRule, type FaultRule } from '../disk/fault-device.js';
import { FenceGate, SelfFenceGate, type SelfFencingGate } from '../disk/fence-gate.js';
import { isSyncDevice, isSyncFit, type BlockDevice, type SyncBlockDevice, type SyncFitness } from '../disk/device.js';
import type { NbdOpenOptions } from '../disk/nbd-device.js';
import { openDevice, schemeOf } from '../disk/open.js';
import { deviceIdentity, identityOrUndefined } from '../disk/file-identity.js';
import { PersistentReservations, PR_TYPES, sidecarStoreSpec, type PreemptResult, type ReservationStoreSpec } from '../disk/reservations.js';
import { DiskError, SanboxError } from '../errors.js';
import type { Timing } from '../timing.js';
import { deviceList } from '../volume/devices.js';
import { isLvSpec } from '../volume/resolve.js';
import { openLv } from '../volume/manager.js';
import type { LvDevice } from '../volume/lv-device.js';
import { assertNodeMayUse, heldWithoutQuorum, readContainerUse, type ContainerUse } from '../volume/container.js';
import { QuorumHeldDevice, QuorumHold, type QuorumHoldStatus, type QuorumSource } from '../disk/quorum-hold.js';
import { mergeSpecs } from '../volume/lvm-cluster.js';
import { anyLeaseExpired, type WriteLease } from '../disk/write-lease.js';
import { openClaimed } from '../volume/open-claim.js';
import type { LockService } from '../volume/lvm-locks.js';

/** Where a device's reservation state lives: a region of the device itself, a sidecar file, or nowhere (nbd://). */
export type ReservationPlace = { spec: ReservationStoreSpec } | 'sidecar' | 'remote';

export interface IoCounters {
  reads: number;
  writes: number;
  readBytes: number;
  writtenBytes: number;
  /** Flushes (fdatasync, NBD FLUSH): what a durable commit costs (bench:fs counts them per put). */
  flushes: number;
  errors: number;
  /** Writes the fence gate refused. */
  refused: number;
}

export interface DeviceStatus {
  name: string;
  /** 'open': writes pass; 'fenced': the gate refuses them (with why). */
  gate: 'open' | 'fenced';
  fencedReason: string | null;
  reservations: 'on-disk' | 'sidecar' | 'target';
  io: IoCounters;
}

export interface FaultRuleStatus extends FaultRule {
  /** Devices of this node the rule applies to (by its device filter). */
  devices: string[];
  /** The id of an earlier rule that always fires first, so this one never does. */
  shadowedBy: string | null;
}

/** Bound on the rules a node keeps (a script adding rules in a loop must not grow a node without limit). */
export const FAULT_RULES_MAX = 64;

/**
 * What this node has a device open for (review 5, H1 and M1): a client of the node may write only
 * what is LVM's, never what the node uses for itself.
 *   - 'own': the node's own use, not LVM's: its cluster image, a volume it mounts or heartbeats on;
 *   - 'lvm': a PV under one of the node's LVs, or a device scanned for one (openLvOf);
 *   - 'client': an LVM command of a client (remote-device.ts dev-open);
 *   - 'exclusive': a client's pvcreate or pvremove, which needs the device to itself.
 */
export type DeviceUse = 'own' | 'lvm' | 'client' | 'exclusive';

interface Entry {
  name: string;
  use: DeviceUse;
  /** The device's file identity (deviceIdentity): opens of it through different paths are counted as one device. */
  identity: string;
  gate: SelfFencingGate;
  pr: PersistentReservations | null;
  place: DeviceStatus['reservations'];
  faults: FaultDevice;
  io: IoCounters;
}

/** Counts I/O and errors of one provided device; everything else passes through. */
class CountedDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly sectorSizeBytes: BlockDevice['sectorSizeBytes'];
  readonly readOnly: boolean;

  constructor(
    private readonly inner: BlockDevice,
    private readonly io: IoCounters,
    private readonly onClose: () => Promise<void>,
  ) {
    this.name = inner.name;
    this.sizeBytes = inner.sizeBytes;
    this.sectorSizeBytes = inner.sectorSizeBytes;
    this.readOnly = inner.readOnly;
  }

  /** Counts a failed operation; one promise per I/O (this sits on every I/O of a node). */
  private readonly failed = (err: unknown): never => {
    this.io.errors++;
    throw err;
  };

  private count(op: () => Promise<void>): Promise<void> {
    try {
      return op().catch(this.failed);
    } catch (err) {
      this.io.errors++;
      return Promise.reject(err as Error);
    }
  }

  read(buf: Buffer, offsetBytes: number): Promise<void> {
    this.io.reads++;
    this.io.readBytes += buf.length;
    return this.count(() => this.inner.read(buf, offsetBytes));
  }

  write(buf: Buffer, offsetBytes: number): Promise<void> {
    this.io.writes++;
    this.io.writtenBytes += buf.length;
    return this.count(() => this.inner.write(buf, offsetBytes));
  }

  flush(): Promise<void> {
    this.io.flushes++;
    return this.count(() => this.inner.flush());
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.count(() => this.inner.discard(offsetBytes, lengthBytes));
  }

  async close(): Promise<void> {
    await this.inner.close();
    await this.onClose();
  }
}

/**
 * A counted local-file device: also the synchronous form, so an LV over such PVs is synchronous
 * and a LockedLv does its I/O inside the call while no fault rule could block the thread (syncFit;
 * issue 18: the promise layers were most of a cluster-locked LV's cost per 4 KiB I/O).
 */
class SyncCountedDevice extends CountedDevice implements SyncBlockDevice, SyncFitness {
  readonly sync = true as const;

  constructor(
    private readonly syncInner: SyncBlockDevice,
    private readonly counters: IoCounters,
    onClose: () => Promise<void>,
  ) {
    super(syncInner, counters, onClose);
  }

  get syncFit(): boolean {
    return isSyncFit(this.syncInner);
  }

  // Each counts its failure in place (no closure: this is on every I/O of a node's LV).
  readSync(buf: Buffer, offsetBytes: number): void {
    this.counters.reads++;
    this.counters.readBytes += buf.length;
    try {
      this.syncInner.readSync(buf, offsetBytes);
    } catch (err) {
      this.counters.errors++;
      throw err;
    }
  }

  writeSync(buf: Buffer, offsetBytes: number): void {
    this.counters.writes++;
    this.counters.writtenBytes += buf.length;
    try {
      this.syncInner.writeSync(buf, offsetBytes);
    } catch (err) {
      this.counters.errors++;
      throw err;
    }
  }

  flushSync(): void {
    this.counters.flushes++;
    try {
      this.syncInner.flushSync();
    } catch (err) {
      this.counters.errors++;
      throw err;
    }
  }

  discardSync(offsetBytes: number, lengthBytes: number): void {
    try {
      this.syncInner.discardSync(offsetBytes, lengthBytes);
    } catch (err) {
      this.counters.errors++;
      throw err;
    }
  }

  /** The owner closes through close(): it also unregisters the node's key (DeviceProvider.release). */
  closeSync(): void {
    throw new SanboxError('EINVAL', `${this.name}: a device of a node is closed through close(), which releases its reservation`, { device: this.name });
  }
}

export interface ProviderOptions {
  nodeId: number;
  /** This incarnation's reservation key. */
  key: bigint;
  timing: Timing;
  /** SANBOX_DEVICES-style list where `VG/LV` specs find their PVs (default: SANBOX_DEVICES). */
  devices?: string[];
  /** The cluster's device list (src/volume/cluster-devices.ts), read at each open of a `VG/LV`: PVs other nodes added. */
  clusterDevices?: () => Promise<string[]>;
}

export class DeviceProvider {
  private readonly entries: Entry[] = [];
  /** Each device open() returned, to its entry (preemptAs finds a device's reservations here). */
  private readonly entryOf = new WeakMap<BlockDevice, Entry>();
  private rules: FaultRule[] = [];
  private ruleSeq = 0;
  private fencedReason: string | undefined;
  private hold: QuorumHold | undefined;
  private opening: Promise<unknown> = Promise.resolve();
  /** Where plain LV opens hold their open claim (claimPlainOpensIn). */
  private claims: { locks: () => Promise<LockService>; lockTimeoutMs: number } | undefined;
  /** The node's heartbeat leases (addLease), read by every gated write (each device's gate holds this list). */
  private readonly leases: WriteLease[] = [];

  constructor(private readonly o: ProviderOptions) {}

  /**
   * Makes every write of this node check `lease` (a heartbeat's self-fence deadline: expired once
   * no heartbeat write has succeeded for selfFenceMs, having fenced the node) against a clock read
   * right before it reaches the disk (the device's gate, after its own check: fence-gate.ts,
   * src/disk/write-lease.ts). Why in the write path and not only in the
   * heartbeat's watchdog: a process resumed after a stop (SIGSTOP, a long pause) may run a queued
   * write — a control request that arrived meanwhile, the continuation of a stalled command —
   * before its watchdog timer runs, and the survivors' fence may not have reached this device's
   * reservations (a fencer preempts on the devices it has open and those of the cluster's device
   * list, fencer.ts preemptListed; a PV named by neither keeps this node's key, and a listed one
   * keeps it until the fence gets there). Since selfFenceMs is below the dead time, a write that
   * passes this check starts before any peer can have declared the node dead (docs/containers.md,
   * "Changes through a running node").
   * Returns the lease's removal, for a heartbeat that stopped (a volume's, at umount).
   */
  addLease(lease: WriteLease): () => void {
    this.leases.push(lease);
    return () => {
      const i = this.leases.indexOf(lease);
      if (i >= 0) this.leases.splice(i, 1);
    };
  }

  /** Whether this node's heartbeat lease has run out (its self-fence happens inside the check): anyLeaseExpired. */
  leaseExpired(): boolean {
    return anyLeaseExpired(this.leases);
  }

  /**
   * Opens `spec` for this node: registers the node's key in the device's reservation state (after
   * waiting out a write of a previous incarnation still inside its gate), creates the WERO
   * reservation if none exists, and returns the device with gate, fault wrapper and counters.
   * `VG/LV` opens the LV over PVs each opened this way.
   */
  async open(spec: string, place: ReservationPlace = schemeOf(spec) !== undefined ? 'remote' : 'sidecar', use: DeviceUse = 'own'): Promise<BlockDevice> {
    if (this.fencedReason !== undefined) throw new SanboxError('EFENCED', `${spec}: node ${this.o.nodeId} has been fenced (${this.fencedReason}); it opens no device`, { device: spec });
    // An open registers this node's key in the device's reservation state: a write of the node,
    // so the heartbeat lease is checked first, as before a write (a process resumed from a stop
    // past its deadline, asked to open a device by a request that waited meanwhile, registers nothing).
    if (this.leaseExpired()) throw new SanboxError('EFENCED', `${spec}: node ${this.o.nodeId} is past its self-fence deadline (${this.fenced ?? 'no heartbeat write succeeded in time'}); it opens no device`, { device: spec });
    if (isLvSpec(spec)) {
      // A plain opener: it holds no LV lock, so a cluster layout change refuses while it is open.
      return (await this.openLvOf(spec, 'shared')).dev;
    }
    return this.oneAtATime(() => this.openDevice(spec, place, use));
  }

  /**
   * Refuses an open for `use` of the device `identity` that clashes with what this node has open
   * (called in turn with every open and close, oneAtATime, so no open slips between the check and
   * the entry): an exclusive open (pvcreate, pvremove for a client) of a device the node has open
   * at all, any client's or own open of a device opened exclusively, a client's open of a device
   * the node has open for its own use and the other way round. The node's LV opens ('lvm') are
   * not refused: they scan every listed device, and a pvcreate or pvremove never touches a PV of a
   * VG (they refuse one), which is all an LV reads and writes.
   */
  private refuseClash(name: string, identity: string, use: DeviceUse): void {
    if (use === 'lvm') return;
    const clash = this.entries.find(
      (e) => e.identity === identity && (use === 'exclusive' || e.use === 'exclusive' || (use === 'client' && e.use === 'own') || (use === 'own' && e.use === 'client')),
    );
    if (clash === undefined) return;
    const what: Record<DeviceUse, string> = {
      own: 'for its own use (its cluster image, or a volume it mounts or heartbeats on)',
      lvm: 'as a PV of its logical volumes',
      client: 'for an LVM command of a client',
      exclusive: 'exclusively for a client (pvcreate or pvremove)',
    };
    throw new SanboxError('EBUSY', `${name}: device busy: node ${this.o.nodeId} has it open ${what[clash.use]}; refused ${use === 'exclusive' ? 'an exclusive open' : `an open ${what[use]}`}`, { device: name });
  }

  /**
   * Runs device opens of this node one after the other. Each registers the node's key under the
   * device's gate lock, held across the reservation command's file I/O: concurrent opens of the
   * same PV (LVs of several VGs opened at once each scan every device) would wait on each other's
   * gate inside one process, and under load past fenceGateWaitMs, which reads as "a previous
   * incarnation is stalled inside a write". Opens are rare; serializing them costs nothing.
   */
  private oneAtATime<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.opening.then(fn, fn);
    this.opening = run.catch(() => undefined);
    return run;
  }

  private async openDevice(spec: string, place: ReservationPlace, use: DeviceUse): Promise<BlockDevice> {
    const name = place === 'remote' ? spec : path.resolve(spec);
    const target = place === 'remote' || schemeOf(spec) !== undefined ? spec : name;
    const known = identityOrUndefined(target); // undefined: no such file, the open below says so
    if (known !== undefined) this.refuseClash(name, known, use);
    let pr: PersistentReservations | null = null;
    const io: IoCounters = { reads: 0, writes: 0, readBytes: 0, writtenBytes: 0, flushes: 0, errors: 0, refused: 0 };
    let gate: SelfFencingGate;
    // An nbd:// device's request timeout is the cluster's (a ?timeout= in the URI wins).
    const nbdOpts = (uri: string): NbdOpenOptions => (!/[?&]timeout=/.test(uri) ? { ioTimeoutMs: this.o.timing.nbdIoTimeoutMs } : {});
    if (place === 'remote') {
      gate = new SelfFenceGate(this.leases);
    } else {
      const storeSpec = place === 'sidecar' ? sidecarStoreSpec(name) : place.spec;
      // State kept over NBD (a cluster image served by nbd://): PR commands go through the export,
      // so a fence is recorded where every node reads it; the refusing is the target's (below).
      const remoteState = schemeOf(storeSpec.statePath) !== undefined;
      const storeDev = remoteState ? await openDevice(storeSpec.statePath, { guard: 'none', ...nbdOpts(storeSpec.statePath) }) : undefined;
      pr = new PersistentReservations(storeSpec, storeDev !== undefined ? () => storeDev : undefined, this.o.timing.reservationLockWaitMs);
      // The gate checks the state synchronously inside each write: possible on a local file only.
      // Over NBD the gate enforces the node's own self-fence, and the target cuts a fenced node off.
      gate = isSyncDevice(pr.store.device) ? new FenceGate(pr.store, this.o.nodeId, this.o.key, this.o.timing.ioTimeoutMs, this.leases) : new SelfFenceGate(this.leases);
    }
    let inner: BlockDevice | undefined;
    let identity: string;
    try {
      if (pr !== null) {
        if (!(await pr.register(this.o.nodeId, this.o.key, this.o.timing.fenceGateWaitMs))) {
          throw new SanboxError('EBUSY', `${name}: a previous incarnation of node ${this.o.nodeId} is stalled inside a write (it holds its fence gate); fence it first`, { device: name });
        }
        await pr.reserve(this.o.nodeId, this.o.key, PR_TYPES.writeExclusiveRegistrantsOnly);
      }
      // The FenceGate relies on its check and the pwrite running in one synchronous call, which a
      // local file's device (FileDisk) does; an nbd:// device's writes span turns between the gate's
      // enter and leave (fence-gate.ts). Decided by the device that calls the gate, not by wrappers
      // above it (a crash point's has no synchronous form, yet the FileDisk under it gates each write).
      if (gate instanceof FenceGate && schemeOf(target) !== undefined) {
        throw new SanboxError('EINVAL', `${name}: its reservation state is a local file but its data goes over ${target}, whose writes are not synchronous: the fence gate cannot guard it`, { device: name });
      }
      identity = deviceIdentity(target);
      inner = await openDevice(target, { guard: 'shared', gate, ...(schemeOf(target) !== undefined ? nbdOpts(target) : {}) });
    } catch (err) {
      if (pr !== null) {
        await pr.unregister(this.o.nodeId, this.o.key).catch(() => undefined);
        pr.close();
      }
      gate.close();
      throw err;
    }
    // A local file (no crash point wrapped around it) has the synchronous form; an nbd:// export does not.
    const syncData = isSyncDevice(inner) && place !== 'remote' && schemeOf(spec) === undefined;
    const faults = new FaultDevice(inner);
    this.install(faults);
    const entry: Entry = { name: inner.name, use, identity, gate, pr, place: !(gate instanceof FenceGate) ? 'target' : place === 'sidecar' ? 'sidecar' : 'on-disk', faults, io };
    this.entries.push(entry);
    if (this.fencedReason !== undefined) gate.selfFence(this.fencedReason);
    const release = (): Promise<void> => this.release(entry);
    const dev = syncData ? new SyncCountedDevice(faults, io, release) : new CountedDevice(faults, io, release);
    this.entryOf.set(dev, entry);
    return dev;
  }

  /**
   * PREEMPT AND ABORT of another node's key on `dev` (a device open() returned), issued as this
   * node with its own key (a container takeover made through this node, src/node/failover.ts), so
   * it is under this node's fence as its writes are: refused (EFENCED) once this node has fenced
   * itself or is past its self-fence deadline (the heartbeat lease, checked here as a write checks
   * it), and by the reservation state itself once this node's key is gone from the device (a
   * preempting initiator must be registered; checked under the state's lock, so a fencer's preempt
   * of this node and this preempt are ordered: this one lands before that fence or not at all).
   * Null: the victim held its gate longer than fenceGateWaitMs (stalled inside a write).
   */
  async preemptAs(dev: BlockDevice, victimNode: number, victimKey: bigint): Promise<PreemptResult | null> {
    const e = this.entryWithReservations(dev);
    const fenced = this.fenced;
    if (fenced !== undefined) throw new DiskError('EFENCED', `${e.name}: preempt of node ${victimNode}'s key refused: node ${this.o.nodeId} has been fenced (${fenced})`, { device: e.name });
    if (this.leaseExpired()) {
      throw new DiskError('EFENCED', `${e.name}: preempt of node ${victimNode}'s key refused: ${this.fenced ?? `node ${this.o.nodeId} is past its self-fence deadline`}`, { device: e.name });
    }
    return e.pr!.preemptAndAbort(this.o.nodeId, this.o.key, victimNode, victimKey, this.o.timing.fenceGateWaitMs);
  }

  /**
   * Whether the reservation state of this node's device `deviceName` (the cluster image, whatever
   * wraps it) records `key` of node `nodeId` as preempted: that incarnation is fenced.
   */
  async recordedFenced(deviceName: string, nodeId: number, key: bigint): Promise<boolean> {
    const e = this.entries.find((x) => x.name === deviceName && x.pr !== null);
    if (e === undefined) throw new SanboxError('EINVAL', `${deviceName}: not a device node ${this.o.nodeId} has open with a reservation state here`, { device: deviceName });
    return (await e.pr!.store.readAsync()).preempted[nodeId] === key;
  }

  private entryWithReservations(dev: BlockDevice): Entry {
    const e = this.entryOf.get(dev);
    if (e === undefined || e.pr === null || !this.entries.includes(e)) {
      throw new SanboxError('EINVAL', `${dev.name}: not a device node ${this.o.nodeId} has open with a reservation state here`, { device: dev.name });
    }
    return e;
  }

  /**
   * Opens VG/LV over PVs from the node's device list, every one of them through open() (gated);
   * refused (nothing opened) when the VG's container does not let this node use it: a private
   * container of another node, a deported one.
   * This is the opening of a LockedLv (src/volume/locked-lv.ts): the caller holds the LV's cluster
   * lock while the device is open, so it registers in the LV's in-use guard as lock-holding and a
   * cluster layout change locks it out through that lock (vg-lock.ts LvGuardMode). Any other use
   * opens through open() or openVolume(), as a plain opener.
   */
  async openLv(vg: string, lv: string): Promise<LvDevice> {
    return (await this.openLvOf(`${vg}/${lv}`, 'locked')).dev;
  }

  private async openLvOf(spec: string, guard: 'shared' | 'locked'): Promise<{ dev: LvDevice; use: ContainerUse }> {
    const [vg, lv] = spec.split('/') as [string, string];
    if (this.fencedReason !== undefined) throw new SanboxError('EFENCED', `${spec}: node ${this.o.nodeId} has been fenced (${this.fencedReason}); it opens no device`, { device: spec });
    const openIt = async (): Promise<{ dev: LvDevice; use: ContainerUse }> => {
      const pvs = await this.lvmDevices();
      if (pvs.length === 0) throw new SanboxError('ENOENT', `${spec}: no devices to find volume group ${vg} on; set SANBOX_DEVICES (or pass the device list)`, { device: spec });
      const use = await readContainerUse(pvs, vg);
      assertNodeMayUse(use, this.o.nodeId);
      // Every PV (and every other device scanned for the VG) comes through open().
      return { dev: await openLv(pvs, vg, lv, { guard, open: (pv) => this.open(pv, undefined, 'lvm') }), use };
    };
    // A plain opener of a node: its layout read under the VG lock PR, and its open claim held in
    // the cluster's lockspace until it closes, so a layout change on any host refuses while it is
    // open (src/volume/open-claim.ts). A lock-holding opener (LockedLv) reads under the VG lock itself.
    const claims = this.claims;
    if (guard === 'locked' || claims === undefined) return openIt();
    let use: ContainerUse | undefined;
    const dev = await openClaimed(await claims.locks(), vg, claims.lockTimeoutMs, async () => {
      const opened = await openIt();
      use = opened.use;
      return opened.dev;
    });
    return { dev, use: use! };
  }

  /**
   * From now on every plain open of `VG/LV` (open, openVolume) holds the LV's open claim in
   * `locks` (the node's lockspace) while it is open: set once at the join, before the node opens
   * any LV. A provider without it (no cluster) has only the host's flock.
   */
  claimPlainOpensIn(locks: () => Promise<LockService>, lockTimeoutMs: number): void {
    if (this.claims !== undefined) throw new SanboxError('EINVAL', `node ${this.o.nodeId}: its plain LV opens are claimed in a lockspace already`);
    this.claims = { locks, lockTimeoutMs };
  }

  /**
   * Holds I/O of the devices wrapped by held() while `source` (the node's membership) has no
   * quorum, for at most timing.quorumHoldMs (src/disk/quorum-hold.ts). Set once, at the join.
   */
  holdWithoutQuorum(source: QuorumSource, log?: (msg: string) => void): void {
    if (this.hold !== undefined) throw new SanboxError('EINVAL', `node ${this.o.nodeId}: its I/O already follows a quorum`);
    this.hold = new QuorumHold(source, { nodeId: this.o.nodeId, holdMs: this.o.timing.quorumHoldMs, ...(log !== undefined ? { log } : {}) });
  }

  /** `dev` with its I/O held while this node has no quorum (as is, when no quorum is followed). */
  held(dev: BlockDevice): BlockDevice {
    return this.hold === undefined ? dev : new QuorumHeldDevice(dev, this.hold);
  }

  /**
   * The view of an open volume for data I/O (a mount's, an LV's users'): held while the node has
   * no quorum when it is `VG/LV` of a shared or private container or an ocfs2 volume on an image
   * or nbd:// export (a cluster file system); a local container's LV is not held. Its heartbeat
   * keeps using `dev` itself: a node must go on heartbeating for quorum to come back.
   */
  async ioView(spec: string, dev: BlockDevice): Promise<BlockDevice> {
    if (!isLvSpec(spec)) return this.held(dev);
    const [vg] = spec.split('/') as [string, string];
    return (await this.quorumHoldFor(vg)) !== undefined ? this.held(dev) : dev;
  }

  /** The hold for I/O to LVs of VG `vg`: the node's quorum hold for a shared or private container, else none. */
  async quorumHoldFor(vg: string): Promise<QuorumHold | undefined> {
    if (this.hold === undefined) return undefined;
    return heldWithoutQuorum(await readContainerUse(await this.lvmDevices(), vg)) ? this.hold : undefined;
  }

  /** `VG/LV` (or any device) opened for data I/O: open() and then ioView(). */
  async openVolume(spec: string): Promise<BlockDevice> {
    if (!isLvSpec(spec)) return this.held(await this.open(spec));
    const { dev, use } = await this.openLvOf(spec, 'shared');
    return heldWithoutQuorum(use) ? this.held(dev) : dev;
  }

  /** Whether this node's cluster I/O is held now, since when, and how much. */
  holdStatus(): QuorumHoldStatus | null {
    return this.hold?.status() ?? null;
  }

  /** Where this node looks for PVs: its own list (--devices, else SANBOX_DEVICES), then the cluster's device list. */
  async lvmDevices(extra: string[] = []): Promise<string[]> {
    return mergeSpecs(mergeSpecs(this.ownDevices(), extra), (await this.o.clusterDevices?.()) ?? []);
  }

  /** The node's own device list (--devices, else SANBOX_DEVICES): its operator's, which no client can change. */
  ownDevices(): string[] {
    return deviceList([], this.o.devices);
  }

  /** Unregisters this node's key from a device it closes (a clean leave of that device). */
  private async release(e: Entry): Promise<void> {
    const i = this.entries.indexOf(e);
    if (i < 0) return;
    this.entries.splice(i, 1);
    // In turn with the opens: an open of the same device registering meanwhile must be seen below.
    await this.oneAtATime(async () => {
      // A fenced node leaves its key as it is: a preempted key stays preempted. A device opened
      // more than once (a PV scanned for each of several LVs, one file named through two paths)
      // keeps the key while one is open: counted by file identity, not by the name it was opened as.
      const stillOpen = this.entries.some((o) => o.identity === e.identity);
      if (e.pr !== null && this.fencedReason === undefined && !stillOpen) await e.pr.unregister(this.o.nodeId, this.o.key).catch(() => undefined);
      e.pr?.close();
      e.gate.close();
    });
  }

  /** Every device's reservations (the cluster image's first): a fencer preempts on all of them. */
  get reservations(): PersistentReservations[] {
    return this.entries.flatMap((e) => (e.pr !== null ? [e.pr] : []));
  }

  /** A gate for the heartbeat: self-fencing it stops every device of this node. */
  readonly gate: SelfFencingGate = new ProviderGate(this);

  /**
   * Stops every write of this node on every device, for good. Each gate's self-fence also fails
   * the writes an nbd:// device still holds queued (WriteGate.onSelfFence), so none leaves later.
   */
  selfFence(reason: string): void {
    this.fencedReason ??= reason;
    for (const e of this.entries) e.gate.selfFence(reason);
  }

  get fenced(): string | undefined {
    return this.fencedReason ?? this.entries.find((e) => e.gate.fencedReason !== undefined)?.gate.fencedReason;
  }

  status(): DeviceStatus[] {
    return this.entries.map((e) => {
      const reason = e.gate.fencedReason ?? null;
      const refused = (e.gate as { refusedWrites?: number }).refusedWrites ?? 0;
      return { name: e.name, gate: reason === null ? 'open' : 'fenced', fencedReason: reason, reservations: e.place, io: { ...e.io, refused } };
    });
  }

  // ---- fault rules (the control channel's `fault set|clear|ls`) ----

  private install(f: FaultDevice): void {
    for (const r of this.rules) f.inject({ ...r });
  }

  private reinstall(): void {
    for (const e of this.entries) {
      e.faults.clear();
      this.install(e.faults);
    }
  }

  /** Adds a rule to every device of this node (its `device` filter narrows that); returns its id. */
  setFault(rule: FaultRule): string {
    if (this.rules.length >= FAULT_RULES_MAX) throw new SanboxError('EINVAL', `node ${this.o.nodeId} has ${FAULT_RULES_MAX} fault rules already; clear some first`);
    const id = rule.id ?? `rule${++this.ruleSeq}`;
    if (this.rules.some((r) => r.id === id)) throw new SanboxError('EINVAL', `node ${this.o.nodeId}: a fault rule named '${id}' exists already`);
    const withId = { ...rule, id };
    // Validates the rule before it is kept (FaultDevice.inject throws on a bad one).
    new FaultDevice(SCRATCH_DEVICE).inject({ ...withId });
    this.rules.push(withId);
    this.reinstall();
    return id;
  }

  /** Removes one rule (releasing what it stalls) or, without an id, all; returns how many went. */
  clearFault(id?: string): number {
    const before = this.rules.length;
    if (id !== undefined && !this.rules.some((r) => r.id === id)) throw new SanboxError('EINVAL', `node ${this.o.nodeId}: no fault rule named '${id}'`);
    this.rules = id === undefined ? [] : this.rules.filter((r) => r.id !== id);
    this.reinstall();
    return before - this.rules.length;
  }

  faults(): FaultRuleStatus[] {
    const names = this.entries.map((e) => e.name);
    return this.rules.map((r, i) => ({
      ...r,
      devices: names.filter((n) => r.device === undefined || n.includes(r.device)),
      shadowedBy: shadowingRule(this.rules, i)?.id ?? null,
    }));
  }

  /** Closes every device still open (the owners close theirs first; this is the backstop). */
  async close(): Promise<void> {
    this.hold?.close();
    for (const e of [...this.entries].reverse()) await this.release(e);
  }
}

/** A device that is never read or written: FaultDevice.inject on it only validates a rule. */
const SCRATCH_DEVICE: BlockDevice = {
  name: 'rule-check',
  sizeBytes: Number.MAX_SAFE_INTEGER,
  sectorSizeBytes: 512,
  readOnly: true,
  read: () => Promise.reject(new SanboxError('EINVAL', 'rule-check device')),
  write: () => Promise.reject(new SanboxError('EINVAL', 'rule-check device')),
  flush: () => Promise.resolve(),
  discard: () => Promise.resolve(),
  close: () => Promise.resolve(),
};

/** The provider as one gate (for the heartbeat): writes are gated per device, self-fencing stops all. */
class ProviderGate implements SelfFencingGate {
  constructor(private readonly p: DeviceProvider) {}
  enter(): void {}
  check(): void {}
  leave(): void {}
  selfFence(reason: string): void {
    this.p.selfFence(reason);
  }
  get fencedReason(): string | undefined {
    return this.p.fenced;
  }
  close(): void {}
}
