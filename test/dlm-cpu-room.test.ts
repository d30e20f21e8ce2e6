// The adaptive spin's view of the CPUs (src/dlm/cpu-room.ts): /proc/loadavg's runnable count.

import test from 'ava';
import os from 'node:os';
import { spawn } from 'node:child_process';
import { parseRunnable, runnableTasks } from '../src/dlm/cpu-room.js';

test('parseRunnable reads the running field of /proc/loadavg and refuses anything else', (t) => {
  t.is(parseRunnable('0.52 3.88 5.04 3/512 21689\n'), 3);
  t.is(parseRunnable('35.89 34.09 24.72 39/537 29817\n'), 39);
  t.is(parseRunnable(''), undefined);
  t.is(parseRunnable('0.52 3.88 5.04 x/512 21689\n'), undefined);
  t.is(parseRunnable('0.52 3.88 3/512 21689\n'), undefined);
});

test('runnableTasks counts the tasks running now: busy children raise it', async (t) => {
  const before = runnableTasks();
  t.not(before, undefined, '/proc/loadavg is readable on Linux');
  t.true(before! >= 1, 'the reader itself is running');
  // As many busy loops as CPUs, plus two: at least that many are runnable while they spin.
  const n = os.availableParallelism() + 2;
  const kids = Array.from({ length: n }, () => spawn(process.execPath, ['-e', 'const end = Date.now() + 5000; while (Date.now() < end);'], { stdio: 'ignore' }));
  t.teardown(() => kids.forEach((k) => k.kill('SIGKILL')));
  await new Promise((r) => setTimeout(r, 400));
  let most = 0;
  for (let k = 0; k < 50; k++) most = Math.max(most, runnableTasks()!);
  t.true(most >= n, `saw at most ${most} runnable with ${n} busy loops`);
});
