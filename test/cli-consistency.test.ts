// The command line's consistency (issue 19 item 5): one argument style for images (positional, and
// `--cluster IMG` too where nodes use it), the same exit status for the same kind of error in every
// command, and numbers printed one way (generations as 16 hex digits, sizes as lvm2 prints them).
// Nodes run as separate OS processes on one cluster image.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { encodeO2hbBlock } from '../src/format/o2hb-block.js';
import { readClusterImage } from '../src/heartbeat/cluster-image.js';
import { EXIT_FAILURE, EXIT_FENCED, EXIT_USAGE } from '../tools/cli.js';
import { runCliInProcess } from './helpers/cli-inprocess.js';
import { clusterInit, isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { collect, exited, runSanbox, SANBOX_BIN, spawnChild, tempDir } from './helpers/tmp.js';

/** Both nodes see each other within this; the local preset beats every 100 ms (a loaded machine's slack included). */
const UP_TIMEOUT_MS = 10_000;
const HEX64 = /^[0-9a-f]{16}$/;

async function clusterImage(t: import('ava').ExecutionContext, nodes: number, name: string): Promise<string> {
  const img = path.join(tempDir(t), 'cluster.img');
  await clusterInit(t, [img, '--nodes', String(nodes), '--name', name]);
  return img;
}

async function json<T>(t: import('ava').ExecutionContext, args: string[]): Promise<T> {
  const r = await runSanbox(t, [...args, '--json']);
  t.is(r.code, 0, `sanbox ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

interface StatusSlots {
  slots: { node: number; name: string; state: string; generation: string | null }[];
}
interface CtlStatus {
  nodeId: number;
  generation: string;
  members: { nodeId: number; state: string; generation: string }[];
}

test('node, cluster status, dlm ls, ctl and lock take the image positionally or as --cluster, with the same result; generations are 16 hex digits', async (t) => {
  const img = await clusterImage(t, 2, 'cons');
  // Node 0 the old way (--cluster, as spawnNode starts it), node 1 with the image positional.
  const n0 = spawnNode(t, img, 0);
  const n1 = spawnChild(t, process.execPath, [SANBOX_BIN, 'node', img, '--node', '1']);
  const n1io = collect(n1);
  await n0.waitLine(isEvent('up', 1), UP_TIMEOUT_MS, 'node 1 (started with a positional image) up');

  // Node logs: the JSON events and the plain log lines carry 16-hex-digit generations.
  const up = n0.lines.find(isEvent('up', 1))!;
  t.regex(up.generation!, HEX64);
  const joined = n0.lines.find((l) => /joined cluster/.test(l.msg ?? ''))!;
  t.regex(joined.msg!, /generation [0-9a-f]{16},/);
  t.regex(n0.lines.find((l) => /node 1 up/.test(l.msg ?? ''))!.msg!, /\(generation [0-9a-f]{16}\)/);
  t.regex(n1io.out(), /node1: node 1 \(.*\) joined cluster 'cons': generation [0-9a-f]{16},/);

  // cluster status: the same slots (the heartbeat age and sequence move between two reads).
  const slotsOf = (s: StatusSlots) => s.slots.map(({ node, name, state, generation }) => ({ node, name, state, generation }));
  const s1 = slotsOf(await json<StatusSlots>(t, ['cluster', 'status', img]));
  const s2 = slotsOf(await json<StatusSlots>(t, ['cluster', 'status', '--cluster', img]));
  t.deepEqual(s1, s2);
  t.deepEqual(s1.map((s) => s.state), ['up', 'up']);
  for (const s of s1) t.regex(s.generation!, HEX64);
  const plain = await runSanbox(t, ['cluster', 'status', img]);
  t.regex(plain.stdout, new RegExp(s1[0]!.generation!));

  // ctl: IMAGE NODE COMMAND, --cluster IMAGE NODE COMMAND, and both naming the same image.
  const c1 = await json<CtlStatus>(t, ['ctl', img, '0', 'status']);
  const c2 = await json<CtlStatus>(t, ['ctl', '--cluster', img, '0', 'status']);
  const c3 = await json<CtlStatus>(t, ['ctl', '--cluster', img, img, '0', 'status']);
  for (const c of [c2, c3]) {
    t.is(c.generation, c1.generation);
    t.deepEqual(c.members, c1.members);
  }
  t.regex(c1.generation, HEX64);
  for (const m of c1.members) t.regex(m.generation, HEX64);
  t.is(c1.generation, s1[0]!.generation!);
  const ctlPlain = await runSanbox(t, ['ctl', img, '0', 'status']);
  t.regex(ctlPlain.stdout, new RegExp(`Generation:\\s+${c1.generation}`));

  // A lock held in node 0, then the lockspace listed both ways.
  t.is((await runSanbox(t, ['ctl', img, '0', 'lock', 'res-a'])).code, 0);
  const d1 = await json<unknown>(t, ['dlm', 'ls', img]);
  const d2 = await json<unknown>(t, ['dlm', 'ls', '--cluster', img]);
  t.deepEqual(d1, d2);
  const lock = (d1 as { resources: { resource: string; granted: { generation: string }[] }[] }).resources.find((r) => r.resource === 'res-a')!;
  t.is(lock.granted[0]!.generation, c1.generation);

  // lock: IMAGE RESOURCE -- CMD and --cluster IMAGE RESOURCE -- CMD (through node 1's control channel).
  for (const form of [[img], ['--cluster', img], ['--cluster', img, img]]) {
    const r = await runSanbox(t, ['lock', ...form, '--node', '1', 'res-b', '--', 'sh', '-c', 'echo held']);
    t.is(r.code, 0, `lock ${form.join(' ')}: ${r.stderr}`);
    t.is(r.stdout, 'held\n');
  }
  n1.kill('SIGTERM');
  await exited(n1, UP_TIMEOUT_MS);
});

test('an image given both positionally and as a different --cluster is a one-line usage error (exit 2) in every command that takes both', async (t) => {
  const dir = tempDir(t);
  const a = path.join(dir, 'a.img');
  const b = path.join(dir, 'b.img');
  const cases = [
    ['cluster', 'status', a, '--cluster', b],
    ['dlm', 'ls', a, '--cluster', b],
    ['node', a, '--cluster', b, '--node', '0'],
    ['ctl', '--cluster', b, a, '0', 'status'],
    ['lock', '--cluster', b, a, '--node', '0', 'res', '--', 'true'],
  ];
  for (const argv of cases) {
    const r = await runCliInProcess(argv);
    t.is(r.code, EXIT_USAGE, `${argv.join(' ')}: ${r.stderr}`);
    t.is(r.stderr, `sanbox: the cluster image is given twice, differently: '${a}' and --cluster '${b}'\n`, argv.join(' '));
    t.is(r.stdout, '');
  }
  for (const argv of [['cluster', 'status'], ['dlm', 'ls'], ['node', '--node', '0'], ['ctl', '0', 'status']]) {
    const r = await runCliInProcess(argv);
    t.is(r.code, EXIT_USAGE, `${argv.join(' ')}: ${r.stderr}`);
    t.is(r.stderr.split('\n').filter((l) => l !== '').length, 1, r.stderr);
  }
  t.false(fs.existsSync(a) || fs.existsSync(b), 'nothing was created');
});

test('exit statuses: usage 2, operational 1, lock timeout 1, not found 127, not executable 126, fenced 3', async (t) => {
  const dir = tempDir(t);
  // Usage: an unknown option (commander's) and a bad value (ours).
  t.is((await runCliInProcess(['disk', 'info', '--bogus'])).code, EXIT_USAGE);
  t.is((await runCliInProcess(['disk', 'create', path.join(dir, 'x.img'), '--size', '1m', '--sector-size', '1000'])).code, EXIT_USAGE);
  // Operational: no such image; an image of the wrong kind.
  t.is((await runCliInProcess(['disk', 'info', path.join(dir, 'missing.img')])).code, EXIT_FAILURE);
  const plainDisk = path.join(dir, 'plain.img');
  t.is((await runCliInProcess(['disk', 'create', plainDisk, '--size', '4m'])).code, 0);
  t.is((await runCliInProcess(['cluster', 'status', plainDisk])).code, EXIT_FAILURE);

  const img = await clusterImage(t, 2, 'codes');
  const node = spawnNode(t, img, 1);
  await node.waitLine((l) => /ready/.test(l.msg ?? ''), UP_TIMEOUT_MS, 'node 1 ready');
  // A lock that cannot be had: held in node 1, asked for with --noqueue through node 0 (lock timeout class).
  t.is((await runSanbox(t, ['ctl', img, '1', 'lock', 'busy'])).code, 0);
  const busy = await runSanbox(t, ['lock', img, '--node', '0', '--noqueue', 'busy', '--', 'true']);
  t.is(busy.code, EXIT_FAILURE, busy.stderr);
  // The command a lock runs: not found 127, not executable 126 (a shell's statuses).
  t.is((await runSanbox(t, ['lock', img, '--node', '1', 'r', '--', path.join(dir, 'no-such-command')])).code, 127);
  const notExec = path.join(dir, 'not-exec');
  fs.writeFileSync(notExec, '#!/bin/sh\n', { mode: 0o644 });
  t.is((await runSanbox(t, ['lock', img, '--node', '1', 'r', '--', notExec])).code, 126);

  // Fenced: someone else heartbeats in node 1's slot with another generation; the node fences itself.
  const info = await readClusterImage(img);
  const fd = fs.openSync(img, 'r+');
  try {
    const blk = encodeO2hbBlock({ seq: BigInt(Date.now()) + 1_000_000n, nodeId: 1, generation: 0x1234n, deadMs: 1500 }, 512);
    fs.writeSync(fd, blk, 0, 512, info.regions.get('heartbeat')!.payloadOffsetBytes + 512);
  } finally {
    fs.closeSync(fd);
  }
  t.is((await node.exited).code, EXIT_FENCED);
});

test('a node, slot or time count that is empty, not decimal or out of range is a one-line usage error (exit 2), not node or slot 0', async (t) => {
  const dir = tempDir(t);
  const img = await clusterImage(t, 2, 'numbers');
  for (const bad of ['', ' ', '0x1', '1e0', '-1', '300']) {
    const r = await runCliInProcess(['lock', img, '--node', bad, 'r', '--', 'true']);
    t.is(r.code, EXIT_USAGE, `lock --node '${bad}': ${r.stderr}`);
    t.is(r.stderr, `sanbox: --node takes a node number, not '${bad}' (0..254)\n`);
  }
  const vol = path.join(dir, 'none.img');
  for (const [flag, bad] of [['--slot', ''], ['--slot', '0x1'], ['--observe-ms', ''], ['--observe-ms', '1e3']] as const) {
    const r = await runCliInProcess(['recover', vol, flag, bad]);
    t.is(r.code, EXIT_USAGE, `recover ${flag} '${bad}': ${r.stderr}`);
    t.is(r.stderr, `sanbox: ${flag} must be a non-negative integer, not '${bad}'\n`);
  }
});

test('disk info prints sizes as lvm2 reports do (binary units, two decimals, "<" when rounded up, 0 bare); --json keeps bytes', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'd.img');
  // 1.5 GiB - 1 byte shows as "<1.50g", as lvm2 marks a rounded-up size; nothing is allocated yet.
  const sizeBytes = 1.5 * 2 ** 30 - 512;
  t.is((await runCliInProcess(['disk', 'create', img, '--size', `${sizeBytes}b`])).code, 0);
  const r = await runCliInProcess(['disk', 'info', img]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`Size:\\s+<1\\.50g \\(${sizeBytes} bytes\\)\\n`));
  t.regex(r.stdout, /Allocated:\s+0 \(0 bytes\)\n/);
  const j = JSON.parse((await runCliInProcess(['disk', 'info', img, '--json'])).stdout) as { sizeBytes: number; allocatedBytes: number };
  t.is(j.sizeBytes, sizeBytes);
  t.is(j.allocatedBytes, 0);
});
