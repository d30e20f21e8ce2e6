// Child process for the multi-process lock manager tests: joins the cluster as a real node
// (startNode: heartbeat, membership, fence gate), opens the lockspace region through its fenced
// device, waits until it sees all NODES nodes up, then runs random lock/convert/unlock operations
// and appends every event (with CLOCK_MONOTONIC ns times, which all processes share) to HISTORY
// as JSON lines. Synchronous appends: a SIGKILL loses at most the event being written.
//
// Usage: node dlm-worker.js IMG NODE NODES HISTORY SEED OPS RESOURCES TIMEOUT_MS [holder]
//   holder: take EX on r0, print "holding", keep it HOLD_MS (env, default 4000), then unlock and
//   record whether that write was refused (a fenced node must not be able to release by writing).

import fs from 'node:fs';
import path from 'node:path';
import { isDownConversion, Mode, modeName } from '../../src/dlm/compat-matrix.js';
import { DlmError, Lockspace, type Lock } from '../../src/dlm/lock-manager.js';
import { openRegion } from '../../src/heartbeat/cluster-image.js';
import { startNode } from '../../src/node/node.js';

const [img, nodeText, nodesText, historyPath, seedText, opsText, resText, timeoutText, role] = process.argv.slice(2);
const nodeId = Number(nodeText);
const nodes = Number(nodesText);
const ops = Number(opsText);
const resources = Number(resText);
const timeoutMs = Number(timeoutText);
let seed = Number(seedText) >>> 0 || 1;

function rand(n: number): number {
  // xorshift32: reproducible from the seed the test logs
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed % n;
}

const hfd = fs.openSync(historyPath!, 'a');
const now = (): string => process.hrtime.bigint().toString();
function record(ev: Record<string, unknown>): void {
  fs.writeSync(hfd, JSON.stringify({ t: now(), node: nodeId, pid: process.pid, ...ev }) + '\n');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  const node = await startNode({ clusterImage: img!, nodeId, control: false });
  node.membership.subscribe((ev) => {
    if (ev.kind === 'fenced' && ev.nodeId !== nodeId) record({ ev: 'fenced', victim: ev.nodeId, generation: ev.generation.toString(16) });
  });
  // Bound on seeing every node up; the soak (16 processes on a loaded machine) raises it.
  const deadline = performance.now() + Number(process.env.DLM_JOIN_BOUND_MS ?? 15_000);
  while (node.membership.members().filter((m) => m.state === 'up').length < nodes) {
    if (performance.now() > deadline) throw new Error(`node ${nodeId}: not all ${nodes} nodes came up`);
    await sleep(20);
  }
  const region = await openRegion(node.device, 'lockspace');
  const ls = await Lockspace.open(region, { membership: node.membership, hintDir: path.join(node.info.config.runDir, 'dlm') });
  record({ ev: 'ready', generation: node.generation.toString(16) });
  if (process.env.DLM_DEBUG) setInterval(() => process.stderr.write(`node ${nodeId}: ${JSON.stringify(ls.stats)}\n`), 2000).unref();
  process.stdout.write('ready\n');
  // Barrier: start only when the parent saw every worker ready (it then creates DIR/go), so no
  // worker finishes and leaves before a slower one has seen it up.
  const go = path.join(path.dirname(historyPath!), 'go');
  while (!fs.existsSync(go)) {
    if (performance.now() > deadline + 15_000) throw new Error(`node ${nodeId}: no go signal`);
    await sleep(5);
  }

  let seq = 0;
  const nextValue = () => `n${nodeId}-${++seq}`;

  if (role === 'holder') {
    record({ ev: 'request', id: 'h', res: 'r0', mode: 'EX', kind: 'lock' });
    const lock = await ls.lock('r0', Mode.EX, { timeoutMs, trace: (e) => (e === 'queued' ? record({ ev: 'queued', id: 'h', res: 'r0' }) : undefined) });
    record({ ev: 'granted', id: 'h', res: 'r0', mode: 'EX', lvb: lock.lvb.toString().replace(/\0+$/, ''), lvbValid: lock.lvbValid });
    process.stdout.write('holding\n');
    await sleep(Number(process.env.HOLD_MS ?? 4000));
    record({ ev: 'release-start', id: 'h', res: 'r0', mode: 'EX', lvbWrite: null });
    try {
      await lock.unlock();
      record({ ev: 'released', id: 'h' });
    } catch (err) {
      record({ ev: 'release-refused', id: 'h', code: (err as DlmError).code, message: (err as Error).message });
    }
    process.stdout.write('done\n');
    await node.stop().catch(() => undefined);
    return;
  }

  // Locks are taken in resource order and only the highest held lock is converted, so the
  // workload itself has no lock-order (ABBA) deadlocks; conversion deadlocks are the DLM's to report.
  const held = new Map<string, Lock>();
  const maxHeld = () => Math.max(-1, ...[...held.keys()].map((k) => Number(k.slice(1))));
  for (let i = 0; i < ops; i++) {
    const top = maxHeld();
    let choice = rand(resources);
    // A resource below our highest held one may not be requested: work on the highest instead.
    if (!held.has(`r${choice}`) && choice < top) choice = top;
    const res = `r${choice}`;
    const lock = held.get(res);
    const id = `${nodeId}.${i}`;
    if (lock === undefined) {
      const mode = rand(6) as Mode;
      const noqueue = rand(8) === 0;
      record({ ev: 'request', id, res, mode: modeName(mode), kind: 'lock', noqueue });
      let grantingT = '';
      try {
        const l = await ls.lock(res, mode, {
          timeoutMs,
          noqueue,
          trace: (e) => (e === 'queued' ? record({ ev: 'queued', id, res }) : (grantingT = now())),
        });
        record({ ev: 'granted', id, res, mode: modeName(mode), decidedT: grantingT, lvb: l.lvb.toString().replace(/\0+$/, ''), lvbValid: l.lvbValid });
        held.set(res, Object.assign(l, { historyId: id }));
      } catch (err) {
        record({ ev: 'failed', id, res, code: (err as DlmError).code, message: (err as Error).message });
        if ((err as DlmError).code === 'EFENCED') break;
      }
    } else {
      const lid = (lock as Lock & { historyId: string }).historyId;
      const from = lock.mode!;
      const writes = from === Mode.PW || from === Mode.EX;
      if (rand(3) === 0 || choice !== top) {
        const value = writes ? nextValue() : null;
        record({ ev: 'release-start', id: lid, res, mode: modeName(from), lvbWrite: value });
        await lock.unlock(value !== null ? { lvb: Buffer.from(value) } : {});
        record({ ev: 'released', id: lid, res });
        held.delete(res);
      } else {
        const to = rand(6) as Mode;
        if (to === from) continue;
        // Only a down-conversion from PW/EX writes the value block (reference/locking.md §2.4).
        const value = writes && isDownConversion(from, to) ? nextValue() : null;
        record({ ev: 'convert-request', id: lid, res, from: modeName(from), mode: modeName(to), lvbWrite: value });
        let grantingT = '';
        try {
          await lock.convert(to, { timeoutMs, lvb: value !== null ? Buffer.from(value) : undefined, trace: (e) => (e === 'granting' ? (grantingT = now()) : undefined) });
          record({ ev: 'converted', id: lid, res, from: modeName(from), mode: modeName(to), decidedT: grantingT, lvb: lock.lvb.toString().replace(/\0+$/, ''), lvbValid: lock.lvbValid });
        } catch (err) {
          record({ ev: 'convert-failed', id: lid, res, code: (err as DlmError).code, message: (err as Error).message });
        }
      }
    }
    // Hold for a little while sometimes, so queues form.
    if (rand(4) === 0) await sleep(rand(5));
  }
  for (const [res, lock] of held) {
    const lid = (lock as Lock & { historyId: string }).historyId;
    const from = lock.mode!;
    const value = from === Mode.PW || from === Mode.EX ? nextValue() : null;
    record({ ev: 'release-start', id: lid, res, mode: modeName(from), lvbWrite: value });
    await lock.unlock(value !== null ? { lvb: Buffer.from(value) } : {});
    record({ ev: 'released', id: lid, res });
  }
  record({ ev: 'done', stats: ls.stats, wakeups: ls.wakeups });
  process.stdout.write('done\n');
  await ls.close();
  await node.stop();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    record({ ev: 'crash', message: (err as Error).stack ?? String(err) });
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
