// A process that cannot die at once: frozen in a cgroup v1 freezer, a process is in D state
// (uninterruptible, as one blocked in the kernel on a hung NFS mount or a stuck device is) and a
// SIGKILL sent to it stays pending until it is thawed: it keeps its pid and /proc entry. What
// review 7 M1 is about (a fence must not wait for such a client). Root and the v1 freezer
// hierarchy are needed; a host without them cannot make such a process honestly, and the test fails
// saying so. Teardown thaws it (a pending SIGKILL then ends it) and removes the cgroup.

import type { ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { readProcStat } from '../../src/disk/power-fence.js';
import { waitFor } from './tmp.js';

const FREEZER_ROOT = '/sys/fs/cgroup/freezer';
/** Bound on the freezer reporting FROZEN (it takes a few ms for an idle process). */
const FREEZE_MS = 5000;

/** Freezes process `pid` (in a cgroup of its own) until the test ends; its /proc state is D then. */
export async function freeze(t: ExecutionContext, pid: number): Promise<void> {
  if (!fs.existsSync(path.join(FREEZER_ROOT, 'freezer.state')) && !fs.existsSync(path.join(FREEZER_ROOT, 'cgroup.procs'))) {
    throw new Error(`no cgroup v1 freezer at ${FREEZER_ROOT}: cannot make a process that survives SIGKILL for a while`);
  }
  const dir = path.join(FREEZER_ROOT, `sanbox-test-${process.pid}-${pid}`);
  fs.mkdirSync(dir);
  t.teardown(async () => {
    fs.writeFileSync(path.join(dir, 'freezer.state'), 'THAWED');
    // Back to the root group (whether it died of its pending SIGKILL yet or not), so the group can go.
    for (const p of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'latin1').split('\n').filter((x) => x !== '')) {
      try {
        fs.writeFileSync(path.join(FREEZER_ROOT, 'cgroup.procs'), p);
      } catch {
        // It exited meanwhile.
      }
    }
    await waitFor(() => fs.readFileSync(path.join(dir, 'cgroup.procs'), 'latin1').trim() === '', FREEZE_MS, `freezer group ${dir} to empty`);
    fs.rmdirSync(dir);
  });
  fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
  fs.writeFileSync(path.join(dir, 'freezer.state'), 'FROZEN');
  await waitFor(() => fs.readFileSync(path.join(dir, 'freezer.state'), 'latin1').trim() === 'FROZEN' && readProcStat(pid)?.state === 'D', FREEZE_MS, `pid ${pid} to be frozen`);
}
