// `sanbox lock` and `sanbox dlm ls` as separate processes on one cluster image: commands run under
// EX never overlap (each appends begin/end lines to a shared log), PR holders run together, a
// timeout and a NOQUEUE conflict exit 1 without running the command, `dlm ls` shows the holder.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { collect, exited, runSanbox, SANBOX_BIN, spawnChild, tempDir, waitFor } from './helpers/tmp.js';

async function cluster(t: import('ava').ExecutionContext, nodes: number): Promise<{ dir: string; img: string }> {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  const r = await runSanbox(t, ['cluster', 'init', img, '--nodes', String(nodes), '--name', 'clitest', '--run-dir', path.join(dir, 'run')]);
  t.is(r.code, 0, r.stderr);
  return { dir, img };
}

function parseLog(text: string): { node: string; ev: string; t: number }[] {
  return text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [node, ev, ts] = l.split(' ');
      return { node: node!, ev: ev!, t: Number(ts) };
    });
}

test('EX commands of 4 processes never overlap; PR commands do run together', async (t) => {
  const { dir, img } = await cluster(t, 4);
  const log = path.join(dir, 'log');
  // Each command appends "N begin <ns>", sleeps, appends "N end <ns>" (date +%s%N: one clock).
  const body = (n: number) => `echo "${n} begin $(date +%s%N)" >> ${log}; sleep 0.15; echo "${n} end $(date +%s%N)" >> ${log}`;
  const children = [0, 1, 2, 3].map((n) => spawnChild(t, process.execPath, [SANBOX_BIN, 'lock', '--cluster', img, '--node', String(n), '--timeout', '20s', 'shared-thing', '--', 'sh', '-c', body(n)]));
  const ios = children.map(collect);
  for (let i = 0; i < 4; i++) t.is((await exited(children[i]!, 40_000)).code, 0, ios[i]!.err());
  const evs = parseLog(fs.readFileSync(log, 'utf8')).sort((a, b) => a.t - b.t);
  t.is(evs.length, 8);
  for (let i = 0; i < 8; i += 2) {
    t.is(evs[i]!.ev, 'begin', `EX sections interleaved: ${JSON.stringify(evs)}`);
    t.is(evs[i + 1]!.ev, 'end');
    t.is(evs[i]!.node, evs[i + 1]!.node);
  }
  // PR: three holders must hold at once (they would serialize under EX). Each command marks itself
  // and waits (at most 15 s) until all three marks exist: only holders that share the lock can all
  // succeed, whatever the start-up skew of a loaded machine.
  const marks = path.join(dir, 'pr-marks');
  fs.mkdirSync(marks);
  const together = (n: number) => `touch ${marks}/${n}; i=0; while [ $(ls ${marks} | wc -l) -lt 3 ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; [ $(ls ${marks} | wc -l) -ge 3 ]`;
  const pr = [0, 1, 2].map((n) => spawnChild(t, process.execPath, [SANBOX_BIN, 'lock', '--cluster', img, '--node', String(n), '--mode', 'PR', '--timeout', '30s', 'shared-thing', '--', 'sh', '-c', together(n)]));
  for (const c of pr) t.is((await exited(c, 60_000)).code, 0, 'PR holders share the lock: all three held it at once');
});

test('timeout and --noqueue exit 1 without running the command; dlm ls shows the holder; the command status is passed through', async (t) => {
  const { dir, img } = await cluster(t, 3);
  const marker = path.join(dir, 'holding');
  const holder = spawnChild(t, process.execPath, [SANBOX_BIN, 'lock', '--cluster', img, '--node', '0', 'res', '--', 'sh', '-c', `touch ${marker}; while [ ! -e ${marker}.stop ]; do sleep 0.05; done`]);
  await waitFor(() => fs.existsSync(marker), 10_000, 'holder running');
  const ls = await runSanbox(t, ['dlm', 'ls', img]);
  t.is(ls.code, 0, ls.stderr);
  t.regex(ls.stdout, /res\s+0\s+1\s+granted\s+EX/);
  const json = JSON.parse((await runSanbox(t, ['dlm', 'ls', img, '--json'])).stdout) as { resources: { resource: string; granted: { node: number; granted: string }[] }[] };
  t.deepEqual(json.resources.map((r) => [r.resource, r.granted.map((g) => [g.node, g.granted])]), [['res', [[0, 'EX']]]]);

  const t0 = Date.now();
  const late = await runSanbox(t, ['lock', '--cluster', img, '--node', '1', '--timeout', '400ms', 'res', '--', 'sh', '-c', `echo ran > ${path.join(dir, 'ran')}`]);
  t.is(late.code, 1);
  t.regex(late.stderr, /timed out \(node 0 holds EX\)/);
  t.true(Date.now() - t0 < 15_000);
  const nq = await runSanbox(t, ['lock', '--cluster', img, '--node', '2', '-n', '--mode', 'CR', 'res', '--', 'sh', '-c', `echo ran > ${path.join(dir, 'ran')}`]);
  t.is(nq.code, 1);
  t.regex(nq.stderr, /would block/);
  t.false(fs.existsSync(path.join(dir, 'ran')));
  fs.writeFileSync(`${marker}.stop`, '');
  t.is((await exited(holder, 20_000)).code, 0);

  const status = await runSanbox(t, ['lock', '--cluster', img, '--node', '1', 'res', '--', 'sh', '-c', 'exit 7']);
  t.is(status.code, 7);
  const empty = await runSanbox(t, ['dlm', 'ls', img]);
  t.regex(empty.stdout, /no resources/);
  const bad = await runSanbox(t, ['lock', '--cluster', img, '--node', '1', '--mode', 'XX', 'res', '--', 'true']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--mode must be one of/);
});
