// Crash tests with separate processes (issue 17 item 6; docs/journal.md "Crash tests"): a writer
// process (test/helpers/crash-child.ts) mounts a slot of a volume made by the REAL mkfs.ocfs2 and
// runs a script of file operations through the library a node uses, and SIGKILLs itself at an
// exact write or flush (SANBOX_CRASH_AT, src/disk/crash-point.ts): before, inside and after each
// commit, inside each checkpoint, in the mount and the umount. `sanbox recover` (a separate
// process) recovers the slot; then every acknowledged operation is there with its content, the
// one in flight whole or absent, no block outside those the operations change differs, and the
// REAL fsck.ocfs2 -fn is clean. Then the recoverer itself is killed at each of its I/Os, and a
// second recovery must end exactly as an uninterrupted one.

import fs from 'node:fs';
import test from 'ava';
import { CRASH_AT_ENV, CrashPointDevice, formatCrashPoint, parseCrashPoint, wrapCrashPoint } from '../src/disk/crash-point.js';
import type { BlockDevice } from '../src/disk/device.js';
import { DiskError } from '../src/errors.js';
import { CI_SCRIPT, describeOp } from './helpers/crash-script.js';
import { check, CRASH_BLOCK_BYTES, forEachLimit, killAll, makeTemplate, reference, runPoint, runRecoveryPoints, writerPoints, type PointResult } from './helpers/crash-harness.js';
import { tempDir } from './helpers/tmp.js';

/** Points run at once: each is three short processes and a fsck (two cores). */
const POINTS_IN_PARALLEL = 2;
/** The bar for CI. */
const CI_POINTS_MIN = 100;

test('SANBOX_CRASH_AT is parsed strictly, and a device without it is not wrapped', (t) => {
  t.deepEqual(parseCrashPoint('before-write:3'), { side: 'before', op: 'write', index: 3 });
  t.deepEqual(parseCrashPoint('after-flush:12@v.img'), { side: 'after', op: 'flush', index: 12, device: 'v.img' });
  t.is(formatCrashPoint(parseCrashPoint('after-io:7@x')), 'after-io:7@x');
  for (const bad of ['', 'before-write', 'before-write:0', 'during-write:1', 'before-read:1', 'after-io:-1', 'after-io:1.5']) {
    const err = t.throws(() => parseCrashPoint(bad), undefined, bad);
    t.true(err instanceof DiskError);
    t.regex(err!.message, new RegExp(CRASH_AT_ENV));
  }
  const dev = { name: 'a.img' } as BlockDevice;
  t.is(wrapCrashPoint(dev, {}), dev, 'unset: the device itself');
  t.true(wrapCrashPoint(dev, { [CRASH_AT_ENV]: 'before-io:1' }) instanceof CrashPointDevice);
  t.throws(() => wrapCrashPoint(dev, { [CRASH_AT_ENV]: 'before-io' }), { instanceOf: DiskError });
});

test('kill -9 of a writer process at every I/O of a script of file operations, and of the recoverer at every I/O of its recovery: acknowledged operations whole, the one in flight whole or absent, no other block touched, fsck -fn clean', async (t) => {
  t.timeout(600_000);
  t.teardown(killAll);
  const tpl = await makeTemplate(tempDir(t));
  const ref = await reference(tpl, CI_SCRIPT);
  const templateBytes = fs.readFileSync(tpl.img);
  t.log(`script: ${CI_SCRIPT.map(describeOp).join('; ')}`);
  t.log(`${ref.ios.length} I/Os (${ref.ios.filter((io) => io.kind === 'flush').length} flushes), ${ref.allowed.size} blocks the operations and recovery may change`);

  // The checks can fail: the finished reference image passes them; the same image taken for a
  // crash after 2 acknowledgements, or with one block outside the allowed set changed, does not.
  t.deepEqual(await check(ref, ref.img, CI_SCRIPT.length, true, templateBytes), [], 'the reference run passes the checks');
  t.regex((await check(ref, ref.img, 2, false, templateBytes)).join(' '), /tree and allocators after 2 acknowledged operation\(s\) are neither state 2 nor state 3/);
  const outside = [...Array(templateBytes.length / CRASH_BLOCK_BYTES).keys()].reverse().find((b) => !ref.allowed.has(b))!;
  const fd = fs.openSync(ref.img, 'r+');
  fs.writeSync(fd, Buffer.alloc(CRASH_BLOCK_BYTES, 0x5a), 0, CRASH_BLOCK_BYTES, outside * CRASH_BLOCK_BYTES);
  fs.closeSync(fd);
  t.regex((await check(ref, ref.img, CI_SCRIPT.length, true, templateBytes)).join(' '), new RegExp(`blocks outside the allowed set changed: ${outside}`));

  const results: PointResult[] = [];
  const started = performance.now();
  await forEachLimit(writerPoints(ref), POINTS_IN_PARALLEL, async (p) => {
    results.push(await runPoint(tpl, ref, p, templateBytes));
  });
  const writerMs = performance.now() - started;
  // Inside a recovery: the writer killed right after the commit of the put with clusters (its log
  // holds a committed transaction not yet checkpointed), then the recoverer killed at each I/O.
  // Its flushes: data (ordered), log blocks, log start, commit, checkpoint, log emptied.
  const flushes = ref.ios.flatMap((io, i) => (io.op === 2 && io.kind === 'flush' ? [i] : []));
  t.is(flushes.length, 6, 'the put with clusters flushes data, log, log start, commit, checkpoint, log end');
  await runRecoveryPoints(tpl, ref, { side: 'after', op: 'io', index: flushes[3]! + 1 }, templateBytes, (r) => results.push(r));

  const killed = results.filter((r) => r.killed).length;
  const bad = results.filter((r) => r.violations.length > 0);
  for (const r of bad) t.log(`${r.what} (${r.acks} acknowledged): ${r.violations.join('; ')}`);
  t.log(`${results.length} crash points (${killed} killed a process), writer points in ${Math.round(writerMs)} ms, ${bad.length} with violations`);
  t.true(killed >= CI_POINTS_MIN, `${killed} points killed a process; the bar is ${CI_POINTS_MIN}`);
  t.deepEqual(bad.map((r) => r.what), [], 'crash points with violations');
  // The acknowledgements seen cover every prefix of the script.
  t.deepEqual([...new Set(results.map((r) => r.acks))].sort((a, b) => a - b), Array.from({ length: CI_SCRIPT.length + 1 }, (_, i) => i));
});
