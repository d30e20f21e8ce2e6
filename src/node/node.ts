// One node joining a sanbox cluster: the library entry point that `sanbox node` (and any process
// that must heartbeat while it works, e.g. `sanbox lock`) uses.
//
//   const node = await startNode({ clusterImage: 'c.img', nodeId: 1 });
//   node.membership.subscribe((ev) => ...);   // up / down / fenced
//   const ls = await node.lockspace();            // on the cluster image, through the fence gate
//   await node.stop();                          // clean leave: generation 0, key unregistered
//
// Parts, one job each: the slot lock (one process per node number here), the device provider
// (every device with its gate, src/node/provider.ts), the membership service fed by every
// heartbeat region, the lockspace, and the control server (src/node/commands.ts registers its
// commands).
//
// Join sequence: take the local slot lock (one process per node number on this machine), open the
// image with this node's fence gate, refuse the slot if another live writer's seq moves in it,
// register this incarnation's reservation key (and create the WERO reservation if none exists),
// write the node record (pid + start time + boot id, for the power fence), then heartbeat.

import { hex64 } from '../format/where.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BlockDevice } from '../disk/device.js';
import type { SelfFencingGate } from '../disk/fence-gate.js';
import { schemeOf } from '../disk/open.js';
import { isLvSpec } from '../volume/resolve.js';
import { slotLockPath } from './slot-lock.js';
import { volumeKey } from './volume-key.js';
import { clusterDeviceSpecs } from '../volume/lvm-cluster.js';
import { readClusterDevices } from '../volume/cluster-devices.js';
import { describeClientEnd, killClients, selfIdentity } from '../disk/power-fence.js';
import { LockFile, nodeKey, ReservationStore } from '../disk/reservations.js';
import { modeName } from '../dlm/compat-matrix.js';
import { Lockspace } from '../dlm/lock-manager.js';
import { heartbeatRegion } from '../fs/heartbeat-region.js';
import { SanboxError } from '../errors.js';
import type { NodeClient, NodeRecord } from '../format/node-record.js';
import { clusterHeartbeatRegion, clusterSlotTables, clusterTag, openRegion, readClusterImage, readNodeRecords, reservationSpec, writeNodeRecord, type ClusterImageInfo } from '../heartbeat/cluster-image.js';
import { Fencer, type FencePolicy } from '../heartbeat/fencer.js';
import { Heartbeat, newGeneration, probeSlot, type HeartbeatRegion, slotTableOf } from '../heartbeat/heartbeat.js';
import { MembershipService } from '../heartbeat/membership.js';
import type { MembershipEvent } from '../heartbeat/membership-api.js';
import type { Timing } from '../timing.js';
import { registerNodeCommands } from './commands.js';
import { ControlServer } from './control.js';
import { ownSlotsOnly } from '../disk/own-slots.js';
import { DeviceProvider, type DeviceStatus } from './provider.js';
import type { QuorumHoldStatus } from '../disk/quorum-hold.js';

export interface StartNodeOptions {
  clusterImage: string;
  nodeId: number;
  /** Node name shown by `cluster status` (default: the name in the config, or node<N>). */
  name?: string;
  /** Default: the timing recorded in the cluster image. */
  timing?: Timing;
  /** Fence agents used on dead peers (default 'both': power fence, then preempt; 'disk' escalates to power only when needed). */
  fencePolicy?: FencePolicy;
  /** Listen on RUNDIR/node-N.sock (default true). */
  control?: boolean;
  log?: (msg: string) => void;
  /**
   * ocfs2 volumes (made by mkfs.ocfs2 or sanbox) whose heartbeat system file this node also
   * writes, o2hb-compatibly; they feed the same membership. Each gets its own fence gate over a
   * sidecar reservation state (VOL.fence/reservations).
   */
  volumes?: string[];
  /** Later layers' control commands (mount, lv changes), registered beside the node's own. */
  commands?: ((control: ControlServer, node: RunningNode) => void)[];
  /** Where `VG/LV` volumes find their PVs (default: SANBOX_DEVICES). */
  devices?: string[];
  /** Called once if this node fences itself (its I/O is already stopped). */
  onSelfFence?: (reason: string) => void;
  /**
   * Hears every membership event from the start of the node's heartbeat: peers seen up while the
   * join still opens its `VG/LV` homes are reported too (subscribing after startNode misses them).
   */
  onMembershipEvent?: (ev: MembershipEvent) => void;
}

export interface RunningNode {
  readonly nodeId: number;
  readonly generation: bigint;
  readonly key: bigint;
  readonly info: ClusterImageInfo;
  readonly membership: MembershipService;
  /** The node's log (its JSON lines with --json). */
  readonly log: (msg: string) => void;
  /** The cluster image opened with this node's fence gate: every write through it can be fenced. */
  readonly device: BlockDevice;
  /** The cluster image's heartbeat (first) and one per volume. */
  readonly heartbeat: Heartbeat;
  readonly heartbeats: Heartbeat[];
  /** The cluster image's gate: a FenceGate on a local image, a SelfFenceGate over nbd://. */
  readonly gate: SelfFencingGate;
  readonly control: ControlServer | undefined;
  /** Every device this node writes comes from here (fence gates, fault rules, I/O counters). */
  readonly provider: DeviceProvider;
  /** Records the process group of a command this node runs (0: none) in its node record, for the fencer. */
  recordCommandGroup(pgid: number, startTicks: bigint): Promise<void>;
  /**
   * Records the processes acting as this node through its control channel (src/node/clients.ts)
   * in its node record, for the fencers: they are killed with the node. The node's own list (the one
   * it kills when it finds itself fenced) changes only once that write has landed.
   */
  recordClients(clients: NodeClient[]): Promise<void>;
  /** The lockspace on the cluster image, opened on first use (ctl lock, sanbox lock). */
  lockspace(): Promise<Lockspace>;
  status(): NodeStatus;
  /**
   * An ocfs2 volume's device (file, nbd:// or VG/LV), opened through the provider once per volume
   * and shared by its heartbeat and its mount (a second open would register, and at close
   * unregister, this node's key under the first). This is the view for data I/O: held while the
   * node has no quorum (provider.ioView); the volume's heartbeat writes the device under it.
   */
  volumeDevice(spec: string): Promise<BlockDevice>;
  /**
   * Makes `dev` volume `spec`'s device from now on (an activated LV: src/node/activation.ts serves
   * its LockedLv, so the mount and every other user of the volume do their I/O under the LV lock
   * and follow layout changes). Its data view is provider.ioView over it; leaveVolumeRegion closes
   * it. Refused when the node has the volume open already.
   */
  serveVolume(spec: string, dev: BlockDevice): void;
  /** Starts heartbeating in the volume's heartbeat region (nothing if it does already). */
  joinVolumeRegion(spec: string): Promise<void>;
  /**
   * Clean leave of the volume's region and close of its device; a volume named in `volumes` (the
   * node was told to heartbeat there for its whole life) stays.
   */
  leaveVolumeRegion(spec: string): Promise<void>;
  /** Volumes mounted in this node, by volume (the mount layer keeps it; status shows it). */
  readonly mounts: Map<string, MountStatus>;
  /** LVs activated in this node, by VG/LV (the activation layer, src/node/activation.ts, keeps it; status shows it). */
  readonly activations: Map<string, ActivationStatus>;
  /** Runs `fn` at a clean stop before the lockspace closes (a mount's umount); not on a fenced node. */
  beforeStop(fn: () => Promise<void>): void;
  /** Clean leave. Idempotent. */
  stop(): Promise<void>;
}

/** One volume mounted in a node: which slot it holds. */
export interface MountStatus {
  volume: string;
  uuid: string;
  slot: number;
  /** The own journal was dirty at mount and was replayed. */
  replayed: boolean;
  mountedAt: string;
}

/** One LV activated in a node: its LV lock held persistently (lvm2.md §7.2), its device open through the provider. */
export interface ActivationStatus {
  /** VG/LV. */
  lv: string;
  lvUuid: string;
  /** 'ex' (-aey), 'sh' (-asy), or 'local' (a local VG: no cluster lock). */
  mode: 'ex' | 'sh' | 'local';
  /** The LV lock's resource, when one is held. */
  lock: string | null;
  activatedAt: string;
  /** The VG seqno of the layout the node does I/O through (it follows every layout change); null for a local VG. */
  seqno: number | null;
  /** Layout changes of other nodes this activation let go for (drained, re-read, resumed). */
  lockouts: number;
  /** Why I/O through it fails for good (the LV was removed by another node), else null. */
  failed: string | null;
}

/** What `ctl status` answers: membership as this node sees it, devices, locks, I/O. */
export interface NodeStatus {
  cluster: string;
  nodeId: number;
  name: string;
  pid: number;
  generation: string;
  key: string;
  /** 'up' while it runs; 'fenced' once it fenced itself (or was fenced), 'left' after a clean leave. */
  state: 'up' | 'fenced' | 'left';
  fenced: string | null;
  quorum: boolean;
  members: { nodeId: number; state: string; generation: string }[];
  heartbeat: Heartbeat['stats'];
  regions: string[];
  maxGaps: ReturnType<MembershipService['maxGaps']>;
  devices: DeviceStatus[];
  locks: { resource: string; lockId: number; mode: string | null; state: 'granted' | 'waiting'; lost: string | null }[];
  mounts: MountStatus[];
  /** Data I/O held for quorum (src/disk/quorum-hold.ts); null in a node that follows no quorum. */
  ioHold: QuorumHoldStatus | null;
  activations: ActivationStatus[];
}

/** Takes this machine's lock on a node number: one process per node number here. */
function takeSlotLock(lockDir: string, img: string, n: number): LockFile {
  fs.mkdirSync(lockDir, { recursive: true });
  const slotLock = new LockFile(slotLockPath(lockDir, n));
  if (!slotLock.tryLock('ex')) {
    slotLock.close();
    throw new SanboxError('EBUSY', `${img}: node ${n} is already running on this machine (its slot lock ${slotLock.path} is held): refusing to join as node ${n}`, { device: img });
  }
  return slotLock;
}

/**
 * A fresh generation whose key is not the one recorded as preempted: the key carries only 32 bits
 * of the generation, and a reused preempted key would have this incarnation refused as fenced.
 */
function freshGeneration(info: ClusterImageInfo, n: number, remote: boolean): bigint {
  const preemptedKey = remote ? undefined : (() => {
    const store = new ReservationStore(reservationSpec(info), true);
    try {
      return store.read().preempted[n];
    } finally {
      store.close();
    }
  })();
  const tag = clusterTag(info);
  let generation = newGeneration();
  while (nodeKey(tag, n, generation) === preemptedKey) generation = newGeneration();
  return generation;
}

/** The heartbeat region of an ocfs2 volume (its heartbeat system file), o2hb-compatible. */
async function volumeHeartbeatRegion(spec: string, dev: BlockDevice, nodeCount: number): Promise<HeartbeatRegion> {
  const where = await heartbeatRegion(dev);
  return {
    name: `${spec}:heartbeat`,
    device: dev,
    offsetBytes: where.offsetBytes,
    blockBytes: where.blockSizeBytes,
    slotCount: Math.min(where.blockCount, nodeCount),
  };
}

/** A volume's heartbeat region whose writes are checked: node n touches only its own slot there. */
async function ownVolumeRegion(spec: string, dev: BlockDevice, nodeCount: number, n: number): Promise<HeartbeatRegion> {
  const found = await volumeHeartbeatRegion(spec, dev, nodeCount);
  return { ...found, device: ownSlotsOnly(found.device, n, [slotTableOf(found)]) };
}

/**
 * The devices a node writes its heartbeat to from its start, each through the provider: the
 * cluster image (its reservation state is its own region; over nbd:// the target fences) and each
 * volume home on a file or an nbd:// export, with its ocfs2 heartbeat file (a `VG/LV` home is
 * opened later, once the lockspace is up: openLvHomes). Each slot is probed for another live
 * writer before the node writes there.
 */
async function openHomes(
  provider: DeviceProvider,
  info: ClusterImageInfo,
  volumes: string[],
  n: number,
  timing: Timing,
  cleanups: (() => Promise<void> | void)[],
): Promise<{ device: BlockDevice; regions: HeartbeatRegion[]; volumeDevices: BlockDevice[] }> {
  // Every write through these devices is checked: this node touches only its own heartbeat slots and node record.
  const device = ownSlotsOnly(await provider.open(info.path, { spec: reservationSpec(info) }), n, clusterSlotTables(info));
  cleanups.push(() => device.close());
  const regions = [clusterHeartbeatRegion(info, device)];
  await probeSlot(regions[0]!, n, timing);
  const volumeDevices: BlockDevice[] = [];
  for (const vol of volumes) {
    const vdev = await provider.open(vol);
    cleanups.push(() => vdev.close());
    const vregion = await ownVolumeRegion(vol, vdev, info.config.nodeCount, n);
    await probeSlot(vregion, n, timing);
    regions.push(vregion);
    volumeDevices.push(vdev);
  }
  return { device, regions, volumeDevices };
}

/**
 * The node's `VG/LV` volume homes (`--volume VG/LV`), opened once the cluster heartbeat runs and
 * the provider claims plain LV opens in the lockspace: the LV's layout is read under the VG lock
 * PR and its open claim held for the node's life (src/volume/open-claim.ts), so a layout change
 * on any host refuses while the node heartbeats there. Then, as joinVolumeRegion does for a
 * mount, the slot is probed and the volume's heartbeat started.
 */
async function openLvHomes(
  volumes: string[],
  o: {
    provider: DeviceProvider;
    nodeCount: number;
    n: number;
    timing: Timing;
    addHeartbeat: (region: HeartbeatRegion) => Heartbeat;
    cleanups: (() => Promise<void> | void)[];
  },
): Promise<Map<string, { device: Promise<BlockDevice>; io: undefined; heartbeat: Heartbeat; pinned: true }>> {
  const out = new Map<string, { device: Promise<BlockDevice>; io: undefined; heartbeat: Heartbeat; pinned: true }>();
  for (const vol of volumes) {
    const vdev = await o.provider.open(vol);
    o.cleanups.push(() => vdev.close());
    const region = await ownVolumeRegion(vol, vdev, o.nodeCount, o.n);
    await probeSlot(region, o.n, o.timing);
    const heartbeat = o.addHeartbeat(region);
    // A join that fails later stops this heartbeat before its device closes.
    o.cleanups.push(() => heartbeat.stop(false));
    await heartbeat.start();
    out.set(volumeKey(vol), { device: Promise.resolve(vdev), io: undefined, heartbeat, pinned: true });
  }
  return out;
}

/** This incarnation's node record: how a fencer finds and kills exactly this process. */
function nodeRecordFor(n: number, generation: bigint, key: bigint, name: string): NodeRecord {
  const me = selfIdentity();
  return {
    nodeId: n,
    generation,
    pid: me.pid,
    pidStartTicks: me.startTicks,
    bootId: me.bootId,
    joinedAtMs: Date.now(),
    prKey: key,
    name,
    hostname: os.hostname().slice(0, 64),
  };
}

/**
 * One heartbeat per region, all feeding the one membership service. A self-fence on any region
 * stops all of this node's I/O, on every device (the provider's gate), and is reported once.
 */
function makeHeartbeats(
  regions: HeartbeatRegion[],
  o: { nodeId: number; generation: bigint; timing: Timing; membership: MembershipService; provider: DeviceProvider; log: (msg: string) => void },
  onSelfFenced: ((reason: string) => void) | undefined,
): { heartbeats: Heartbeat[]; add: (region: HeartbeatRegion) => Heartbeat; remove: (h: Heartbeat) => void } {
  const heartbeats: Heartbeat[] = [];
  const leaseRemovers = new Map<Heartbeat, () => void>();
  let reported = false;
  const onSelfFence = (reason: string): void => {
    for (const h of heartbeats) h.selfFence(reason);
    o.provider.selfFence(reason);
    if (!reported) {
      reported = true;
      onSelfFenced?.(reason);
    }
  };
  const add = (region: HeartbeatRegion): Heartbeat => {
    const h = new Heartbeat({ region, nodeId: o.nodeId, generation: o.generation, timing: o.timing, membership: o.membership, gate: o.provider.gate, log: o.log, onSelfFence });
    heartbeats.push(h);
    // Every write of this node checks this heartbeat's self-fence deadline first (provider.ts addLease).
    leaseRemovers.set(h, o.provider.addLease(h));
    return h;
  };
  // A stopped heartbeat (a volume's, at umount) no longer vouches for writes: its lease goes with it,
  // so the per-write check does not grow with every mount a node has ever made.
  const remove = (h: Heartbeat): void => {
    const i = heartbeats.indexOf(h);
    if (i >= 0) heartbeats.splice(i, 1);
    leaseRemovers.get(h)?.();
    leaseRemovers.delete(h);
  };
  for (const region of regions) add(region);
  return { heartbeats, add, remove };
}

function lockStatus(ls: Lockspace | undefined): NodeStatus['locks'] {
  return (ls?.heldLocks() ?? []).map((l) => ({
    resource: l.name,
    lockId: l.lockId,
    mode: l.mode === null ? null : modeName(l.mode),
    state: l.mode === null ? 'waiting' : 'granted',
    lost: l.lost ?? null,
  }));
}

export async function startNode(opts: StartNodeOptions): Promise<RunningNode> {
  // A cluster image named by URI (nbd://…) is a remote disk: there is no local reservation state
  // and no lock directory beside it, so the disk fence is the target's job (cut the victim's
  // connection) and this node only enforces its own self-fence on that device.
  const remote = schemeOf(opts.clusterImage) !== undefined;
  const img = remote ? opts.clusterImage : path.resolve(opts.clusterImage);
  const info = await readClusterImage(img);
  const timing = opts.timing ?? info.timing;
  const n = opts.nodeId;
  if (!Number.isInteger(n) || n < 0 || n >= info.config.nodeCount) {
    throw new SanboxError('EINVAL', `${img}: node ${opts.nodeId} is not a node of cluster '${info.config.clusterName}' (nodes 0..${info.config.nodeCount - 1})`, { device: img });
  }
  const log = opts.log ?? (() => {});
  const cleanups: (() => Promise<void> | void)[] = [];
  const undo = async (): Promise<void> => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        // best effort while unwinding a failed join
      }
    }
    cleanups.length = 0;
  };

  try {
    // Over a network disk the heartbeat probe below is what catches a duplicate on another machine.
    const slotLock = takeSlotLock(reservationSpec(info).lockDir, img, n);
    cleanups.push(() => slotLock.close());

    const tag = clusterTag(info);
    const generation = freshGeneration(info, n, remote);
    const key = nodeKey(tag, n, generation);
    // The cluster's device list is read through the node's own (fenced) handle on the image, once it is open.
    let imageDevice: BlockDevice | undefined;
    const clusterDevices = async (): Promise<string[]> => (imageDevice === undefined ? [] : clusterDeviceSpecs({ image: imageDevice }));
    const provider = new DeviceProvider({ nodeId: n, key, timing, devices: opts.devices, clusterDevices });
    cleanups.push(() => provider.close());

    // `VG/LV` homes are opened once the cluster heartbeat and the lockspace are up (openLvHomes below).
    const fileVolumes = (opts.volumes ?? []).filter((v) => !isLvSpec(v));
    const lvVolumes = (opts.volumes ?? []).filter((v) => isLvSpec(v));
    const { device, regions, volumeDevices } = await openHomes(provider, info, fileVolumes, n, timing, cleanups);
    imageDevice = device;
    const name = opts.name ?? (info.config.nodeNames[n] || `node${n}`);
    const record = nodeRecordFor(n, generation, key, name);
    await writeNodeRecord(device, info, record, n);
    // Later changes of the record (a command group, the clients) are written one after the other:
    // each write encodes the record as it is when it starts, so the last one to land is the newest.
    // The clients change the record only once their write has landed (review 7, L2): record.clients
    // is what the disk names, the list this node kills when it finds itself fenced, so a client
    // whose registration was refused (that write failed: the node is fenced) is never killed by it.
    let recordWrites: Promise<unknown> = Promise.resolve();
    const rewriteRecord = (clients?: NodeClient[]): Promise<void> => {
      const run = recordWrites.then(async () => {
        await writeNodeRecord(device, info, clients === undefined ? record : { ...record, clients }, n);
        if (clients !== undefined) record.clients = clients;
      });
      recordWrites = run.catch(() => undefined);
      return run;
    };

    const fencer = new Fencer({
      selfNodeId: n,
      selfKey: key,
      clusterTag: tag,
      // Read at each fence: every device the provider has open then, including any opened after the join.
      get reservations() {
        return provider.reservations;
      },
      // Every listed device, present or not (the fencer logs a missing one): read at each fence.
      clusterDevices: async () => ((await readClusterDevices(device)) ?? []).map((e) => e.device),
      readNodeRecord: async (id) => (await readNodeRecords(device, info))[id] ?? null,
      timing,
      // Over nbd:// no gate of ours refuses a victim's writes (the target does, by cutting it off),
      // so a preempt alone would report fenced a node that can still write: only the power fence
      // (same machine) is ours, and it is recorded in the image's reservations for every reader.
      // A remote victim stays unfenced (never reported fenced) until the target cuts it off.
      policy: remote && (opts.volumes ?? []).length === 0 ? 'power' : (opts.fencePolicy ?? 'both'),
      log,
      selfFencedReason: () => membership.selfFencedReason,
      // Checks the clock: a heartbeat past its deadline fences the node here (which sets the flag above).
      leaseExpired: () => provider.leaseExpired(),
    });
    const membership = new MembershipService({ localNodeId: n, localGeneration: generation, nodeCount: info.config.nodeCount, timing, fencer, log });
    if (opts.onMembershipEvent !== undefined) membership.subscribe(opts.onMembershipEvent);
    // Without quorum, data I/O to cluster volumes waits (src/disk/quorum-hold.ts); heartbeat and lockspace I/O do not.
    provider.holdWithoutQuorum(membership, log);
    // A node that finds itself fenced (every way it does ends in its heartbeat's self-fence: a write
    // refused by its gate, its key preempted, its lease run out, its slot taken) ends its own
    // clients (src/node/clients.ts): a fencer on another machine cannot, and under the disk fence
    // one on this machine may not have yet — whichever comes first; the other finds them gone.
    // Safe: the node's I/O is stopped already, and every write of a client is the node's.
    // All are signalled in one pass and awaited against one deadline (review 7, M1): stop() waits
    // for that (so the log says how each ended before the process exits), never powerFenceWaitMs
    // per client; and nothing else waits — the fence of this node is its peers', not this.
    let clientsEnded: Promise<void> | undefined;
    const onSelfFenced = (reason: string): void => {
      const own = record.clients ?? [];
      clientsEnded ??= own.length === 0 ? Promise.resolve() : killClients(own, record.bootId, timing.powerFenceWaitMs, timing.powerFencePollMs).ended.then((ends) => {
        for (const e of ends) log(`node ${n} fenced itself: its ${describeClientEnd(e)}`);
      });
      opts.onSelfFence?.(reason);
    };
    const { heartbeats, add: addHeartbeat, remove: removeHeartbeat } = makeHeartbeats(regions, { nodeId: n, generation, timing, membership, provider, log }, onSelfFenced);
    const heartbeat = heartbeats[0]!;
    // Volume homes by volumeKey: the device, its view for data I/O (held without quorum; the
    // heartbeat writes the device itself), and its heartbeat while the node is in its region.
    type Home = { device: Promise<BlockDevice>; io: Promise<BlockDevice> | undefined; heartbeat: Heartbeat | undefined; pinned: boolean };
    const homes = new Map<string, Home>();
    fileVolumes.forEach((v, i) => homes.set(volumeKey(v), { device: Promise.resolve(volumeDevices[i]!), io: undefined, heartbeat: heartbeats[i + 1], pinned: true }));
    const home = (spec: string): Home => {
      const k = volumeKey(spec);
      let h = homes.get(k);
      if (h === undefined) {
        h = { device: provider.open(spec), io: undefined, heartbeat: undefined, pinned: false };
        homes.set(k, h);
        // A failed open is forgotten, so the next try opens again.
        h.device.catch(() => homes.delete(k));
      }
      return h;
    };
    const ioOf = (spec: string): Promise<BlockDevice> => {
      const h = home(spec);
      h.io ??= h.device.then((d) => provider.ioView(spec, d));
      return h.io;
    };
    /** A clean leave of a home's region (if the node heartbeats there) and the close of its device. */
    const leaveHome = async (k: string, h: Home): Promise<void> => {
      homes.delete(k);
      if (h.heartbeat !== undefined) {
        await h.heartbeat.stop(true);
        removeHeartbeat(h.heartbeat);
        membership.removeRegion(h.heartbeat.regionName);
      }
      await (await h.device).close();
    };
    const mounts = new Map<string, MountStatus>();
    const activations = new Map<string, ActivationStatus>();
    const stopHooks: (() => Promise<void>)[] = [];
    const stopHeartbeats = async (): Promise<void> => {
      for (const h of heartbeats) await h.stop(false);
    };
    cleanups.push(stopHeartbeats);
    for (const h of heartbeats) await h.start();

    let lockspace: Promise<Lockspace> | undefined;
    let lockspaceNow: Lockspace | undefined;
    const openLockspace = (): Promise<Lockspace> => {
      lockspace ??= (async () => {
        const lsDev = await openRegion(device, 'lockspace');
        // Per-resource wake-up hints in the run directory (host-local; across machines the poll bound applies).
        const ls = await Lockspace.open(lsDev, { membership, hintDir: path.join(info.config.runDir, 'dlm'), log, pollMinMs: timing.lockPollMinMs, pollMaxMs: timing.lockPollMaxMs });
        lockspaceNow = ls;
        return ls;
      })();
      return lockspace;
    };
    // Every plain open of a `VG/LV` by this node (a --volume home, a local activation, a mount's
    // device) holds the LV's open claim in the lockspace: a layout change on any host refuses
    // while it is open (src/volume/open-claim.ts).
    provider.claimPlainOpensIn(openLockspace, timing.lockTimeoutMs);
    // A join that fails from here closes the lockspace after the LV homes (their claims) and before the heartbeats.
    const closeLockspace = async (): Promise<void> => {
      await (await lockspace?.catch(() => undefined))?.close();
    };
    cleanups.push(closeLockspace);
    const lvHomes = await openLvHomes(lvVolumes, { provider, nodeCount: info.config.nodeCount, n, timing, addHeartbeat, cleanups });
    for (const [k, h] of lvHomes) homes.set(k, h);

    let control: ControlServer | undefined;
    let stopping: Promise<void> | undefined;
    let left = false;
    const status = (): NodeStatus => {
      const fencedReason = heartbeat.fencedReason ?? provider.fenced ?? null;
      return {
        cluster: info.config.clusterName,
        nodeId: n,
        name,
        pid: process.pid,
        generation: hex64(generation),
        key: key.toString(16),
        state: left ? 'left' : fencedReason !== null ? 'fenced' : 'up',
        fenced: fencedReason,
        quorum: membership.hasQuorum(),
        members: membership.members().map((m) => ({ nodeId: m.nodeId, state: m.state, generation: hex64(m.generation) })),
        heartbeat: heartbeat.stats,
        regions: heartbeats.map((h) => h.regionName),
        maxGaps: membership.maxGaps(),
        devices: provider.status(),
        locks: lockStatus(lockspaceNow),
        mounts: [...mounts.values()],
        ioHold: provider.holdStatus(),
        activations: [...activations.values()],
      };
    };
    const node: RunningNode = {
      nodeId: n,
      generation,
      key,
      info,
      membership,
      log,
      device,
      heartbeat,
      heartbeats,
      gate: provider.gate,
      provider,
      get control() {
        return control;
      },
      lockspace: openLockspace,
      status,
      mounts,
      activations,
      volumeDevice: (spec) => ioOf(spec),
      serveVolume: (spec, dev) => {
        const k = volumeKey(spec);
        const open = homes.get(k);
        if (open !== undefined) {
          throw new SanboxError('EBUSY', `${k}: node ${n} has it open already${open.pinned ? ' (it heartbeats there from its start: --volume)' : ''}; its device cannot be put under the logical volume's lock now`, { device: k });
        }
        homes.set(k, { device: Promise.resolve(dev), io: undefined, heartbeat: undefined, pinned: false });
      },
      joinVolumeRegion: async (spec) => {
        const h = home(spec);
        if (h.heartbeat !== undefined) return;
        const region = await ownVolumeRegion(volumeKey(spec), await h.device, info.config.nodeCount, n);
        await probeSlot(region, n, timing);
        if (h.heartbeat !== undefined) return;
        h.heartbeat = addHeartbeat(region);
        await h.heartbeat.start();
      },
      leaveVolumeRegion: async (spec) => {
        const k = volumeKey(spec);
        const h = homes.get(k);
        if (h === undefined || h.pinned) return;
        await leaveHome(k, h);
      },
      beforeStop: (fn) => void stopHooks.push(fn),
      recordCommandGroup: (pgid, startTicks) => {
        record.commandPgid = pgid;
        record.commandStartTicks = startTicks;
        return rewriteRecord();
      },
      recordClients: (clients) => rewriteRecord([...clients]),
      stop: () => {
        stopping ??= (async () => {
          // A fenced node's process ends after this: its clients first (onSelfFenced above).
          await clientsEnded;
          // A fenced node writes nothing more: its lockspace close (which releases by writing) is
          // refused or may hang on a stalled device, so it is bounded by one I/O timeout.
          const bounded = <T>(p: Promise<T>): Promise<T | undefined> =>
            provider.fenced === undefined ? p : Promise.race([p, new Promise<undefined>((r) => setTimeout(r, timing.ioTimeoutMs))]);
          if (provider.fenced === undefined) {
            for (const hook of stopHooks.splice(0)) await hook().catch((err: unknown) => log(`at stop: ${err instanceof Error ? err.message : String(err)}`));
          }
          // Volumes opened for a mount or an activation and not closed by its stop hook, and the
          // `VG/LV` homes, leave their regions and close before the lockspace goes: an LV's open
          // claim (or its LV lock) is released only once the node writes nothing more through it.
          for (const [k, h] of [...homes]) if (!h.pinned || lvHomes.has(k)) await bounded(leaveHome(k, h).catch(() => undefined));
          await bounded(closeLockspace().catch(() => undefined));
          membership.stop();
          for (const h of heartbeats) await h.stop(true);
          left = true;
          // heartbeat.stop(true) is the clean leave, and the lockspace was closed above within its
          // bound (a fenced node's writes may stall for good: an unbounded second close would keep
          // the process alive); the rest unwinds the join.
          for (const done of [stopHeartbeats, closeLockspace]) {
            const at = cleanups.indexOf(done);
            if (at >= 0) cleanups.splice(at, 1);
          }
          await undo();
          // A fenced node's clients are killed (or left to its fencers): it waits one I/O timeout
          // for their connections, as for its lockspace close above, not for one that cannot die.
          await control?.close(provider.fenced === undefined ? {} : { dropAfterMs: timing.ioTimeoutMs });
        })();
        return stopping;
      },
    };
    if (opts.control ?? true) {
      control = await ControlServer.listen(info.config.runDir, n);
      registerNodeCommands(control, node);
      for (const register of opts.commands ?? []) register(control, node);
    }
    log(`node ${n} (${name}) joined cluster '${info.config.clusterName}': generation ${hex64(generation)}, key 0x${key.toString(16)}, pid ${process.pid}`);
    return node;
  } catch (err) {
    await undo();
    throw err;
  }
}
