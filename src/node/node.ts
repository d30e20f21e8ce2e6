// One node joining a sanbox cluster: the library entry point that `sanbox node` (and any process
// that must heartbeat while it works, e.g. `sanbox lock`) uses.
//
//   const node = await startNode({ clusterImage: 'c.img', nodeId: 1 });
//   node.membership.subscribe((ev) => ...);   // up / down / fenced
//   const ls = await openRegion(node.device, 'lockspace'); // writes pass this node's fence gate
//   await node.stop();                          // clean leave: generation 0, key unregistered
//
// Join sequence: take the local slot lock (one process per node number on this machine), open the
// image with this node's fence gate, refuse the slot if another live writer's seq moves in it,
// register this incarnation's reservation key (and create the WERO reservation if none exists),
// write the node record (pid + start time + boot id, for the power fence), then heartbeat.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { BlockDevice } from '../disk/device.js';
import { FenceGate, SelfFenceGate, type SelfFencingGate } from '../disk/fence-gate.js';
import { openDevice, schemeOf } from '../disk/open.js';
import { selfIdentity } from '../disk/power-fence.js';
import { LockFile, nodeKey, PersistentReservations, PR_TYPES, sidecarStoreSpec } from '../disk/reservations.js';
import { heartbeatRegion } from '../fs/heartbeat-region.js';
import { SanboxError } from '../errors.js';
import type { NodeRecord } from '../format/node-record.js';
import { clusterHeartbeatRegion, clusterTag, readClusterImage, readNodeRecords, reservationSpec, writeNodeRecord, type ClusterImageInfo } from '../heartbeat/cluster-image.js';
import { Fencer, type FencePolicy } from '../heartbeat/fencer.js';
import { Heartbeat, newGeneration, probeSlot, type HeartbeatRegion } from '../heartbeat/heartbeat.js';
import { MembershipService } from '../heartbeat/membership.js';
import type { Timing } from '../heartbeat/timing.js';
import { ControlServer } from './control.js';

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
  /** Called once if this node fences itself (its I/O is already stopped). */
  onSelfFence?: (reason: string) => void;
}

export interface RunningNode {
  readonly nodeId: number;
  readonly generation: bigint;
  readonly key: bigint;
  readonly info: ClusterImageInfo;
  readonly membership: MembershipService;
  /** The cluster image opened with this node's fence gate: every write through it can be fenced. */
  readonly device: BlockDevice;
  /** The cluster image's heartbeat (first) and one per volume. */
  readonly heartbeat: Heartbeat;
  readonly heartbeats: Heartbeat[];
  /** The cluster image's gate: a FenceGate on a local image, a SelfFenceGate over nbd://. */
  readonly gate: SelfFencingGate;
  readonly control: ControlServer | undefined;
  status(): Record<string, unknown>;
  /** Clean leave. Idempotent. */
  stop(): Promise<void>;
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
  const spec = reservationSpec(info);
  const cleanups: (() => Promise<void> | void)[] = [];
  const undo = async (): Promise<void> => {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        // best effort while unwinding a failed join
      }
    }
  };

  try {
    // One process per node number on this machine. Over a network disk the heartbeat probe
    // below is what catches a duplicate.
    const lockDir = remote ? path.join(info.config.runDir, 'locks') : spec.lockDir;
    fs.mkdirSync(lockDir, { recursive: true });
    const slotLock = new LockFile(path.join(lockDir, `slot-${n}.lock`));
    const pr = remote ? null : new PersistentReservations(spec);
    if (pr !== null) cleanups.push(() => pr.close());
    if (!slotLock.tryLock('ex')) {
      slotLock.close();
      throw new SanboxError('EBUSY', `${img}: node ${n} is already running on this machine (its slot lock ${slotLock.path} is held): refusing to join as node ${n}`, { device: img });
    }
    cleanups.push(() => slotLock.close());

    // The key carries only 32 bits of the generation: never reuse a key once preempted, or this
    // incarnation's own writes would be refused as a fenced one's.
    const tag = clusterTag(info);
    const preemptedKey = pr?.readState().preempted[n];
    let generation = newGeneration();
    while (nodeKey(tag, n, generation) === preemptedKey) generation = newGeneration();
    const key = nodeKey(tag, n, generation);
    const gate: SelfFencingGate = pr !== null ? new FenceGate(pr.store, n, key, timing.ioTimeoutMs) : new SelfFenceGate();
    cleanups.push(() => gate.close());
    const device = await openDevice(img, { guard: 'shared', gate });
    cleanups.push(() => device.close());
    // info.path is img (readClusterImage above), so the region is named `${img}:heartbeat`.
    const region: HeartbeatRegion = clusterHeartbeatRegion(info, device);
    await probeSlot(region, n, timing);

    if (pr !== null) {
      if (!(await pr.register(n, key, timing.fenceGateWaitMs))) {
        throw new SanboxError('EBUSY', `${img}: a previous incarnation of node ${n} is stalled inside a write (it holds its fence gate); fence it first`, { device: img });
      }
      cleanups.push(() => pr.unregister(n, key));
      await pr.reserve(n, key, PR_TYPES.writeExclusiveRegistrantsOnly);
    }

    // Volume homes: open each with its own gate, find the ocfs2 heartbeat file, register there too.
    const volumeRegions: { region: HeartbeatRegion; gate: FenceGate; pr: PersistentReservations }[] = [];
    for (const vol of opts.volumes ?? []) {
      const vpr = new PersistentReservations(sidecarStoreSpec(path.resolve(vol)));
      cleanups.push(() => vpr.close());
      const vgate = new FenceGate(vpr.store, n, key, timing.ioTimeoutMs);
      cleanups.push(() => vgate.close());
      const vdev = await openDevice(vol, { guard: 'shared', gate: vgate });
      cleanups.push(() => vdev.close());
      const where = await heartbeatRegion(vdev);
      const vregion: HeartbeatRegion = {
        name: `${vol}:heartbeat`,
        device: vdev,
        offsetBytes: where.offsetBytes,
        blockBytes: where.blockSizeBytes,
        slotCount: Math.min(where.blockCount, info.config.nodeCount),
      };
      await probeSlot(vregion, n, timing);
      if (!(await vpr.register(n, key, timing.fenceGateWaitMs))) {
        throw new SanboxError('EBUSY', `${vol}: a previous incarnation of node ${n} is stalled inside a write; fence it first`, { device: vol });
      }
      cleanups.push(() => vpr.unregister(n, key));
      await vpr.reserve(n, key, PR_TYPES.writeExclusiveRegistrantsOnly);
      volumeRegions.push({ region: vregion, gate: vgate, pr: vpr });
    }

    const me = selfIdentity();
    const name = opts.name ?? (info.config.nodeNames[n] || `node${n}`);
    const record: NodeRecord = {
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
    await writeNodeRecord(device, info, record, n);

    const fencer = new Fencer({
      selfNodeId: n,
      selfKey: key,
      clusterTag: tag,
      reservations: [...(pr !== null ? [pr] : []), ...volumeRegions.map((v) => v.pr)],
      readNodeRecord: async (id) => (await readNodeRecords(device, info))[id] ?? null,
      timing,
      // Over nbd:// only the power fence (same machine) is ours; a remote victim stays unfenced
      // (never reported fenced) until the target cuts it off.
      policy: remote && volumeRegions.length === 0 ? 'power' : (opts.fencePolicy ?? 'both'),
      log,
    });
    const membership = new MembershipService({ localNodeId: n, localGeneration: generation, nodeCount: info.config.nodeCount, timing, fencer, log });
    // A self-fence on any region stops all of this node's I/O, on every device.
    const heartbeats: Heartbeat[] = [];
    let selfFenceReported = false;
    const onSelfFence = (reason: string): void => {
      for (const h of heartbeats) h.selfFence(reason);
      gate.selfFence(reason);
      for (const v of volumeRegions) v.gate.selfFence(reason);
      if (!selfFenceReported) {
        selfFenceReported = true;
        opts.onSelfFence?.(reason);
      }
    };
    const heartbeat = new Heartbeat({ region, nodeId: n, generation, timing, membership, gate, log, onSelfFence });
    heartbeats.push(heartbeat);
    for (const v of volumeRegions) heartbeats.push(new Heartbeat({ region: v.region, nodeId: n, generation, timing, membership, gate: v.gate, log, onSelfFence }));
    cleanups.push(async () => {
      for (const h of heartbeats) await h.stop(false);
    });
    for (const h of heartbeats) await h.start();

    let control: ControlServer | undefined;
    let stopping: Promise<void> | undefined;
    const status = (): Record<string, unknown> => ({
      cluster: info.config.clusterName,
      nodeId: n,
      name,
      pid: process.pid,
      generation: generation.toString(16),
      key: key.toString(16),
      fenced: heartbeat.fencedReason ?? null,
      quorum: membership.hasQuorum(),
      members: membership.members().map((m) => ({ nodeId: m.nodeId, state: m.state, generation: m.generation.toString(16) })),
      heartbeat: heartbeat.stats,
      regions: heartbeats.map((h) => h.regionName),
      maxGaps: membership.maxGaps(),
    });
    const node: RunningNode = {
      nodeId: n,
      generation,
      key,
      info,
      membership,
      device,
      heartbeat,
      heartbeats,
      gate,
      get control() {
        return control;
      },
      status,
      stop: () => {
        stopping ??= (async () => {
          membership.stop();
          for (const h of heartbeats) await h.stop(true);
          cleanups.pop(); // heartbeat.stop already done
          await undo();
          await control?.close();
        })();
        return stopping;
      },
    };
    if (opts.control ?? true) {
      control = await ControlServer.listen(info.config.runDir, n);
      control.handle('status', () => ({ status: status() }));
      control.handle('leave', () => {
        setImmediate(() => void node.stop());
        return { leaving: true };
      });
    }
    log(`node ${n} (${name}) joined cluster '${info.config.clusterName}': generation ${generation.toString(16)}, key 0x${key.toString(16)}, pid ${process.pid}`);
    return node;
  } catch (err) {
    await undo();
    throw err;
  }
}
