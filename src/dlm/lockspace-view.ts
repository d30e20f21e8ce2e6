// The lockspace of a cluster image as it is on disk, grouped by resource: what `sanbox dlm ls`
// prints. Read-only and lock-free; a record whose node has since restarted (its current
// incarnation's generation differs) is marked stale.

import { openDevice } from '../disk/open.js';
import { hex64 } from '../format/where.js';
import { openRegion, readClusterImage, readNodeRecords } from '../heartbeat/cluster-image.js';
import { modeName, type Mode } from './compat-matrix.js';
import { readSnapshot, resourceLabel, type LockspaceSnapshot } from './lock-manager.js';
import { resolveLvb } from './lvb-rule.js';

type SnapshotLock = LockspaceSnapshot['locks'][number];

export interface LockView {
  node: number;
  lockId: SnapshotLock['lockId'];
  granted: string;
  requested: string;
  ticket: string;
  claim: SnapshotLock['claim'];
  pid: SnapshotLock['pid'];
  generation: string;
  row: SnapshotLock['row'];
  entry: SnapshotLock['entry'];
  stale: boolean;
}

export interface ResourceView {
  resource: string;
  granted: LockView[];
  converting: LockView[];
  waiting: LockView[];
  lvb: { seq: string; valid: boolean; value: string; text: string } | null;
}

export interface LockspaceView {
  lockspace: LockspaceSnapshot['header'];
  nodes: (Omit<LockspaceSnapshot['nodes'][number], 'generation'> & { generation: string; current: boolean })[];
  resources: ResourceView[];
}

/** Reads the lockspace region and node records of `image` and groups the locks by resource. */
export async function readLockspaceView(image: string): Promise<LockspaceView> {
  const info = await readClusterImage(image);
  const dev = await openDevice(image, { readOnly: true, guard: 'none' });
  let snap: LockspaceSnapshot;
  let currentGen: (bigint | null)[];
  try {
    const region = await openRegion(dev, 'lockspace');
    snap = await readSnapshot(region);
    currentGen = (await readNodeRecords(dev, info)).map((r) => r?.generation ?? null);
  } finally {
    await dev.close();
  }
  const resources = new Map<string, { name: Buffer; locks: LockspaceSnapshot['locks']; lvbs: LockspaceSnapshot['lvbs'] }>();
  const entry = (name: Buffer) => {
    const k = name.toString('hex');
    let e = resources.get(k);
    if (e === undefined) resources.set(k, (e = { name, locks: [], lvbs: [] }));
    return e;
  };
  for (const l of snap.locks) entry(l.resource).locks.push(l);
  for (const v of snap.lvbs) entry(v.resource).lvbs.push(v);
  const stale = (nodeId: number, gen: bigint) => currentGen[nodeId] !== gen;
  const mn = (m: number | null) => (m === null ? '-' : modeName(m as Mode));
  const out = [...resources.values()]
    .sort((a, b) => Buffer.compare(a.name, b.name))
    .map((r): ResourceView => {
      const lvb = resolveLvb(r.lvbs, [], snap.header.lvbLenBytes);
      const lock = (l: SnapshotLock): LockView => ({
        node: l.nodeId,
        lockId: l.lockId,
        granted: mn(l.grantedMode),
        requested: mn(l.requestedMode),
        ticket: l.ticket.toString(),
        claim: l.claim,
        pid: l.pid,
        generation: hex64(l.generation),
        row: l.row,
        entry: l.entry,
        stale: stale(l.nodeId, l.generation),
      });
      const byTicket = (a: { ticket: bigint }, b: { ticket: bigint }) => (a.ticket < b.ticket ? -1 : a.ticket > b.ticket ? 1 : 0);
      return {
        resource: resourceLabel(r.name),
        granted: r.locks.filter((l) => l.state === 'granted').map(lock),
        converting: r.locks.filter((l) => l.state === 'converting').sort(byTicket).map(lock),
        waiting: r.locks.filter((l) => l.state === 'waiting').sort(byTicket).map(lock),
        lvb: r.lvbs.length === 0 ? null : { seq: lvb.valueSeq.toString(), valid: lvb.valid, value: lvb.value.toString('hex'), text: printable(lvb.value) },
      };
    });
  return {
    lockspace: snap.header,
    nodes: snap.nodes.map((n) => ({ ...n, generation: hex64(n.generation), current: !stale(n.nodeId, n.generation) })),
    resources: out,
  };
}

/** A value block as text when it is printable ASCII (trailing NULs dropped), else as 0x-hex. */
function printable(b: Buffer): string {
  const trimmed = b.subarray(0, b.length - (b.toString('latin1').match(/\0*$/)?.[0].length ?? 0));
  return /^[\x20-\x7e]*$/.test(trimmed.toString('latin1')) ? trimmed.toString('latin1') : `0x${b.toString('hex')}`;
}
