// `sanbox cluster status`: what every slot of a cluster image says (free, left, fenced, dead, up:
// src/node/slot-state.ts), the quorum the disk shows, the LVs active on nodes and, on request, who
// has each volume mounted; from reads only (no node needs to be running, nothing is written). With
// --watch a slot's age is also measured on our monotonic clock from the last seq change, which is
// what membership itself uses.

import fs from 'node:fs';
import { openDevice, schemeOf } from '../disk/open.js';
import { Mode } from '../dlm/compat-matrix.js';
import { lockspaceFormatted, readSnapshot, resourceLabel } from '../dlm/lock-manager.js';
import { dashId } from '../format/lvm/uuid.js';
import { readClusterDevices } from '../volume/cluster-devices.js';
import { parseLvLockResource, parseLvOpenClaimResource } from '../volume/lvm-locks.js';
import { withSession } from '../volume/manager.js';
import { openJournal } from '../fs/journal-reader.js';
import { Ocfs2Volume } from '../fs/ocfs2-volume.js';
import { readSlotMap } from '../fs/slot-map-reader.js';
import { openTarget } from '../volume/resolve.js';
import type { BlockDevice } from '../disk/device.js';
import { openRegion, readClusterImageFrom, type ClusterImageInfo } from '../heartbeat/cluster-image.js';
import { hasQuorum } from '../heartbeat/quorum.js';
import type { Timing } from '../timing.js';
import { readSlotStatuses, type SlotStatus } from './slot-state.js';
export type { SlotStatus };

export interface ClusterStatus {
  image: string;
  cluster: string;
  nodes: number;
  /** Every timing value of the cluster, as recorded in its config region (src/timing.ts). */
  timing: Timing;
  /**
   * Quorum as the disk shows it (docs/heartbeat.md, "One rule"): base = the slots up or dead (not
   * fenced, not left), alive = the slots up. A node's own view (ctl status) may differ for a moment.
   */
  quorum: { quorate: boolean; base: number[]; alive: number[] };
  slots: SlotStatus[];
  /** With `--volume`: which node has each named volume mounted in which slot (its slot map). */
  mounts?: VolumeMount[];
  /**
   * LVs active on nodes: their LV locks granted in the lockspace (lvmlockd's activation locks), and
   * the open claims of nodes that have an LV open without its lock (src/volume/open-claim.ts).
   */
  activeLvs: ActiveLv[];
}

/** An LV lock (or an open claim) granted to a node, as the lockspace on the cluster image shows it. */
export interface ActiveLv {
  node: number;
  /** VG/LV when the cluster's device list finds the VG, else the lock's VG name and the LV uuid. */
  lv: string;
  lvUuid: string;
  /**
   * sh (PR: shared activation, or I/O beside others) or ex (EX); open: the node has the LV open
   * without its LV lock (its open claim), and a layout change is refused while it does.
   */
  mode: 'sh' | 'ex' | 'open';
  lock: string;
}

/** The LV locks and open claims granted in the lockspace, named through the VGs on the cluster's device list. */
async function readActiveLvs(dev: BlockDevice): Promise<ActiveLv[]> {
  const region = await openRegion(dev, 'lockspace');
  // No node has joined yet: no lock at all.
  if (!(await lockspaceFormatted(region))) return [];
  const snap = await readSnapshot(region);
  const held = snap.locks.flatMap((l) => {
    if (l.grantedMode === null) return [];
    const lock = resourceLabel(l.resource);
    const r = parseLvLockResource(lock);
    if (r !== undefined) return [{ node: l.nodeId, lock, mode: (l.grantedMode === Mode.EX ? 'ex' : 'sh') as ActiveLv['mode'], ...r }];
    const claim = parseLvOpenClaimResource(lock);
    return claim === undefined ? [] : [{ node: l.nodeId, lock, mode: 'open' as const, ...claim }];
  });
  if (held.length === 0) return [];
  // Names: the LVs of the VGs on the cluster's device list (best effort: an unreadable VG keeps the uuid).
  const names = new Map<string, string>();
  const specs = ((await readClusterDevices(dev).catch(() => undefined)) ?? []).map((e) => e.device).filter((d) => schemeOf(d) !== undefined || fs.existsSync(d));
  if (specs.length > 0) {
    await withSession(specs, { readOnly: true, guard: 'none' }, async (s) => {
      for (const vg of s.vgNames()) {
        try {
          for (const lv of s.vg(vg).vg.lvs) names.set(dashId(lv.id), `${vg}/${lv.name}`);
        } catch {
          // a VG that does not read cleanly here: its LVs keep their uuids
        }
      }
    }).catch(() => undefined);
  }
  return held.map((h) => ({ node: h.node, lv: names.get(h.lvUuid) ?? `${h.vgPrefix}/${h.lvUuid}`, lvUuid: h.lvUuid, mode: h.mode, lock: h.lock }));
}

/** One valid slot map entry of an ocfs2 volume: node `node` has it mounted in `slot`. */
export interface VolumeMount {
  volume: string;
  slot: number;
  node: number;
  /** The slot's journal is DIRTY (in use, or its node died mounted and it awaits recovery). */
  journalDirty: boolean;
}

/**
 * Which node has each volume mounted in which slot, from the volumes' slot maps (as
 * mounted.ocfs2 -f reads them, not from heartbeat) and journal flags; reads only.
 */
export async function readVolumeMounts(volumes: string[], devices?: string[]): Promise<VolumeMount[]> {
  const out: VolumeMount[] = [];
  for (const volume of volumes) {
    const dev = await openTarget(volume, { readOnly: true, guard: 'none', ...(devices !== undefined ? { devices } : {}) });
    try {
      const vol = await Ocfs2Volume.open(dev);
      const map = await readSlotMap(vol);
      for (const [slot, e] of map.slots.entries()) {
        if (e.nodeNum === undefined) continue;
        out.push({ volume, slot, node: e.nodeNum, journalDirty: (await openJournal(vol, slot)).dirty });
      }
    } finally {
      await dev.close();
    }
  }
  return out;
}

function quorumOf(slots: SlotStatus[]): ClusterStatus['quorum'] {
  const base = slots.filter((s) => s.state === 'up' || s.state === 'dead').map((s) => s.node);
  const alive = slots.filter((s) => s.state === 'up').map((s) => s.node);
  return { quorate: alive.length > 0 && hasQuorum(new Set(base), new Set(alive)), base, alive };
}

export class StatusReader {
  private constructor(
    private readonly dev: BlockDevice,
    private readonly info: ClusterImageInfo,
  ) {}

  static async open(image: string): Promise<StatusReader> {
    const dev = await openDevice(image, { guard: 'none', readOnly: true });
    try {
      const info = await readClusterImageFrom(dev, image);
      return new StatusReader(dev, info);
    } catch (err) {
      await dev.close();
      throw err;
    }
  }

  /** `lastChange` (optional, for --watch) maps node → [seq, monotonic ms when it last changed]. */
  async read(lastChange?: Map<number, { seq: bigint; atMs: number }>): Promise<ClusterStatus> {
    const { info, dev } = this;
    const slots = await readSlotStatuses(dev, info, lastChange);
    return {
      image: info.path,
      cluster: info.config.clusterName,
      nodes: info.config.nodeCount,
      timing: info.timing,
      quorum: quorumOf(slots),
      slots,
      activeLvs: await readActiveLvs(dev),
    };
  }

  get intervalMs(): number {
    return this.info.timing.intervalMs;
  }

  async close(): Promise<void> {
    await this.dev.close();
  }
}
