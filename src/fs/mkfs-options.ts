// mkfs.ocfs2's command-line semantics as pure functions: the feature levels and `--fs-features`
// list, `-T mail|datafiles|vmstore`, `-M local|cluster`, and the defaults mkfs.ocfs2 picks from the
// device size when -b, -C, -N or -J size= are omitted. A script written for mkfs.ocfs2 gets the
// same geometry from `sanbox mkfs` (test/ocfs2-mkfs-flags.test.ts compares both by
// `debugfs.ocfs2 -R stats`).
//
// Every default below was observed by running mkfs.ocfs2 1.8.7 (Debian bookworm) on sparse images
// of the sizes named and reading `debugfs.ocfs2 -R stats` and `stat //journal:0000`:
//   block size   <512 MiB: 1K · <1 GiB: 2K · otherwise 4K (-T does not change it)
//   cluster size 4K, except -T datafiles|vmstore: 128K below 64 GiB, 256K below 96 GiB, 512K below
//                128 GiB, 1M from there; both refuse volumes under 2 GiB
//   node slots   <2 GiB: 2 · <10 GiB: 4 · <1 TiB: 8 · otherwise 16 (the man page's rule); 1 with -M local
//   journal      in fs blocks: volumes under 2^18 blocks 4096 (4M at 1K blocks: 128M and 200M);
//                else default volume/160 clamped to 16384..65536 blocks (256M at 4K blocks), mail
//                volume/8 clamped to 32768..65536, datafiles 8192 and vmstore 32768 (fixed)
//   features     default level: backup-super strict-journal-super | sparse inline-data
//                extended-slotmap xattr indexed-dirs refcount discontig-bg append-dio | unwritten;
//                max-compat: backup-super strict-journal-super only; a named cluster stack adds
//                clusterinfo and forces extended-slotmap; -M local adds local; nosparse drops unwritten.

import { SanboxError } from '../errors.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

/** The features sanbox mkfs can write; each maps to one superblock bit. */
export interface Ocfs2Features {
  backupSuper: boolean;
  sparse: boolean;
  unwritten: boolean;
  inlineData: boolean;
  extendedSlotMap: boolean;
  /** LOCAL_MOUNT: mounted without a cluster stack (-M local). */
  local: boolean;
}

/** mkfs.ocfs2's feature names that sanbox writes, by the field they set. */
const WRITABLE: Record<string, keyof Ocfs2Features> = {
  'backup-super': 'backupSuper',
  sparse: 'sparse',
  unwritten: 'unwritten',
  'inline-data': 'inlineData',
  'extended-slotmap': 'extendedSlotMap',
  local: 'local',
};
/** Features mkfs.ocfs2 knows that sanbox cannot write: named in the refusal, never dropped silently. */
const NOT_WRITABLE = ['xattr', 'indexed-dirs', 'refcount', 'discontig-bg', 'metaecc', 'usrquota', 'grpquota', 'append-dio'] as const;
/** Set implicitly when a cluster stack is named; accepted in a list, no field of its own. */
const CLUSTERINFO = 'clusterinfo';
/** Always written (JBD2_SB: the journal superblock is v2); sanbox cannot leave it out. */
const STRICT_JOURNAL_SUPER = 'strict-journal-super';

export type FeatureLevel = 'max-compat' | 'default' | 'max-features';
export const FEATURE_LEVELS: readonly FeatureLevel[] = ['max-compat', 'default', 'max-features'];
export type FsType = 'mail' | 'datafiles' | 'vmstore';
export const FS_TYPES: readonly FsType[] = ['mail', 'datafiles', 'vmstore'];

/** What mkfs.ocfs2's default level sets that sanbox cannot write (told to the user, not hidden). */
export const DEFAULT_LEVEL_UNWRITTEN = ['xattr', 'indexed-dirs', 'refcount', 'discontig-bg', 'append-dio'] as const;

export interface FeatureRequest {
  level?: FeatureLevel;
  /** `--fs-features` as given: comma-separated names, each optionally prefixed with "no". */
  list?: string;
  clusterStack?: string;
  local?: boolean;
}

function invalid(message: string): SanboxError {
  return new SanboxError('EINVAL', message);
}

/** The feature set for a feature level, a `--fs-features` list, the cluster stack and -M. */
export function resolveFeatures(req: FeatureRequest): Ocfs2Features {
  const level = req.level ?? 'default';
  if (level === 'max-features') {
    throw invalid(`--fs-feature-level=max-features needs ${[...NOT_WRITABLE].join(', ')}, which sanbox cannot write; use default or max-compat`);
  }
  const f: Ocfs2Features = level === 'max-compat'
    ? { backupSuper: true, sparse: false, unwritten: false, inlineData: false, extendedSlotMap: false, local: false }
    : { backupSuper: true, sparse: true, unwritten: true, inlineData: true, extendedSlotMap: true, local: false };
  const refused: string[] = [];
  for (const raw of (req.list ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const on = !raw.startsWith('no');
    const name = on ? raw : raw.slice(2);
    const field = WRITABLE[name];
    if (field !== undefined) {
      f[field] = on;
      // mkfs.ocfs2: unwritten needs sparse; turning sparse off turns unwritten off.
      if (name === 'sparse' && !on) f.unwritten = false;
    } else if ((NOT_WRITABLE as readonly string[]).includes(name)) {
      if (on) refused.push(name);
    } else if (name === CLUSTERINFO) {
      if (on && req.clusterStack === undefined) throw invalid('--fs-features=clusterinfo needs --cluster-stack and --cluster-name (as mkfs.ocfs2 does)');
      if (!on && req.clusterStack !== undefined) throw invalid('--fs-features=noclusterinfo contradicts --cluster-stack');
    } else if (name === STRICT_JOURNAL_SUPER) {
      if (!on) refused.push(raw);
    } else {
      throw invalid(`unknown feature '${name}' in --fs-features (known: ${[...Object.keys(WRITABLE), CLUSTERINFO, STRICT_JOURNAL_SUPER, ...NOT_WRITABLE].join(', ')})`);
    }
  }
  if (refused.length > 0) throw invalid(`sanbox cannot write feature${refused.length > 1 ? 's' : ''} ${refused.join(', ')}`);
  if (f.unwritten && !f.sparse) throw invalid('feature unwritten needs sparse');
  if (req.local === true) f.local = true;
  if (f.local && req.clusterStack !== undefined) throw invalid('a local-mount volume (-M local) takes no cluster stack');
  // mkfs.ocfs2 forces the extended slot map whenever a cluster stack is named.
  if (req.clusterStack !== undefined) f.extendedSlotMap = true;
  return f;
}

/** The features sanbox writes when nothing is asked: mkfs.ocfs2's default level, less what sanbox cannot write. */
export function defaultFeatures(clusterStack?: string): Ocfs2Features {
  return resolveFeatures(clusterStack === undefined ? {} : { clusterStack });
}

/** -N default: "for volume size < 2G, it's 2, for 2G <= size < 10G, it's 4, for 10G <= size < 1T, it's 8, for other size, it's 16" (mkfs.ocfs2(8)). */
export function defaultSlots(sizeBytes: number, local = false): number {
  if (local) return 1;
  if (sizeBytes < 2 * GiB) return 2;
  if (sizeBytes < 10 * GiB) return 4;
  if (sizeBytes < TiB) return 8;
  return 16;
}

/** -b default (observed, see the header). */
export function defaultBlockSize(sizeBytes: number): number {
  if (sizeBytes < 512 * MiB) return KiB;
  if (sizeBytes < GiB) return 2 * KiB;
  return 4 * KiB;
}

/** -T datafiles and vmstore refuse volumes below this: "Selected file system type requires a device of at least 2 gigabytes". */
export const LARGE_FILE_TYPE_MIN_BYTES = 2 * GiB;

/** -C default (observed, see the header). */
export function defaultClusterSize(sizeBytes: number, fsType?: FsType): number {
  if (fsType !== 'datafiles' && fsType !== 'vmstore') return 4 * KiB;
  if (sizeBytes < LARGE_FILE_TYPE_MIN_BYTES) throw invalid(`-T ${fsType} needs a device of at least 2 GiB (as mkfs.ocfs2), not ${sizeBytes} bytes`);
  if (sizeBytes < 64 * GiB) return 128 * KiB;
  if (sizeBytes < 96 * GiB) return 256 * KiB;
  if (sizeBytes < 128 * GiB) return 512 * KiB;
  return MiB;
}

/** Journal size bounds in fs blocks (observed, see the header). */
const SMALL_VOLUME_BLOCKS = 1 << 18;
const JOURNAL_SMALL_VOLUME_BLOCKS = 4096;
const JOURNAL_DEFAULT_MIN_BLOCKS = 16384;
const JOURNAL_MAIL_MIN_BLOCKS = 32768;
const JOURNAL_MAX_BLOCKS = 65536;
/** Divisors of the volume's block count: default 1/160 of the volume, mail 1/8. */
const JOURNAL_DEFAULT_DIVISOR = 160;
const JOURNAL_MAIL_DIVISOR = 8;
const JOURNAL_DATAFILES_BLOCKS = 8192;
const JOURNAL_VMSTORE_BLOCKS = 32768;

/** -J size= default, in bytes (observed, see the header). */
export function defaultJournalSize(sizeBytes: number, blockSizeBytes: number, fsType?: FsType): number {
  const volumeBlocks = Math.floor(sizeBytes / blockSizeBytes);
  let blocks: number;
  // Only the default type was observed on small volumes; the other types are assumed to follow it.
  if (volumeBlocks < SMALL_VOLUME_BLOCKS) return JOURNAL_SMALL_VOLUME_BLOCKS * blockSizeBytes;
  switch (fsType) {
    case 'datafiles': blocks = JOURNAL_DATAFILES_BLOCKS; break;
    case 'vmstore': blocks = JOURNAL_VMSTORE_BLOCKS; break;
    case 'mail': blocks = Math.min(Math.max(Math.floor(volumeBlocks / JOURNAL_MAIL_DIVISOR), JOURNAL_MAIL_MIN_BLOCKS), JOURNAL_MAX_BLOCKS); break;
    default: blocks = Math.min(Math.max(Math.floor(volumeBlocks / JOURNAL_DEFAULT_DIVISOR), JOURNAL_DEFAULT_MIN_BLOCKS), JOURNAL_MAX_BLOCKS);
  }
  return blocks * blockSizeBytes;
}

export interface JournalOptions {
  sizeBytes?: number;
  /** block64 / noblock32 → true; block32 / noblock64 → false; absent → as the volume needs. */
  block64?: boolean;
}

/** `-J size=N,block64` → options; size parsed by the caller's size parser. */
export function parseJournalOptions(text: string, parseSize: (s: string) => number): JournalOptions {
  const o: JournalOptions = {};
  for (const part of text.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    if (key === 'size' && eq > 0) o.sizeBytes = parseSize(part.slice(eq + 1));
    else if (key === 'block64' || key === 'noblock32') o.block64 = true;
    else if (key === 'block32' || key === 'noblock64') o.block64 = false;
    else throw invalid(`unknown journal option '${part}' in -J (known: size=SIZE, block32, block64)`);
  }
  return o;
}
