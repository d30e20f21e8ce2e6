// One timing file: every timing value a node uses is derived in src/timing.ts from the
// preset's three inputs, recorded in the cluster image's config region (an older image without the
// record gets them derived), and shown by `cluster status`.

import test from 'ava';
import path from 'node:path';
import { FormatError } from '../src/errors.js';
import { decodeConfig, DERIVED_TIMING_MAX, encodeConfig, type ClusterConfig } from '../src/format/cluster-image.js';
import { DERIVED_TIMING_FIELDS, deriveTiming, presetTiming, recordedTiming, timingFromRecord, TIMING_PRESETS } from '../src/timing.js';
import { shadowingRule, type FaultRule } from '../src/disk/fault-device.js';
import { runToolWith } from './helpers/run-tool.js';
import { runSanbox, SANBOX_BIN, tempDir } from './helpers/tmp.js';

const config: ClusterConfig = {
  clusterName: 'tim',
  nodeCount: 3,
  intervalMs: 100,
  deadThreshold: 20,
  ioTimeoutMs: 500,
  timingPreset: 'local',
  runDir: '/tmp/x',
  nodeNames: ['a', 'b', 'c'],
};

test('the local preset derives the values the code used as constants before (no behaviour change), o2cb scales them', (t) => {
  const l = presetTiming('local');
  t.like(l, { deadMs: 2000, lockTimeoutMs: 10_000, lockPollMinMs: 1, lockPollMaxMs: 50, fenceRetryMsMax: 5000, reservationLockWaitMs: 5000, powerFencePollMs: 5, nbdIoTimeoutMs: 10_000, joinProbeMs: 300 });
  const o = presetTiming('o2cb');
  t.is(o.deadMs, 62_000);
  t.true(o.lockTimeoutMs > o.deadMs, 'a lock waiter outlasts a dead holder being declared dead');
  t.true(o.nbdIoTimeoutMs > o.selfFenceMs);
  t.true(DERIVED_TIMING_FIELDS.length <= DERIVED_TIMING_MAX, 'the record has room for every derived value');
});

test('derived timing is recorded in the config region; an image without the record derives it; recorded values win', (t) => {
  const local = deriveTiming(TIMING_PRESETS.local, 'local');
  const withRecord = decodeConfig(encodeConfig({ ...config, derivedTiming: recordedTiming(local) }));
  t.deepEqual(withRecord.derivedTiming, recordedTiming(local));
  t.deepEqual(timingFromRecord(TIMING_PRESETS.local, 'local', withRecord.derivedTiming ?? []), local);
  // An image written before the record: the values come from the inputs.
  const old = decodeConfig(encodeConfig(config));
  t.is(old.derivedTiming, undefined);
  t.deepEqual(timingFromRecord(TIMING_PRESETS.local, 'local', old.derivedTiming ?? []), local);
  // A cluster made by a sanbox that derived another lock timeout keeps it: every node agrees.
  const other = recordedTiming(local);
  other[DERIVED_TIMING_FIELDS.indexOf('lockTimeoutMs')] = 12_345;
  t.is(timingFromRecord(TIMING_PRESETS.local, 'local', other).lockTimeoutMs, 12_345);
  // A prefix (fewer fields recorded) keeps the rest derived.
  t.deepEqual(timingFromRecord(TIMING_PRESETS.local, 'local', recordedTiming(local).slice(0, 3)), local);
});

test('a recorded value that breaks the timing inequality, or a zero, is refused', (t) => {
  const rec = recordedTiming(presetTiming('local'));
  rec[DERIVED_TIMING_FIELDS.indexOf('selfFenceMs')] = 5000; // beyond the dead time
  t.throws(() => timingFromRecord(TIMING_PRESETS.local, 'local', rec), { message: /self-fence deadline/ });
  const buf = encodeConfig({ ...config, derivedTiming: recordedTiming(presetTiming('local')) });
  buf.writeUInt32LE(0, 0x174);
  t.throws(() => decodeConfig(buf), { instanceOf: FormatError, message: /checksum|derived timing value 0/ });
  t.throws(() => encodeConfig({ ...config, derivedTiming: [0] }), { instanceOf: FormatError });
  t.throws(() => encodeConfig({ ...config, derivedTiming: new Array(DERIVED_TIMING_MAX + 1).fill(1) }), { instanceOf: FormatError });
});

test('cluster status shows every timing value and quorum', async (t) => {
  const img = path.join(tempDir(t), 'c.img');
  t.is((await runSanbox(t, ['cluster', 'init', img, '--nodes', '3', '--name', 'tim', '--run-dir', `${img}.run`])).code, 0);
  const r = await runSanbox(t, ['cluster', 'status', img, '--json']);
  t.is(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { timing: Record<string, number>; quorum: { quorate: boolean; base: number[] } };
  for (const k of DERIVED_TIMING_FIELDS) t.is(s.timing[k], presetTiming('local')[k], k);
  t.deepEqual(s.quorum, { quorate: false, base: [], alive: [] });
  const text = await runSanbox(t, ['cluster', 'status', img]);
  t.regex(text.stdout, /Quorum: +NO \(0 of 0 nodes up\)/);
  t.regex(text.stdout, /Locks: +timeout 10000 ms, poll 1\.\.50 ms/);
});

test('fault rules: a later rule is shadowed by an earlier unlimited rule that covers its op, device and range', (t) => {
  const rules: FaultRule[] = [
    { id: 'a', action: 'eio', op: 'write', device: 'pv', offsetBytes: 0, lengthBytes: 4096 },
    { id: 'b', action: 'stall', op: 'write', device: 'pv-a', offsetBytes: 512, lengthBytes: 512 }, // inside a: shadowed
    { id: 'c', action: 'stall', op: 'read', device: 'pv-a', offsetBytes: 512, lengthBytes: 512 }, // other op
    { id: 'd', action: 'latency', op: 'any', afterOps: 3 }, // limited: shadows nothing
    { id: 'e', action: 'eio', op: 'write', offsetBytes: 8192, lengthBytes: 512 }, // outside a's range
    { id: 'f', action: 'eio', op: 'write', device: 'pv', offsetBytes: 1024 }, // open-ended: not covered by a
  ];
  t.deepEqual(
    rules.map((_, i) => shadowingRule(rules, i)?.id ?? null),
    [null, 'a', null, null, null, null],
  );
});

test('output piped into head ends quietly (EPIPE is not an error): cluster status --watch | head -1', async (t) => {
  const img = path.join(tempDir(t), 'c.img');
  t.is((await runSanbox(t, ['cluster', 'init', img, '--nodes', '2', '--name', 'pipe', '--run-dir', `${img}.run`])).code, 0);
  // --count bounds the run if EPIPE were ignored; head closes the pipe after the first line.
  const r = await runToolWith('bash', ['-c', `"${process.execPath}" "${SANBOX_BIN}" cluster status "${img}" --watch 10 --count 3000 | head -1; echo "status=\${PIPESTATUS[0]}"`], { timeoutMs: 30_000, maxBufferBytes: 1 << 20, noExitCode: -1 });
  t.regex(r.stdout, /^--- \S+ pipe\nstatus=0\n$/);
  t.is(r.stderr, '', 'no EPIPE stack trace');
});

test('cluster status --watch on a terminal redraws in place (cursor home + clear, like crm_mon); piped, it appends frames', async (t) => {
  const img = path.join(tempDir(t), 'c.img');
  t.is((await runSanbox(t, ['cluster', 'init', img, '--nodes', '2', '--name', 'tty', '--run-dir', `${img}.run`])).code, 0);
  // script(1) (util-linux) runs the command on a pseudo-terminal.
  const cmd = `"${process.execPath}" "${SANBOX_BIN}" cluster status "${img}" --watch 20 --count 3`;
  const tty = await runToolWith('script', ['-qec', cmd, '/dev/null'], { timeoutMs: 30_000, maxBufferBytes: 1 << 20, noExitCode: -1 });
  t.is(tty.code, 0, tty.stderr);
  t.is(tty.stdout.split('\x1b[H\x1b[2J').length - 1, 3, 'three frames, each drawn from the top of a cleared screen');
  t.regex(tty.stdout, /Quorum:/);
  const piped = await runSanbox(t, ['cluster', 'status', img, '--watch', '20', '--count', '3']);
  t.false(piped.stdout.includes('\x1b['), 'no escape sequences into a pipe');
  t.is(piped.stdout.split('\n').filter((l) => l.startsWith('--- ')).length, 3);
});
