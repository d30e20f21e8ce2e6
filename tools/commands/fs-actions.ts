// `sanbox ls | cat | recover`'s actions, loaded when one runs (tools/commands/fs.ts registers them).

import type { BlockDevice } from '../../src/disk/index.js';
import { UsageError } from '../../src/errors.js';
import { Ocfs2Volume } from '../../src/fs/ocfs2-volume.js';
import { checkReadableFeatures, listPath, lookupPath, readFileChunks, type ListEntry } from '../../src/fs/namespace.js';
import type { SlotRecovery } from '../../src/fs/recover.js';
import { openTarget } from '../../src/volume/resolve.js';
import { deviceList } from '../../src/volume/devices.js';
import { printJson, printTable } from '../output.js';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

async function withVolume<T>(dev: BlockDevice, fn: (vol: Ocfs2Volume) => Promise<T>): Promise<T> {
  try {
    return await fn(await Ocfs2Volume.open(dev));
  } finally {
    await dev.close();
  }
}

/** drwxr-xr-x from an ocfs2 i_mode. */
function modeString(mode: number): string {
  const type: Record<number, string> = { 0o040000: 'd', 0o120000: 'l', 0o020000: 'c', 0o060000: 'b', 0o010000: 'p', 0o140000: 's' };
  let s = type[mode & 0o170000] ?? '-';
  const rwx = 'rwxrwxrwx';
  for (let i = 0; i < 9; i++) s += mode & (1 << (8 - i)) ? rwx[i] : '-';
  return s;
}

/** debugfs.ocfs2's date column: " 5-Dec-2026 20:01" (UTC here; debugfs uses the local zone). */
function dateString(sec: bigint): string {
  const d = new Date(Number(sec) * 1000);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${String(d.getUTCDate()).padStart(2)}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

function printRecovery(r: SlotRecovery): void {
  if (!r.dirty) {
    const freed = r.slotCleared ? `; slot ${r.slot} still named node ${r.nodeNum}: freed in the slot map` : r.dryRun && r.nodeNum !== undefined ? `; slot ${r.slot} names node ${r.nodeNum}: would be freed [dry run: nothing written]` : ', nothing to recover';
    process.stdout.write(`slot ${r.slot}: journal clean${freed}\n`);
    return;
  }
  const rp = r.replay!;
  const node = r.nodeNum === undefined ? 'no node in the slot map' : `node ${r.nodeNum}`;
  const what = !rp.hadLog ? 'log empty' : rp.transactions.length === 0 ? 'no committed transaction in the log'
    : `replayed transactions ${rp.startSequence}..${rp.endSequence - 1} (${rp.transactions.length}), ${rp.blocksWritten} home blocks`;
  process.stdout.write(`slot ${r.slot} (${node}): ${what}; scan stopped: ${rp.stopReason}${r.dryRun ? ' [dry run: nothing written]' : ''}\n`);
  for (const tx of rp.transactions) {
    process.stdout.write(`  transaction ${tx.sequence}: ${tx.homeBlocks.length} block(s) ${tx.homeBlocks.join(' ')}${tx.revokedBlocks.length ? `; revoked: ${tx.revokedBlocks.join(' ')}` : ''}\n`);
  }
  const a = r.allocators;
  if (a?.localAlloc) process.stdout.write(`  local alloc: window of ${a.localAlloc.windowClusters} clusters at ${a.localAlloc.windowStartCluster}, ${a.localAlloc.usedClusters} used, ${a.localAlloc.freedClusters} returned to the global bitmap\n`);
  if (a && a.truncateLog.length) process.stdout.write(`  truncate log: ${a.truncateLog.length} record(s) replayed\n`);
  process.stdout.write(`  journal: s_start 0, s_sequence ${rp.nextSequence}, DIRTY cleared, recovery generation ${r.recoveryGenerationBefore} -> ${r.recoveryGenerationAfter}${r.slotCleared ? `; slot ${r.slot} freed in the slot map` : ''}\n`);
  if (r.orphans > 0 && r.dryRun) process.stdout.write(`  orphan directory: ${r.orphans} orphan inode(s) to free\n`);
  else if (r.orphans > 0) process.stdout.write(`  orphan directory: ${r.orphansFreed.length} of ${r.orphans} orphan inode(s) freed${r.orphansFreed.length ? ` (${r.orphansFreed.join(' ')})` : ''}\n`);
}

export async function ls(target: string, path: string, o: { devices?: string; json: boolean }): Promise<void> {
  const dev = await openTarget(target, { readOnly: true, devices: deviceList([], o.devices) });
  await withVolume(dev, async (vol) => {
    const rows = await listPath(vol, path);
    if (o.json) printJson(rows.map((r) => ({ ...r, modeString: modeString(r.mode) })));
    else printTable<ListEntry>(rows, [
      { header: 'Inode', value: (r) => r.inode, align: 'right' },
      { header: 'Mode', value: (r) => modeString(r.mode) },
      { header: 'Links', value: (r) => r.links, align: 'right' },
      { header: 'UID', value: (r) => r.uid, align: 'right' },
      { header: 'GID', value: (r) => r.gid, align: 'right' },
      { header: 'Size', value: (r) => r.sizeBytes.toString(), align: 'right' },
      { header: 'Modified', value: (r) => dateString(r.mtimeSec) },
      { header: 'Name', value: (r) => r.name },
    ]);
  });
}

export async function cat(target: string, path: string, o: { devices?: string }): Promise<void> {
  const dev = await openTarget(target, { readOnly: true, devices: deviceList([], o.devices) });
  await withVolume(dev, async (vol) => {
    const ino = await lookupPath(vol, path);
    for await (const chunk of readFileChunks(vol, ino)) {
      if (!process.stdout.write(chunk)) await new Promise((r) => process.stdout.once('drain', r));
    }
  });
}

export async function recover(target: string, o: { slot?: string; observeMs: string; dryRun: boolean; devices?: string; json: boolean }): Promise<void> {
  // Decimal digits only: Number('') is 0, and Number('0x1') or Number('1e0') would pass too.
  const count = (text: string, flag: string): number => {
    if (!/^\d+$/.test(text)) throw new UsageError(`${flag} must be a non-negative integer, not '${text}'`);
    return Number(text);
  };
  const slot = o.slot === undefined ? undefined : count(o.slot, '--slot');
  const observeMs = count(o.observeMs, '--observe-ms');
  // Journal replay and recovery are loaded here, not for ls and cat.
  const { recoverVolume } = await import('../../src/fs/recover.js');
  // Exclusive in-use guard: no sanbox process may have the volume open while it is recovered.
  const dev = await openTarget(target, { devices: deviceList([], o.devices), guard: o.dryRun ? 'shared' : 'exclusive', readOnly: o.dryRun });
  await withVolume(dev, async (vol) => {
    // The same features stop recovery: a volume mid-resize/tunefs or a heartbeat device is no file system to replay into.
    checkReadableFeatures(vol);
    const results = await recoverVolume(vol, { ...(slot !== undefined ? { slot } : {}), observeMs, dryRun: o.dryRun, orphans: 'offline' });
    if (o.json) printJson(results);
    else for (const r of results) printRecovery(r);
  });
}
