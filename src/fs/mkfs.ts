// sanbox mkfs: validates the target, plans the layout (mkfs-layout.ts) and writes it.
// Refuses (before writing anything) a read-only device, a device too small for the slots and
// journals asked, and, without `force`, a device that already holds a filesystem or a PV label.
// Write order: discard the device (so journals, heartbeat and every unwritten block read as
// zeros), metadata blocks and group descriptors, backup superblocks, flush, and the primary
// superblock last: a format interrupted half-way is never mistaken for a volume.

import crypto from 'node:crypto';
import type { BlockDevice } from '../disk/device.js';
import { SanboxError } from '../errors.js';
import { globalGroupBlock, planMkfs, superblockBlock, type MkfsPlan } from './mkfs-layout.js';
import { refuseSignatures } from '../disk/signature-probe.js';
import { defaultBlockSize, defaultClusterSize, type FsType, type Ocfs2Features } from './mkfs-options.js';

export interface MkfsOptions {
  slots: number;
  blockSizeBytes?: number;
  clusterSizeBytes?: number;
  journalSizeBytes?: number;
  label?: string;
  clusterStack?: 'o2cb';
  clusterName?: string;
  /** Superblock features; default mkfs.ocfs2's default level less what sanbox cannot write (mkfs-options.ts). */
  features?: Ocfs2Features;
  /** mkfs.ocfs2's -T: picks the default cluster and journal sizes. */
  fsType?: FsType;
  /** -J block64 (true) / block32 (false); default 64-bit only when the volume needs it. */
  journal64?: boolean;
  force?: boolean;
  /** Fixed identity (tests); random by default. */
  uuid?: Buffer;
  fsGeneration?: number;
  nowSec?: bigint;
  /** Called as work proceeds: done and total units, and the current phase. */
  onProgress?: (done: number, total: number, phase: string) => void;
}

export interface MkfsResult {
  device: string;
  uuid: string;
  label: string;
  slots: number;
  blockSizeBytes: number;
  clusterSizeBytes: number;
  clusterCount: number;
  journalSizeBytes: number;
  backupSuperblocks: number[];
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
}

/** Blocks written between two progress callbacks. */
const PROGRESS_EVERY_BLOCKS = 256;

export async function mkfs(dev: BlockDevice, opts: MkfsOptions): Promise<MkfsResult> {
  if (dev.readOnly) throw new SanboxError('EINVAL', `${dev.name}: device is read-only`, { device: dev.name });
  if (!opts.force) await refuseSignatures(dev, 'mkfs');
  // mkfs.ocfs2's defaults by volume size, but never below the device's sector size.
  const bs = opts.blockSizeBytes ?? Math.max(defaultBlockSize(dev.sizeBytes), dev.sectorSizeBytes);
  if (dev.sectorSizeBytes > bs) throw new SanboxError('EINVAL', `${dev.name}: block size ${bs} is smaller than the device's ${dev.sectorSizeBytes}-byte sectors`, { device: dev.name });
  const plan = planMkfs({
    sizeBytes: dev.sizeBytes,
    slots: opts.slots,
    blockSizeBytes: bs,
    clusterSizeBytes: opts.clusterSizeBytes ?? defaultClusterSize(dev.sizeBytes, opts.fsType),
    features: opts.features,
    fsType: opts.fsType,
    journal64: opts.journal64,
    ...(opts.journalSizeBytes !== undefined ? { journalSizeBytes: opts.journalSizeBytes } : {}),
    label: opts.label ?? '',
    clusterStack: opts.clusterStack,
    clusterName: opts.clusterName,
    // A version-4 (random) UUID, as mkfs.ocfs2 generates.
    uuid: opts.uuid ?? Buffer.from(crypto.randomUUID().replace(/-/g, ''), 'hex'),
    fsGeneration: opts.fsGeneration ?? crypto.randomBytes(4).readUInt32LE(0),
    dxSeed: [crypto.randomBytes(4).readUInt32LE(0), crypto.randomBytes(4).readUInt32LE(0), crypto.randomBytes(4).readUInt32LE(0)],
    nowSec: opts.nowSec ?? BigInt(Math.floor(Date.now() / 1000)),
  });
  await writePlan(dev, plan, opts.onProgress);
  const sb = plan.superblock;
  return {
    device: dev.name,
    uuid: sb.uuid.toString('hex').toUpperCase(),
    label: sb.label,
    slots: sb.maxSlots,
    blockSizeBytes: bs,
    clusterSizeBytes: plan.params.clusterSizeBytes,
    clusterCount: plan.clusterCount,
    journalSizeBytes: plan.journalSizeBytes,
    backupSuperblocks: plan.backupBlknos,
    featureCompat: sb.featureCompat,
    featureIncompat: sb.featureIncompat,
    featureRoCompat: sb.featureRoCompat,
  };
}

async function writePlan(dev: BlockDevice, plan: MkfsPlan, onProgress?: (done: number, total: number, phase: string) => void): Promise<void> {
  const bs = plan.params.blockSizeBytes;
  const total = 1 + plan.blocks.size + plan.groups.length + plan.backupBlknos.length + 1;
  let done = 0;
  const tick = (phase: string, force = false): void => {
    if (onProgress && (force || done % PROGRESS_EVERY_BLOCKS === 0)) onProgress(done, total, phase);
  };
  tick('discarding', true);
  // Volume = whole clusters; anything past the last cluster is left alone.
  await dev.discard(0, plan.clusterCount * plan.params.clusterSizeBytes);
  done++;
  tick('writing system files', true);
  const sorted = [...plan.blocks.entries()].sort((a, b) => a[0] - b[0]);
  for (const [blkno, data] of sorted) {
    await dev.write(data, blkno * bs);
    done++;
    tick('writing system files');
  }
  tick('writing allocation groups', true);
  for (const g of plan.groups) {
    await dev.write(globalGroupBlock(plan, g), g.descBlkno * bs);
    done++;
    tick('writing allocation groups');
  }
  for (const b of plan.backupBlknos) {
    await dev.write(superblockBlock(plan, b), b * bs);
    done++;
  }
  await dev.flush();
  tick('writing superblock', true);
  await dev.write(superblockBlock(plan, 2), 2 * bs);
  await dev.flush();
  done++;
  tick('done', true);
}
