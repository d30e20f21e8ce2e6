// File operations through the slot journal (issue 17 item 2, first slice), with separate
// `sanbox node` processes mounted on a volume made by the REAL mkfs.ocfs2, driven by
// `sanbox ctl C N fs …`, judged by the REAL fsck.ocfs2 -fn and debugfs.ocfs2 (ls -l, cat, logdump):
// mkdir, put (create and replace, inline data), rm of a file and of an empty directory, get and
// ls through the node; two nodes putting into one directory at the same time lose no entry.

import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { clusterInit, isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { mkfs, spawnMounted } from './helpers/mounted-volume.js';
import { debugfs, fsckOk } from './helpers/ocfs2-oracle.js';
import { ownLockDir, runSanbox, tempDir } from './helpers/tmp.js';

ownLockDir(test);

/** Files each node puts into /shared concurrently. */
const FILES_PER_NODE = 8;

async function ctl(t: ExecutionContext, img: string, node: number, ...args: string[]) {
  return runSanbox(t, ['ctl', img, String(node), ...args], { timeoutMs: 60_000 });
}

async function ok(t: ExecutionContext, img: string, node: number, ...args: string[]): Promise<string> {
  const r = await ctl(t, img, node, ...args);
  t.is(r.code, 0, `ctl ${node} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** `debugfs.ocfs2 -R "ls -l DIR"`: name → size, without '.' and '..'. */
async function debugfsLs(vol: string, dir: string): Promise<Map<string, number>> {
  const out = await debugfs(vol, `ls -l ${dir}`);
  const m = new Map<string, number>();
  for (const line of out.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 9) continue;
    const name = f.slice(8).join(' ');
    if (name !== '.' && name !== '..') m.set(name, Number(f[5]));
  }
  return m;
}

/** Text of about `bytes` bytes, different per `tag` and per line. */
const big = (tag: string, bytes: number): string => Array.from({ length: Math.ceil(bytes / 20) }, (_, i) => `${tag} ${i}`.padEnd(19, '.') + '\n').join('').slice(0, bytes);

/** The global bitmap's used clusters, as debugfs.ocfs2 reads them (fsck -n does not compare them with the files). */
async function bitmapUsed(vol: string): Promise<number> {
  const m = /Bitmap Total: \d+\s+Used: (\d+)/.exec(await debugfs(vol, 'stat //global_bitmap'));
  if (m === null) throw new Error('debugfs shows no global bitmap counts');
  return Number(m[1]);
}

/** Bytes a 4K-block inode holds inline (the rest of the block after the inline-data header). */
const INLINE_BYTES_MAX = 4096 - 0xc8;

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

test.serial('two mounted nodes mkdir, put, replace, rm and get through their slot journals; after umount fsck -fn is clean and debugfs shows exactly the files with their content; concurrent puts into one directory lose no entry', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'fcl']);
  const vol = await mkfs(dir, 'fcl', 2);
  const usedAtMkfs = await bitmapUsed(vol);
  const n1 = await spawnMounted(t, img, 1, vol, 0);
  const n2 = spawnNode(t, img, 2);
  await Promise.all([n1.waitLine(isEvent('up', 2), 20_000, 'node 2 up'), n2.waitLine(isEvent('up', 1), 20_000, 'node 1 up')]);
  await ok(t, img, 2, 'mount', vol);

  const local = (name: string, content: string): string => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, content);
    return p;
  };
  const expected = new Map<string, string>();
  // Node 1: a directory, a file in the root, replaced; a file removed again; an empty dir removed.
  t.regex(await ok(t, img, 1, 'fs', 'mkdir', vol, '/shared'), /^Node 1: mkdir \/shared \(inode \d+, journal transaction \d+\)\.\n$/);
  await ok(t, img, 1, 'fs', 'put', vol, '/a.txt', local('a1', 'first version\n'));
  await ok(t, img, 2, 'fs', 'put', vol, '/a.txt', local('a2', 'second version, by node 2\n'));
  expected.set('/a.txt', 'second version, by node 2\n');
  await ok(t, img, 1, 'fs', 'put', vol, '/gone.txt', local('g', 'not for long'));
  await ok(t, img, 2, 'fs', 'rm', vol, '/gone.txt');
  await ok(t, img, 2, 'fs', 'mkdir', vol, '/empty');
  await ok(t, img, 1, 'fs', 'rm', vol, '/empty');
  await ok(t, img, 2, 'fs', 'put', vol, '/empty.txt', local('e', ''));
  expected.set('/empty.txt', '');
  // Beyond the inline area: clusters of the global bitmap, data written before the commit.
  await ok(t, img, 1, 'fs', 'put', vol, '/big.txt', local('b1', big('first', 9000)));
  await ok(t, img, 2, 'fs', 'put', vol, '/big.txt', local('b2', big('second', 30_000)));
  expected.set('/big.txt', big('second', 30_000));
  await ok(t, img, 1, 'fs', 'put', vol, '/shrunk.txt', local('s1', big('large', 20_000)));
  await ok(t, img, 2, 'fs', 'put', vol, '/shrunk.txt', local('s2', 'inline again\n'));
  expected.set('/shrunk.txt', 'inline again\n');
  await ok(t, img, 1, 'fs', 'put', vol, '/grown.txt', local('g1', 'inline first\n'));
  await ok(t, img, 1, 'fs', 'put', vol, '/grown.txt', local('g2', big('grown', 12_345)));
  expected.set('/grown.txt', big('grown', 12_345));
  await ok(t, img, 2, 'fs', 'put', vol, '/big-gone.txt', local('bg', big('gone', 50_000)));
  await ok(t, img, 1, 'fs', 'rm', vol, '/big-gone.txt');

  // Both nodes put into /shared at the same time.
  const puts: Promise<string>[] = [];
  for (let i = 0; i < FILES_PER_NODE; i++) {
    for (const node of [1, 2]) {
      // Every other file is bigger than an inode's inline area: both nodes take clusters at once.
      const content = i % 2 === 0 ? `node ${node} file ${i} ${'x'.repeat(i * 37)}\n` : big(`n${node}-${i}`, 5000 * i);
      expected.set(`/shared/n${node}-${i}`, content);
      puts.push(ok(t, img, node, 'fs', 'put', vol, `/shared/n${node}-${i}`, local(`s${node}-${i}`, content)));
    }
  }
  await Promise.all(puts);

  // get and ls through the nodes (each node reads what the other wrote).
  const got = path.join(dir, 'got');
  await ok(t, img, 1, 'fs', 'get', vol, '/shared/n2-3', got);
  t.is(fs.readFileSync(got, 'utf8'), expected.get('/shared/n2-3')!);
  t.is(await ok(t, img, 2, 'fs', 'get', vol, '/a.txt'), expected.get('/a.txt')!);
  const ls = JSON.parse(await ok(t, img, 2, 'fs', 'ls', vol, '/shared', '--json')) as { name: string; sizeBytes: string }[];
  t.deepEqual(ls.map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort(), [...expected.keys()].filter((k) => k.startsWith('/shared/')).map((k) => k.slice(8)).sort());
  const missing = await ctl(t, img, 1, 'fs', 'get', vol, '/gone.txt');
  t.is(missing.code, 1);
  t.regex(missing.stderr, /\/gone\.txt: no such file or directory/);

  // Every change went through node 1's journal: debugfs.ocfs2 logdump shows its transactions' blocks.
  t.regex(await debugfs(vol, 'logdump 0'), /Commit Block/);

  await ok(t, img, 2, 'umount', vol);
  // Refusals: a volume the node has not mounted (one line, exit 1); a bad subcommand (usage, exit 2).
  const unmounted = await ctl(t, img, 2, 'fs', 'put', vol, '/late.txt', local('late', 'late'));
  t.is(unmounted.code, 1);
  t.regex(unmounted.stderr, /^sanbox: .*does not have it mounted\n$/);
  const bad = await ctl(t, img, 1, 'fs', 'chmod', vol, '/a.txt');
  t.is(bad.code, 2, bad.stderr);
  await ok(t, img, 1, 'umount', vol);
  n1.child.kill('SIGTERM');
  n2.child.kill('SIGTERM');
  await Promise.all([n1.exited, n2.exited]);

  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
  const root = await debugfsLs(vol, '/');
  t.deepEqual([...root.keys()].sort(), ['a.txt', 'big.txt', 'empty.txt', 'grown.txt', 'lost+found', 'shared', 'shrunk.txt']);
  const shared = await debugfsLs(vol, '/shared');
  t.is(shared.size, 2 * FILES_PER_NODE, 'no entry lost to the concurrent puts');
  // Exactly the clusters of the files that live are in use: replaced and removed files' were freed.
  const clustersOf = (c: string): number => (Buffer.byteLength(c) > INLINE_BYTES_MAX ? Math.ceil(Buffer.byteLength(c) / 4096) : 0);
  t.is(await bitmapUsed(vol), usedAtMkfs + [...expected.values()].reduce((n, c) => n + clustersOf(c), 0), 'global bitmap used clusters');
  for (const [p, content] of expected) {
    t.is(sha(await debugfs(vol, `cat ${p}`)), sha(content), `debugfs cat ${p}`);
    const size = (p.startsWith('/shared/') ? shared : root).get(path.basename(p));
    t.is(size, Buffer.byteLength(content), `debugfs ls -l size of ${p}`);
  }
});

test.serial('a node killed -9 while it puts files: after it is fenced the survivor recovers its slot; every put it acknowledged is there whole, none half, fsck -fn clean', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'kcl']);
  const vol = await mkfs(dir, 'kcl', 2);
  const n1 = await spawnMounted(t, img, 1, vol, 0);
  const n2 = await spawnMounted(t, img, 2, vol, 1);

  // Node 2 puts files one after another (inline and clustered in turn) until it is killed.
  const acked = new Map<string, string>();
  const tried = new Map<string, string>();
  let stop = false;
  const writer = (async () => {
    for (let i = 0; !stop; i++) {
      const name = `f${i}`;
      const content = i % 2 === 0 ? `inline ${i}\n` : big(`c${i}`, 6000 + 100 * i);
      tried.set(name, content);
      const p = path.join(dir, `k${i}`);
      fs.writeFileSync(p, content);
      const r = await ctl(t, img, 2, 'fs', 'put', vol, `/${name}`, p);
      if (r.code === 0) acked.set(name, content);
      else break;
    }
  })();
  await new Promise((r) => setTimeout(r, 2500 + Math.floor(Math.random() * 1000)));
  n2.child.kill('SIGKILL');
  stop = true;
  await writer;
  t.true(acked.size >= 2, `node 2 acknowledged ${acked.size} puts before it was killed`);
  await n1.waitLine((l) => /^recovered slot 1 of node 2: \d+ transactions/.test(l.msg ?? ''), 40_000, 'node 1 recovers slot 1');
  await ok(t, img, 1, 'umount', vol);
  n1.child.kill('SIGTERM');
  await n1.exited;

  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
  const root = await debugfsLs(vol, '/');
  for (const [name, content] of tried) {
    if (!root.has(name)) {
      t.false(acked.has(name), `acknowledged ${name} is missing`);
      continue;
    }
    t.is(sha(await debugfs(vol, `cat /${name}`)), sha(content), `${name} whole`);
  }
  t.log(`${acked.size} puts acknowledged, ${tried.size} tried, ${[...tried.keys()].filter((n) => root.has(n)).length} present`);
});
