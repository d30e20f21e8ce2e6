// `sanbox mkfs | fsinfo | slotmap | hb | logdump`'s actions, loaded when one runs (tools/commands/ocfs2.ts
// registers them).

import type { BlockDevice } from '../../src/disk/index.js';
import { FormatError, SanboxError, UsageError } from '../../src/errors.js';
import { COMPAT_NAMES, featureNames, INCOMPAT_NAMES, OCFS2_MAX_SLOTS, RO_COMPAT_NAMES } from '../../src/format/ocfs2/constants.js';
import { systemFiles } from '../../src/fs/system-files.js';
import { hasClusterInfo, uuidHex } from '../../src/format/ocfs2/superblock.js';
import { hex32, hex64 } from '../../src/format/o2hb-block.js';
import { Jbd2BlockType, jbd2BlockTypeName, jbd2CompatNames, jbd2IncompatNames } from '../../src/format/jbd2/superblock.js';
import { tagFlagNames } from '../../src/format/jbd2/log-blocks.js';
// The modules each command uses, not src/fs/index.ts's whole layer (journal replay, recovery, the
// journal writer), which none of them needs.
import { mkfs } from '../../src/fs/mkfs.js';
import { Ocfs2Volume } from '../../src/fs/ocfs2-volume.js';
import { readHeartbeat } from '../../src/fs/heartbeat-reader.js';
import { readJournal, type JournalDump } from '../../src/fs/journal-reader.js';
import { readSlotMap } from '../../src/fs/slot-map-reader.js';
import { DEFAULT_LEVEL_UNWRITTEN, defaultSlots, FEATURE_LEVELS, FS_TYPES, parseJournalOptions, resolveFeatures, type FeatureLevel, type FsType, type JournalOptions, type Ocfs2Features } from '../../src/fs/mkfs-options.js';
import { openTarget } from '../../src/volume/resolve.js';
import { deviceList } from '../../src/volume/devices.js';
import { formatSize, parseSizeBytes } from '../../src/units.js';
import { printFields, printJson, printTable, sizeField } from '../output.js';

/** Interval between progress lines when stderr is not a terminal. */
const PROGRESS_LINE_MS = 1000;

async function openForRead(spec: string, devices?: string): Promise<BlockDevice> {
  return openTarget(spec, { readOnly: true, devices: deviceList([], devices) });
}

async function withVolume<T>(spec: string, devices: string | undefined, fn: (vol: Ocfs2Volume) => Promise<T>): Promise<T> {
  const dev = await openForRead(spec, devices);
  try {
    const vol = await Ocfs2Volume.open(dev);
    // A volume fsck.ocfs2 would refuse outright is not reported as if it were healthy.
    await vol.checkSystemFiles();
    return await fn(vol);
  } finally {
    await dev.close();
  }
}

function parseChoice(text: string, what: string, min: number, max: number): number {
  const v = parseSizeBytes(text);
  if (v < min || v > max || (v & (v - 1)) !== 0) throw new UsageError(`${what} must be a power of two from ${formatSize(min)} to ${formatSize(max)}, not '${text}'`);
  return v;
}

interface MkfsCliOptions {
  nodeSlots?: string;
  slots?: string;
  blockSize?: string;
  clusterSize?: string;
  journalOptions?: string;
  journalSize?: string;
  label: string;
  T?: string;
  mount?: string;
  fsFeatures?: string;
  fsFeatureLevel?: string;
  clusterStack?: string;
  clusterName?: string;
  devices?: string;
  force: boolean;
  quiet: boolean;
  json: boolean;
}

interface MkfsRequest {
  slots?: number;
  blockSizeBytes?: number;
  clusterSizeBytes?: number;
  journal: JournalOptions;
  fsType?: FsType;
  features: Ocfs2Features;
}

/** Checks mkfs's flags (sanbox's and mkfs.ocfs2's spellings) before any device is opened. */
function mkfsRequest(o: MkfsCliOptions): MkfsRequest {
  if (o.nodeSlots !== undefined && o.slots !== undefined && o.nodeSlots !== o.slots) throw new UsageError(`-N ${o.nodeSlots} and --slots ${o.slots} disagree`);
  const slotsText = o.nodeSlots ?? o.slots;
  let slots: number | undefined;
  if (slotsText !== undefined) {
    slots = Number(slotsText);
    if (!Number.isInteger(slots) || slots < 1 || slots > OCFS2_MAX_SLOTS) throw new UsageError(`--slots must be 1..${OCFS2_MAX_SLOTS}, not '${slotsText}'`);
  }
  if (o.clusterStack !== undefined && o.clusterStack !== 'o2cb') throw new UsageError(`--cluster-stack must be o2cb (sanbox has no ${o.clusterStack} stack), not '${o.clusterStack}'`);
  if (o.clusterName !== undefined && o.clusterStack === undefined) throw new UsageError('--cluster-name needs --cluster-stack o2cb');
  if (o.clusterStack !== undefined && o.clusterName === undefined) throw new UsageError('--cluster-stack needs --cluster-name (as mkfs.ocfs2)');
  if (Buffer.byteLength(o.label) > 64) throw new UsageError('--label is longer than 64 bytes');
  if (o.clusterName !== undefined && Buffer.byteLength(o.clusterName) > 16) throw new UsageError('--cluster-name is longer than 16 bytes');
  if (o.T !== undefined && !(FS_TYPES as readonly string[]).includes(o.T)) throw new UsageError(`-T must be one of ${FS_TYPES.join(', ')}, not '${o.T}'`);
  if (o.mount !== undefined && o.mount !== 'local' && o.mount !== 'cluster') throw new UsageError(`-M must be local or cluster, not '${o.mount}'`);
  if (o.fsFeatureLevel !== undefined && !(FEATURE_LEVELS as readonly string[]).includes(o.fsFeatureLevel)) {
    throw new UsageError(`--fs-feature-level must be one of ${FEATURE_LEVELS.join(', ')}, not '${o.fsFeatureLevel}'`);
  }
  const asUsage = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof SanboxError && err.code === 'EINVAL') throw new UsageError(err.message);
      throw err;
    }
  };
  const journal = o.journalOptions !== undefined ? asUsage(() => parseJournalOptions(o.journalOptions!, parseSizeBytes)) : {};
  if (o.journalSize !== undefined) {
    const j = parseSizeBytes(o.journalSize);
    if (journal.sizeBytes !== undefined && journal.sizeBytes !== j) throw new UsageError(`-J size= and --journal-size disagree`);
    journal.sizeBytes = j;
  }
  const features = asUsage(() => resolveFeatures({
    ...(o.fsFeatureLevel !== undefined ? { level: o.fsFeatureLevel as FeatureLevel } : {}),
    ...(o.fsFeatures !== undefined ? { list: o.fsFeatures } : {}),
    ...(o.clusterStack !== undefined ? { clusterStack: o.clusterStack } : {}),
    local: o.mount === 'local',
  }));
  return {
    ...(slots !== undefined ? { slots } : {}),
    ...(o.blockSize !== undefined ? { blockSizeBytes: parseChoice(o.blockSize, '--block-size', 512, 4096) } : {}),
    ...(o.clusterSize !== undefined ? { clusterSizeBytes: parseChoice(o.clusterSize, '--cluster-size', 4096, 1024 * 1024) } : {}),
    journal,
    ...(o.T !== undefined ? { fsType: o.T as FsType } : {}),
    features,
  };
}

function progressReporter(): (done: number, total: number, phase: string) => void {
  const tty = process.stderr.isTTY === true;
  let lastLineMs = 0;
  return (done, total, phase) => {
    const pct = total > 0 ? Math.floor((done * 100) / total) : 100;
    if (tty) {
      const width = 30;
      const fill = Math.round((pct / 100) * width);
      process.stderr.write(`\r[${'#'.repeat(fill)}${' '.repeat(width - fill)}] ${String(pct).padStart(3)}% ${phase.padEnd(28)}`);
      if (phase === 'done') process.stderr.write('\n');
      return;
    }
    const now = Date.now();
    if (phase === 'done' || now - lastLineMs >= PROGRESS_LINE_MS) {
      lastLineMs = now;
      process.stderr.write(`mkfs: ${pct}% ${phase} (${done}/${total})\n`);
    }
  };
}

export async function format(target: string, o: MkfsCliOptions): Promise<void> {
  const req = mkfsRequest(o);
  // The in-use guard is taken exclusively: a device (or LV) another process has open is refused (EBUSY).
  const dev = await openTarget(target, { devices: deviceList([], o.devices), guard: 'exclusive' });
  try {
    const slots = req.slots ?? defaultSlots(dev.sizeBytes, req.features.local);
    if (o.fsFeatureLevel === 'default' && !o.quiet && !o.json) {
      process.stderr.write(`mkfs: note: mkfs.ocfs2's default level also sets ${DEFAULT_LEVEL_UNWRITTEN.join(', ')}; sanbox writes the volume without them\n`);
    }
    const result = await mkfs(dev, {
      slots,
      ...(req.blockSizeBytes !== undefined ? { blockSizeBytes: req.blockSizeBytes } : {}),
      ...(req.clusterSizeBytes !== undefined ? { clusterSizeBytes: req.clusterSizeBytes } : {}),
      ...(req.journal.sizeBytes !== undefined ? { journalSizeBytes: req.journal.sizeBytes } : {}),
      ...(req.journal.block64 !== undefined ? { journal64: req.journal.block64 } : {}),
      ...(req.fsType !== undefined ? { fsType: req.fsType } : {}),
      features: req.features,
      label: o.label,
      ...(o.clusterStack === 'o2cb' ? { clusterStack: 'o2cb' as const } : {}),
      ...(o.clusterName !== undefined ? { clusterName: o.clusterName } : {}),
      force: o.force,
      ...(o.json || o.quiet ? {} : { onProgress: progressReporter() }),
    });
    if (o.json) printJson(result);
    else if (!o.quiet) {
      process.stdout.write(`Formatted ${target} as ocfs2: ${slots} slots, block ${result.blockSizeBytes}, cluster ${result.clusterSizeBytes}, journal ${formatSize(result.journalSizeBytes)} per slot.\n`);
      process.stdout.write(`UUID ${result.uuid}, ${result.clusterCount} clusters, ${result.backupSuperblocks.length} backup superblock(s).\n`);
    }
  } finally {
    await dev.close();
  }
}

export async function fsinfo(target: string, o: { files: boolean; devices?: string; json: boolean }): Promise<void> {
  await withVolume(target, o.devices, async (vol) => {
    const sb = vol.sb;
    const files = o.files ? await systemFiles(vol) : undefined;
    const g = vol.geometry;
    const info = {
      label: sb.label,
      uuid: uuidHex(sb.uuid),
      revision: `${sb.majorRev}.${sb.minorRev}`,
      mountCount: sb.mntCount,
      maxMountCount: sb.maxMntCount,
      state: sb.state,
      errors: sb.errors,
      checkInterval: sb.checkInterval,
      lastCheck: Number(sb.lastCheck),
      creatorOs: sb.creatorOs,
      featureCompat: sb.featureCompat,
      featureCompatNames: featureNames(sb.featureCompat, COMPAT_NAMES),
      featureIncompat: sb.featureIncompat,
      featureIncompatNames: featureNames(sb.featureIncompat, INCOMPAT_NAMES),
      featureRoCompat: sb.featureRoCompat,
      featureRoCompatNames: featureNames(sb.featureRoCompat, RO_COMPAT_NAMES),
      tunefsFlag: sb.tunefsFlag,
      rootBlkno: sb.rootBlkno,
      systemDirBlkno: sb.systemDirBlkno,
      firstClusterGroupBlkno: sb.firstClusterGroup,
      blockSizeBits: sb.blockSizeBits,
      clusterSizeBits: sb.clusterSizeBits,
      blockSizeBytes: g.blockSizeBytes,
      clusterSizeBytes: g.clusterSizeBytes,
      maxSlots: sb.maxSlots,
      xattrInlineSize: sb.xattrInlineSize,
      uuidHash: sb.uuidHash,
      dxSeeds: sb.dxSeed,
      clusterStack: hasClusterInfo(sb) ? sb.clusterStack : '',
      clusterName: hasClusterInfo(sb) ? sb.clusterName : '',
      clusterFlags: hasClusterInfo(sb) ? sb.clusterStackFlags : 0,
      generation: sb.inode.generation,
      fsGeneration: sb.inode.fsGeneration,
      clusters: sb.inode.clusters,
      volumeSizeBytes: g.volumeSizeBytes,
    };
    if (o.json) {
      printJson(files ? { ...info, systemFiles: files } : info);
      return;
    }
    const hex = (v: number): string => `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
    printFields([
      ['Label', info.label],
      ['UUID', info.uuid],
      ['Revision', info.revision],
      ['Mount Count', info.mountCount],
      ['Max Mount Count', info.maxMountCount],
      ['State', info.state],
      ['Errors', info.errors],
      ['Check Interval', info.checkInterval],
      ['Last Check', new Date(info.lastCheck * 1000).toUTCString()],
      ['Creator OS', info.creatorOs],
      ['Feature Compat', `${info.featureCompat} ${info.featureCompatNames.join(' ')}`],
      ['Feature Incompat', `${info.featureIncompat} ${info.featureIncompatNames.join(' ')}`],
      ['Tunefs Incomplete', info.tunefsFlag],
      ['Feature RO compat', `${info.featureRoCompat} ${info.featureRoCompatNames.join(' ')}`],
      ['Root Blknum', info.rootBlkno],
      ['System Dir Blknum', info.systemDirBlkno],
      ['First Cluster Group Blknum', info.firstClusterGroupBlkno],
      ['Block Size Bits', info.blockSizeBits],
      ['Cluster Size Bits', info.clusterSizeBits],
      ['Block Size', info.blockSizeBytes],
      ['Cluster Size', info.clusterSizeBytes],
      ['Max Node Slots', info.maxSlots],
      ['Extended Attributes Inline Size', info.xattrInlineSize],
      ['Hash', `${info.uuidHash} (${hex(info.uuidHash)})`],
      ['DX Seeds', `${info.dxSeeds.join(' ')} (${info.dxSeeds.map(hex).join(' ')})`],
      ['Cluster stack', info.clusterStack || 'classic o2cb'],
      ['Cluster name', info.clusterName],
      ['Cluster flags', info.clusterFlags],
      ['Generation', `${info.generation} (${hex(info.generation)})`],
      ['FS Generation', `${info.fsGeneration} (${hex(info.fsGeneration)})`],
      ['Clusters', info.clusters],
      ['Volume Size', sizeField(info.volumeSizeBytes)],
    ]);
    if (files) {
      process.stdout.write('\n');
      printTable(files, [
        { header: 'Name', value: (f) => f.name },
        { header: 'Inode', value: (f) => f.inode, align: 'right' },
        { header: 'Flags', value: (f) => f.flags.join(',') },
        { header: 'Size', value: (f) => f.sizeBytes, align: 'right' },
        { header: 'Clusters', value: (f) => f.clusters, align: 'right' },
        { header: 'Extents (blkno+clusters)', value: (f) => (f.inline ? 'inline' : f.extents.map((e) => `${e.blkno}+${e.clusters}`).join(' ')) },
      ]);
    }
  });
}

export async function slotmap(target: string, o: { all: boolean; devices?: string; json: boolean }): Promise<void> {
  await withVolume(target, o.devices, async (vol) => {
    const map = await readSlotMap(vol);
    const rows = o.all ? map.slots : map.slots.filter((s) => s.nodeNum !== undefined);
    if (o.json) {
      printJson({ extended: map.extended, maxSlots: map.maxSlots, slots: rows.map((s) => ({ slot: s.slot, node: s.nodeNum ?? null })) });
      return;
    }
    printTable(rows, [
      { header: 'Slot#', value: (r) => r.slot, align: 'right' },
      { header: 'Node#', value: (r) => (r.nodeNum === undefined ? '-' : r.nodeNum), align: 'right' },
    ]);
  });
}

export async function hb(target: string, o: { devices?: string; json: boolean }): Promise<void> {
  await withVolume(target, o.devices, async (vol) => {
    const hb = await readHeartbeat(vol);
    if (o.json) {
      printJson({
        region: hb.region,
        slots: hb.slots.map((s) => ({ slot: s.slot, node: s.nodeId, seq: s.seq, generation: s.generation, checksum: s.cksumStored, checksumValid: s.cksumValid, deadMs: s.deadMs, offsetBytes: s.offsetBytes })),
      });
    } else {
      printTable(hb.slots, [
        { header: 'Slot', value: (r) => r.slot, align: 'right' },
        { header: 'Node', value: (r) => r.nodeId, align: 'right' },
        { header: 'Seq', value: (r) => hex64(r.seq) },
        { header: 'Generation', value: (r) => hex64(r.generation) },
        { header: 'Checksum', value: (r) => hex32(r.cksumStored) },
        { header: 'DeadMs', value: (r) => r.deadMs, align: 'right' },
        { header: 'Crc', value: (r) => (r.cksumValid ? 'ok' : 'BAD') },
      ]);
    }
    const bad = hb.slots.find((s) => !s.cksumValid);
    if (bad) {
      throw new FormatError(`${vol.dev.name}: heartbeat block of slot ${bad.slot} at offset ${bad.offsetBytes} has a bad checksum: stored 0x${hex32(bad.cksumStored)}, computed 0x${hex32(bad.cksumComputed)}`, { device: vol.dev.name, offsetBytes: bad.offsetBytes });
    }
  });
}

export async function logdump(target: string, slotText: string, o: { devices?: string; json: boolean }): Promise<void> {
  // Number('') and Number(' ') are 0: only digits are a slot number.
  const slot = /^\d+$/.test(slotText) ? Number(slotText) : NaN;
  if (!Number.isInteger(slot) || slot < 0) throw new UsageError(`slot must be a non-negative integer, not '${slotText}'`);
  await withVolume(target, o.devices, async (vol) => {
    const j = await readJournal(vol, slot);
    if (o.json) printJson(journalJson(j));
    else printJournal(j);
  });
}

function journalJson(j: JournalDump): unknown {
  const sb = j.superblock;
  return {
    slot: j.slot,
    inode: j.inodeBlkno,
    dirty: j.dirty,
    journalFlags: j.journalFlags,
    recoveryGeneration: j.recoveryGeneration,
    superblock: {
      blockType: sb.blockType, blockSize: sb.blockSize, maxLen: sb.maxLen, first: sb.first, sequence: sb.sequence, start: sb.start, errno: sb.errno,
      featureCompat: sb.featureCompat, featureIncompat: sb.featureIncompat, featureRoCompat: sb.featureRoCompat,
      uuid: uuidHex(sb.uuid), nrUsers: sb.nrUsers, dynSuper: sb.dynSuper, maxTransaction: sb.maxTransaction, maxTransData: sb.maxTransData,
    },
    scan: j.scan,
    blocks: j.entries.map((e) => {
      switch (e.kind) {
        case 'superblock': return { block: e.block, type: 'superblock' };
        case 'descriptor': return { block: e.block, type: 'descriptor', sequence: e.sequence, tags: e.descriptor.tags.map((t) => ({ blocknr: t.blocknr, flags: t.flags, uuid: t.uuid ? uuidHex(t.uuid) : undefined })) };
        case 'commit': return { block: e.block, type: 'commit', sequence: e.sequence, commitSec: e.commit.commitSec, commitNsec: e.commit.commitNsec };
        case 'revoke': return { block: e.block, type: 'revoke', sequence: e.sequence, count: e.revoke.count, blocks: e.revoke.blocks };
        case 'other': return { block: e.block, type: 'unknown', sequence: e.sequence, blockType: e.blockType };
        case 'data': return { block: e.block, lastBlock: e.lastBlock, type: 'data' };
      }
    }),
  };
}

function printJournal(j: JournalDump): void {
  const sb = j.superblock;
  const w = (s: string): boolean => process.stdout.write(s + '\n');
  w(`Journal: slot ${j.slot}, inode ${j.inodeBlkno}, Journal Flags: ${j.dirty ? 'Dirty' : ''}, Recovery Generation: ${j.recoveryGeneration}`);
  for (const e of j.entries) {
    switch (e.kind) {
      case 'superblock':
        w(`Block 0: Journal Superblock`);
        w(`  Seq: 0   Type: ${sb.blockType} (${jbd2BlockTypeName(sb.blockType)})`);
        w(`  Blocksize: ${sb.blockSize}   Total Blocks: ${sb.maxLen}   First Block: ${sb.first}`);
        w(`  First Commit ID: ${sb.sequence}   Start Log Blknum: ${sb.start}`);
        w(`  Error: ${sb.errno}`);
        w(`  Feature Compat: ${sb.featureCompat} ${jbd2CompatNames(sb.featureCompat).join(' ')}`);
        w(`  Feature Incompat: ${sb.featureIncompat} ${jbd2IncompatNames(sb.featureIncompat).join(' ')}`);
        w(`  Feature RO compat: ${sb.featureRoCompat}`);
        w(`  Journal UUID: ${uuidHex(sb.uuid)}`);
        w(`  FS Share Cnt: ${sb.nrUsers}   Dynamic Superblk Blknum: ${sb.dynSuper}`);
        w(`  Per Txn Block Limit    Journal: ${sb.maxTransaction}    Data: ${sb.maxTransData}`);
        break;
      case 'descriptor':
        w(`Block ${e.block}: Journal Descriptor`);
        w(`  Seq: ${e.sequence}   Type: ${Jbd2BlockType.DESCRIPTOR} (${jbd2BlockTypeName(Jbd2BlockType.DESCRIPTOR)})`);
        w(`  No. Blocknum        Flags`);
        e.descriptor.tags.forEach((t, i) => {
          w(`  ${String(i).padStart(2)}. ${String(t.blocknr).padEnd(16)}${tagFlagNames(t.flags).join(' ') || 'none'}`);
          if (t.uuid) w(`  UUID: ${uuidHex(t.uuid)}`);
        });
        break;
      case 'commit':
        w(`Block ${e.block}: Journal Commit Block`);
        w(`  Seq: ${e.sequence}   Type: ${Jbd2BlockType.COMMIT} (${jbd2BlockTypeName(Jbd2BlockType.COMMIT)})`);
        break;
      case 'revoke':
        w(`Block ${e.block}: Journal Revoke Block`);
        w(`  Seq: ${e.sequence}   Type: ${Jbd2BlockType.REVOKE} (${jbd2BlockTypeName(Jbd2BlockType.REVOKE)})`);
        w(`  r_count: ${e.revoke.count}`);
        e.revoke.blocks.forEach((b, i) => w(`  revoke[${i}]: ${b}`));
        break;
      case 'other':
        w(`Block ${e.block}: Unknown block type ${e.blockType}, Seq: ${e.sequence}`);
        break;
      case 'data':
        w(e.block === e.lastBlock ? `Block ${e.block}: Unknown -- Probably Data` : `Block ${e.block} to ${e.lastBlock}: Unknown -- Probably Data`);
        break;
    }
  }
  const s = j.scan;
  if (!s.needsRecovery) w('Replay scan: log is empty (s_start 0), nothing to replay');
  else {
    const ids = s.transactions.map((x) => x.sequence);
    w(`Replay scan (kernel rules) from block ${s.startBlock}, sequence ${s.startSequence}: ${ids.length} committed transaction(s)${ids.length ? ` ${ids[0]}..${ids[ids.length - 1]}` : ''}, next ID ${s.endSequence}; stopped at block ${s.stopBlock}: ${s.stopReason}`);
    if (!j.dirty) w('  (Journal Flags not Dirty: the kernel wipes this log at mount instead of replaying it)');
  }
}
