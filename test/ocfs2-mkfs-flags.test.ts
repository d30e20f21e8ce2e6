// `sanbox mkfs` with mkfs.ocfs2's own command line: the same arguments given to the real
// mkfs.ocfs2 and to sanbox give the same geometry by `debugfs.ocfs2 -R stats` and
// `stat //journal:0000` — block and cluster size, slots, journal size and width, label, cluster
// stack and name, and the feature flags sanbox writes (the rest of mkfs.ocfs2's default level is
// named, not dropped silently) — and fsck.ocfs2 passes sanbox's. Features sanbox cannot write are
// refused by name with exit 2 before anything is written.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { FeatureCompat, FeatureIncompat, FeatureRoCompat } from '../src/format/ocfs2/constants.js';
import { debugfs, fsckOk, hasTool, parseLogdump, parseStats, realMkfs } from './helpers/ocfs2-oracle.js';
import { runSanbox, tempDir } from './helpers/tmp.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/** The superblock bits sanbox can write; the others are compared separately. */
const INCOMPAT_SANBOX = FeatureIncompat.SPARSE_ALLOC | FeatureIncompat.INLINE_DATA | FeatureIncompat.EXTENDED_SLOT_MAP | FeatureIncompat.CLUSTERINFO | FeatureIncompat.LOCAL_MOUNT;
/** What mkfs.ocfs2's default level sets beyond that: xattr, indexed-dirs, refcount, discontig-bg, append-dio. */
const INCOMPAT_DEFAULT_UNWRITTEN = FeatureIncompat.XATTR | FeatureIncompat.INDEXED_DIRS | FeatureIncompat.REFCOUNT_TREE | FeatureIncompat.DISCONTIG_BG | FeatureIncompat.APPEND_DIO;

interface Case {
  sizeBytes: number;
  args: string[];
  /** mkfs.ocfs2's default feature level: it also sets INCOMPAT_DEFAULT_UNWRITTEN. */
  defaultLevel: boolean;
}

// Explicit and default geometries: every block size, cluster sizes 4K to 128K, the -T types'
// defaults, -M local, max-compat (old slot map), feature lists, a 64-bit journal, a cluster stack.
const CASES: Case[] = [
  { sizeBytes: GiB, args: ['-N', '4', '-L', 'g1', '--cluster-stack=o2cb', '--cluster-name=demo'], defaultLevel: true },
  { sizeBytes: 300 * MiB, args: ['-b', '1K', '-C', '8K', '-N', '3', '-J', 'size=8M', '-L', 'g2', '--fs-feature-level=max-compat'], defaultLevel: false },
  { sizeBytes: 256 * MiB, args: ['-T', 'mail', '-L', 'g3'], defaultLevel: true },
  { sizeBytes: 3 * GiB, args: ['-T', 'datafiles', '-N', '2', '-L', 'g4'], defaultLevel: true },
  { sizeBytes: 600 * MiB, args: ['-M', 'local', '-L', 'g5', '--fs-features=nobackup-super,noinline-data'], defaultLevel: true },
  { sizeBytes: 512 * MiB, args: ['-b', '4096', '-C', '64K', '--node-slots', '2', '-J', 'size=16M,block64', '--fs-feature-level=max-compat', '--fs-features=sparse,unwritten', '--label', 'g6'], defaultLevel: false },
  { sizeBytes: 2 * GiB, args: ['-b', '512', '-N', '5', '--fs-features=nounwritten', '-L', 'g7'], defaultLevel: true },
];

interface Geometry {
  blockSizeBits: string;
  clusterSizeBits: string;
  slots: string;
  clusters: string;
  label: string;
  stack: string;
  name: string;
  compat: number;
  incompat: number;
  roCompat: number;
  journalBytes: string;
  journalIncompat: string;
}

async function geometry(img: string): Promise<Geometry> {
  const st = parseStats(await debugfs(img, 'stats'));
  const num = (k: string): number => Number((st.get(k) ?? 'NaN').split(/\s+/)[0]);
  const journal = await debugfs(img, 'stat //journal:0000');
  const log = parseLogdump(await debugfs(img, 'logdump 0'));
  return {
    blockSizeBits: st.get('Block Size Bits') ?? '?', clusterSizeBits: st.get('Cluster Size Bits') ?? '?', slots: st.get('Max Node Slots') ?? '?',
    clusters: st.get('Clusters') ?? '?', label: st.get('Label') ?? '?', stack: st.get('Cluster stack') ?? '?', name: st.get('Cluster name') ?? '?',
    compat: num('Feature Compat'), incompat: num('Feature Incompat'), roCompat: num('Feature RO compat'),
    journalBytes: /Size: (\d+)/.exec(journal)?.[1] ?? '?',
    journalIncompat: log.sb.get('Feature Incompat') ?? '?',
  };
}

function sparse(file: string, sizeBytes: number): void {
  fs.writeFileSync(file, '');
  fs.truncateSync(file, sizeBytes);
}

for (const c of CASES) {
  test(`mkfs ${c.args.join(' ')} on ${c.sizeBytes / MiB} MiB: the same geometry as mkfs.ocfs2`, async (t) => {
    for (const tool of ['mkfs.ocfs2', 'fsck.ocfs2', 'debugfs.ocfs2']) if (!hasTool(tool)) t.fail(`${tool} is not installed: this interop test cannot run`);
    const dir = tempDir(t);
    const ours = path.join(dir, 'ours.img');
    const real = path.join(dir, 'real.img');
    sparse(ours, c.sizeBytes);
    const r = await runSanbox(t, ['mkfs', ...c.args, ours], { timeoutMs: 90_000 });
    t.is(r.code, 0, r.stderr);
    await realMkfs(real, c.sizeBytes, c.args);
    const [a, b] = [await geometry(ours), await geometry(real)];
    t.not(b.blockSizeBits, '?', 'the real mkfs.ocfs2 made a volume');
    t.deepEqual(
      { ...a, incompat: a.incompat & INCOMPAT_SANBOX },
      { ...b, incompat: b.incompat & INCOMPAT_SANBOX },
    );
    t.is(a.incompat & ~INCOMPAT_SANBOX, 0, 'sanbox sets only the incompat bits it can write');
    t.is(b.incompat & ~INCOMPAT_SANBOX, c.defaultLevel ? INCOMPAT_DEFAULT_UNWRITTEN : 0, 'what the real tool set beyond that is exactly what sanbox names as left out');
    t.true((a.compat & FeatureCompat.JBD2_SB) !== 0 && (a.roCompat & ~FeatureRoCompat.UNWRITTEN) === 0);
    const fsck = await fsckOk(ours);
    t.true(fsck.ok, `fsck.ocfs2 -fn:\n${fsck.out}`);
  });
}

test('mkfs refuses features it cannot write by name, with exit 2 (1 for a device too small for -T) and nothing written', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'v.img');
  sparse(img, GiB);
  const cases: [string[], RegExp, number?][] = [
    [['--fs-features=xattr'], /^sanbox: sanbox cannot write feature xattr$/m],
    [['--fs-features=sparse,metaecc,refcount'], /sanbox cannot write features metaecc, refcount$/m],
    [['--fs-feature-level=max-features'], /max-features needs .*metaecc.*which sanbox cannot write/],
    [['--fs-features=bogus'], /unknown feature 'bogus'/],
    [['--fs-features=nosparse,unwritten'], /unwritten needs sparse/],
    [['-T', 'datafiles'], /-T datafiles needs a device of at least 2 GiB/, 1],
    [['-T', 'news'], /-T must be one of mail, datafiles, vmstore/],
    [['-M', 'local', '--cluster-stack=o2cb', '--cluster-name=x'], /local-mount volume .* takes no cluster stack/],
    [['--cluster-stack=pcmk', '--cluster-name=x'], /--cluster-stack must be o2cb/],
    [['-J', 'size=8M,stripe'], /unknown journal option 'stripe'/],
    [['-N', '4', '--slots', '5'], /disagree/],
  ];
  for (const [args, re, code] of cases) {
    const r = await runSanbox(t, ['mkfs', img, ...args]);
    t.is(r.code, code ?? 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, re, args.join(' '));
    t.is(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  }
  t.is(fs.statSync(img).blocks, 0, 'nothing was written');
});

test('mkfs --fs-feature-level=default says which of the level\'s features it leaves out', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'v.img');
  sparse(img, 256 * MiB);
  const r = await runSanbox(t, ['mkfs', '--fs-feature-level=default', '-L', 'x', img]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /default level also sets xattr, indexed-dirs, refcount, discontig-bg, append-dio; sanbox writes the volume without them/);
});
