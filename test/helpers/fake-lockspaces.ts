// Several Lockspace instances in one process (one per simulated node, each with its own device
// handle) on one image file, and a fake membership the test drives (who is fenced). Shared by the
// lock manager's own tests and the LVM lock tests built on it.
import type { ExecutionContext } from 'ava';
import path from 'node:path';
import { createImage, FileDisk } from '../../src/disk/index.js';
import { viewOf } from '../../src/disk/view-device.js';
import { Lockspace } from '../../src/dlm/lock-manager.js';
import type { Mode } from '../../src/dlm/compat-matrix.js';
import type { Membership, MembershipEvent, MemberView } from '../../src/heartbeat/membership-api.js';
import { tempDir } from './tmp.js';

export const NODES = 4;
export const REGION_OFFSET = 1024 * 1024;
export const REGION_BYTES = 1024 * 1024;

export class FakeCluster {
  fenced = new Set<string>();
  listeners = new Set<(ev: MembershipEvent) => void>();
  fence(nodeId: number, generation: bigint): void {
    this.fenced.add(`${nodeId}:${generation}`);
    for (const l of this.listeners) l({ kind: 'fenced', nodeId, generation, atMs: performance.now() });
  }
  member(nodeId: number, generation: bigint): Membership {
    return {
      localNodeId: nodeId,
      localGeneration: generation,
      members: (): MemberView[] => Array.from({ length: NODES }, (_, n) => ({ nodeId: n, generation: n === nodeId ? generation : 0n, state: 'up' })),
      hasQuorum: () => true,
      isFenced: (n, g) => this.fenced.has(`${n}:${g}`),
      subscribe: (l) => {
        this.listeners.add(l);
        return () => this.listeners.delete(l);
      },
    };
  }
}

export async function setupLockspaces(t: ExecutionContext) {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  createImage(img, { sizeBytes: 4 * 1024 * 1024, sectorSizeBytes: 512 });
  const cluster = new FakeCluster();
  const opened: Lockspace[] = [];
  const disks: FileDisk[] = [];
  const open = async (nodeId: number, generation = BigInt(nodeId + 1) * 1000n) => {
    const disk = FileDisk.open(img, { guard: 'none' });
    disks.push(disk);
    const ls = await Lockspace.open(viewOf(disk, REGION_OFFSET, REGION_BYTES), { membership: cluster.member(nodeId, generation), watchPath: img });
    opened.push(ls);
    return ls;
  };
  t.teardown(async () => {
    for (const ls of opened) await ls.close().catch(() => undefined);
    for (const d of disks) d.closeSync();
  });
  return { img, cluster, open };
}

/** A lock service that grants at once and records unlocks and the LV lock's blocking callback. */
export function fakeLockspace(log: string[]): { ls: Lockspace; bast: () => (() => void) | undefined } {
  let lvBast: (() => void) | undefined;
  const ls = {
    lock: async (resource: string, _mode: Mode, o: { bast?: () => void }) => {
      if (resource.endsWith('VGLK')) log.push(`lock ${resource}`);
      else lvBast = o.bast;
      const l = { lost: undefined, released: false, unlock: async () => void log.push(`unlock ${resource.endsWith('VGLK') ? 'vg' : 'lv'}`) };
      return l;
    },
  };
  return { ls: ls as unknown as Lockspace, bast: () => lvBast };
}
