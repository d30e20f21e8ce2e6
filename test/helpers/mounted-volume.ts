// Volumes for mount/recovery tests with node processes: made by the REAL mkfs.ocfs2, judged by
// the REAL debugfs.ocfs2 (slot map, journal flags).

import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { spawnNode, type NodeProc } from './heartbeat-nodes.js';
import { debugfs, realMkfs } from './ocfs2-oracle.js';

/** A node's mount: heartbeat region joined, superblock and journal locks, maybe a replay (generous under shared CPUs). */
const MOUNT_WAIT_MS = 20_000;

/** Features sanbox writes, as mkfs.ocfs2 names them (the max-compat level plus these). */
export const SANBOX_FEATURES = 'sparse,inline-data,extended-slotmap,unwritten';

/** A 64 MiB volume by the real mkfs.ocfs2 with `slots` slots, of cluster `cluster` on stack o2cb. */
export async function mkfs(dir: string, cluster: string, slots: number, features = `--fs-features=${SANBOX_FEATURES}`, name = 'v.img'): Promise<string> {
  const vol = path.join(dir, name);
  const level = features.startsWith('--fs-features') ? ['--fs-feature-level=max-compat'] : [];
  await realMkfs(vol, 64 * 1024 * 1024, ['-q', '-F', '-N', String(slots), '-b', '4096', '-C', '4096', '-L', 'mnt', '--cluster-stack=o2cb', `--cluster-name=${cluster}`, ...level, features]);
  return vol;
}

/** `debugfs.ocfs2 -R slotmap`: slot → node. */
export async function slotMap(vol: string): Promise<Map<number, number>> {
  const out = await debugfs(vol, 'slotmap');
  return new Map([...out.matchAll(/^\s+(\d+)\s+(\d+)\s*$/gm)].map((m) => [Number(m[1]), Number(m[2])]));
}

/** The journal inode of `slot` as `debugfs.ocfs2 -R stat` shows it: DIRTY flag and recovery generation. */
export async function journalState(vol: string, slot: number): Promise<{ dirty: boolean; recoveryGeneration: number }> {
  const out = await debugfs(vol, `stat //journal:${String(slot).padStart(4, '0')}`);
  const flags = /Journal Flags:(.*)/.exec(out);
  const gen = /Recovery Generation: (\d+)/.exec(out);
  if (flags === null || gen === null) throw new Error(`no journal flags or recovery generation in debugfs stat: ${out}`);
  return { dirty: /Dirty/.test(flags[1]!), recoveryGeneration: Number(gen[1]) };
}

export async function journalDirty(vol: string, slot: number): Promise<boolean> {
  return (await journalState(vol, slot)).dirty;
}

/** Starts `sanbox node` NODE with `--mount VOL` and waits until it reports the mount in `slot`. */
export async function spawnMounted(t: ExecutionContext, img: string, node: number, vol: string, slot: number): Promise<NodeProc> {
  const p = spawnNode(t, img, node, ['--mount', vol]);
  await p.waitLine((l) => new RegExp(`^mounted .* in slot ${slot}$`).test(l.msg ?? ''), MOUNT_WAIT_MS, `node ${node} mounted in slot ${slot}`);
  return p;
}
