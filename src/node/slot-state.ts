// What each heartbeat slot of a cluster image says, from reads only (no node needs to be running,
// nothing is written). State per slot:
//   free   — never written (seq 0, or no valid block);
//   left   — its writer left cleanly (generation 0);
//   fenced — the reservation key of this slot's generation is recorded as preempted;
//   dead   — its block is older than max(cluster dead time, the writer's hb_dead_ms);
//   up     — otherwise.
// A single read can tell a block's age because sanbox writes seq = wall-clock milliseconds (and
// the kernel writes wall-clock seconds). `sanbox cluster status` (status.ts) shows these slots;
// src/node/ctl.ts and lvm-node.ts read one slot to explain a node they lost. Kept apart from
// status.ts's LVM, ocfs2 and lockspace readers so those two import it statically and cheaply: an
// explanation that fails to load must not replace the error it explains.

import { openDevice } from '../disk/open.js';
import { nodeKey } from '../disk/reservations.js';
import type { BlockDevice } from '../disk/device.js';
import { decodeReservationCopies, RESERVATIONS_PAYLOAD_BYTES, type ReservationState } from '../format/reservations.js';
import { hex64 } from '../format/o2hb-block.js';
import type { NodeState } from '../heartbeat/membership-api.js';
import { clusterHeartbeatRegion, clusterTag, readClusterImageFrom, readNodeRecords, type ClusterImageInfo } from '../heartbeat/cluster-image.js';
import { readSlots } from '../heartbeat/heartbeat.js';

export interface SlotStatus {
  node: number;
  name: string;
  pid: number | null;
  seq: string;
  generation: string;
  state: NodeState;
  /** Age of the last update in ms, or null when it cannot be told. */
  ageMs: number | null;
  deadMs: number;
  checksumOk: boolean;
}

/** Seq values above this are wall-clock milliseconds (sanbox), between the bounds seconds (kernel). */
const SEQ_MS_MIN = 1_000_000_000_000n;
const SEQ_S_MIN = 1_000_000_000n;

export function seqAgeMs(seq: bigint, nowWallMs: number): number | null {
  if (seq >= SEQ_MS_MIN) return Math.max(0, nowWallMs - Number(seq));
  if (seq >= SEQ_S_MIN) return Math.max(0, nowWallMs - Number(seq) * 1000);
  return null;
}

/** The reservation state, read through the device (so it works for nbd:// too). */
async function readReservations(dev: BlockDevice, info: ClusterImageInfo): Promise<ReservationState> {
  const r = info.regions.get('reservations')!;
  const buf = Buffer.alloc(RESERVATIONS_PAYLOAD_BYTES);
  await dev.read(buf, r.payloadOffsetBytes);
  return decodeReservationCopies(buf, { device: dev.name, offsetBytes: r.payloadOffsetBytes });
}

/**
 * Every slot of the cluster on `dev`. `lastChange` (optional, for --watch) maps node → [seq,
 * monotonic ms when it last changed]: a slot whose seq cannot be dated gets its age from it.
 */
export async function readSlotStatuses(dev: BlockDevice, info: ClusterImageInfo, lastChange?: Map<number, { seq: bigint; atMs: number }>): Promise<SlotStatus[]> {
  const blocks = await readSlots(clusterHeartbeatRegion(info, dev), undefined, { stable: true });
  const records = await readNodeRecords(dev, info);
  const pr = await readReservations(dev, info);
  const tag = clusterTag(info);
  const nowWall = Date.now();
  const nowMono = performance.now();
  return blocks.map((b, n) => {
    const rec = records[n] ?? null;
    const sameIncarnation = rec !== null && rec.generation === b.generation;
    const deadMs = Math.max(info.timing.deadMs, b.deadMs);
    let ageMs = seqAgeMs(b.seq, nowWall);
    if (lastChange !== undefined) {
      const lc = lastChange.get(n);
      if (lc === undefined || lc.seq !== b.seq) lastChange.set(n, { seq: b.seq, atMs: nowMono });
      else if (ageMs === null) ageMs = nowMono - lc.atMs;
    }
    let state: NodeState;
    if (!b.cksumValid || b.seq === 0n) state = 'free';
    else if (b.generation === 0n) state = 'left';
    else if (pr.preempted[n] === nodeKey(tag, n, b.generation)) state = 'fenced';
    else if (ageMs !== null && ageMs > deadMs) state = 'dead';
    else state = 'up';
    return {
      node: n,
      name: rec?.name || info.config.nodeNames[n] || '',
      pid: sameIncarnation ? rec.pid : null,
      seq: b.seq.toString(),
      generation: hex64(b.generation),
      state,
      ageMs: ageMs === null ? null : Math.round(ageMs),
      deadMs,
      checksumOk: b.cksumValid,
    };
  });
}

/** The state node N's slot shows now (up, dead, fenced, left, free), or undefined if it cannot be read. */
export async function slotState(info: ClusterImageInfo, nodeId: number): Promise<NodeState | undefined> {
  try {
    const dev = await openDevice(info.path, { guard: 'none', readOnly: true });
    try {
      return (await readSlotStatuses(dev, await readClusterImageFrom(dev, info.path)))[nodeId]?.state;
    } finally {
      await dev.close();
    }
  } catch {
    return undefined;
  }
}
