// `npm run soak:journal`: the crash tests (test/journal-crash.test.ts, docs/journal.md "Crash
// tests") at scale. Rounds of a seeded random script of file operations (puts around the inline
// limit and beyond, replaces both ways, removals of files and empty directories, subdirectories);
// in each round the writer process is killed -9 before every I/O and after every flush of the
// script (mount and umount included), and `sanbox recover` is killed before and after each of its
// own I/Os while it recovers one committed-but-not-checkpointed transaction. Every point is checked
// (acknowledged operations whole, the one in flight whole or absent, no block outside the changed
// set, the allocators as the reference run left them, journal clean and slot free, the REAL
// fsck.ocfs2 -fn clean). Rounds run until --points
// processes were killed. Prints every violation and a summary; exits 1 if there was any.
//
// Usage: npm run soak:journal [-- --points 1000 --ops 10 --seed N --parallel 2]

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatCrashPoint } from '../src/disk/crash-point.js';
import { forEachLimit, killAll, makeTemplate, reference, runPoint, runRecoveryPoints, writerPoints, type PointResult } from './helpers/crash-harness.js';
import { describeOp, randomScript } from './helpers/crash-script.js';
import { prng } from './helpers/fuzz.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${name} must be a non-negative integer`);
  return v;
}

const POINTS_TARGET = arg('points', 1000);
const OPS_PER_ROUND = arg('ops', 10);
const SEED = arg('seed', Date.now() % 1_000_000);
const PARALLEL = Math.max(1, arg('parallel', 2));

async function main(): Promise<number> {
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanbox-soak-journal-'));
  const started = performance.now();
  process.stdout.write(`journal crash soak: ${OPS_PER_ROUND} operations per round, until ${POINTS_TARGET} killed processes; seed ${SEED} (replay: --seed ${SEED})\n`);
  const all: PointResult[] = [];
  try {
    const tpl = await makeTemplate(dir);
    const templateBytes = fs.readFileSync(tpl.img);
    const rand = prng(SEED);
    for (let round = 0; all.filter((r) => r.killed).length < POINTS_TARGET; round++) {
      const ops = randomScript(rand, OPS_PER_ROUND, SEED + round * 1000);
      const ref = await reference(tpl, ops, `reference-${round}`);
      const results: PointResult[] = [];
      await forEachLimit(writerPoints(ref, true), PARALLEL, async (p) => {
        results.push(await runPoint(tpl, ref, p, templateBytes));
      });
      // The recoverer killed inside the recovery of a random operation's committed transaction
      // (its flushes end: commit, checkpoint, log emptied).
      const op = Math.floor(rand() * ops.length);
      const flushes = ref.ios.flatMap((io, i) => (io.op === op && io.kind === 'flush' ? [i] : []));
      const commit = flushes.at(-3);
      if (commit !== undefined) await runRecoveryPoints(tpl, ref, { side: 'after', op: 'io', index: commit + 1 }, templateBytes, (r) => results.push(r), true);
      all.push(...results.map((r) => ({ ...r, what: `round ${round}: ${r.what}` })));
      const bad = results.filter((r) => r.violations.length > 0);
      process.stdout.write(`  round ${round}: ${ops.map(describeOp).join('; ')}\n`);
      process.stdout.write(`    ${ref.ios.length} I/Os, ${results.length} points (${results.filter((r) => r.killed).length} killed; recovery of op ${op}${commit === undefined ? ': none, it commits nothing' : ` from ${formatCrashPoint({ side: 'after', op: 'io', index: commit + 1 })}`}), ${bad.length} with violations; ${all.filter((r) => r.killed).length} killed in all\n`);
      for (const r of bad) process.stdout.write(`    VIOLATION ${r.what} (${r.acks} acknowledged): ${r.violations.join('; ')}\n`);
      fs.rmSync(path.join(dir, `reference-${round}.img`), { force: true });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const violations = all.filter((r) => r.violations.length > 0);
  process.stdout.write(`summary: seed ${SEED}, ${all.length} crash points, ${all.filter((r) => r.killed).length} killed a process (${all.filter((r) => r.what.includes('recoverer')).length} inside a recovery), ` +
    `${Math.round((performance.now() - started) / 1000)} s; violations: ${violations.length}\n`);
  return violations.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak:journal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    killAll();
    process.exit(1);
  },
);
