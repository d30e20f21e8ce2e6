// `sanbox demo`'s action, loaded when it runs (tools/commands/demo.ts registers it).

import { UsageError } from '../../src/errors.js';
import { hex64 } from '../../src/format/o2hb-block.js';
import { DEMO_NODES_MAX, DEMO_NODES_MIN } from '../../src/node/demo-limits.js';
import { runDemo } from '../../src/node/demo.js';
import { printJson, printTable } from '../output.js';

interface DemoOptions {
  dir: string;
  nodes: string;
  json: boolean;
}

export async function demo(o: DemoOptions): Promise<void> {
  const nodeCount = Number(o.nodes);
  if (!Number.isInteger(nodeCount) || nodeCount < DEMO_NODES_MIN || nodeCount > DEMO_NODES_MAX) {
    throw new UsageError(`--nodes must be an integer from ${DEMO_NODES_MIN} to ${DEMO_NODES_MAX}, not '${o.nodes}'`);
  }
  const r = await runDemo(
    { dir: o.dir, nodeCount },
    {
      step: (line) => {
        if (!o.json) process.stdout.write(line + '\n');
      },
      status: (s) => {
        if (o.json) return;
        printTable(s.slots, [
          { header: 'Node', value: (x) => x.node, align: 'right' },
          { header: 'Name', value: (x) => x.name },
          { header: 'PID', value: (x) => x.pid ?? '', align: 'right' },
          { header: 'Generation', value: (x) => x.generation },
          { header: 'State', value: (x) => x.state },
          { header: 'Age', value: (x) => (x.ageMs === null || x.state === 'free' ? '' : `${(x.ageMs / 1000).toFixed(1)}s`), align: 'right' },
        ]);
      },
      files: (files) => {
        if (o.json) return;
        printTable(files, [
          { header: 'Path', value: (f) => f.path },
          { header: 'Node', value: (f) => f.node, align: 'right' },
          { header: 'Bytes', value: (f) => f.sizeBytes, align: 'right' },
          { header: 'Acked', value: (f) => (f.acknowledged ? `tx ${f.sequence}` : 'no') },
          { header: 'sha256', value: (f) => f.sha256.slice(0, 16) },
          { header: 'After recovery', value: (f) => (!f.acknowledged && f.afterRecovery === 'intact' ? 'whole' : (f.afterRecovery ?? '')) },
        ]);
      },
      volumeHeartbeat: (slots) => {
        if (o.json) return;
        printTable(slots, [
          { header: 'Slot', value: (s) => s.slot, align: 'right' },
          { header: 'Node', value: (s) => s.nodeId, align: 'right' },
          { header: 'Seq', value: (s) => s.seq.toString(), align: 'right' },
          { header: 'Generation', value: (s) => hex64(s.generation) },
          { header: 'DeadMs', value: (s) => s.deadMs, align: 'right' },
          { header: 'Checksum', value: (s) => (s.cksumValid ? 'ok' : 'BAD') },
        ]);
      },
    },
  );
  if (o.json) printJson(r);
  else {
    const acked = r.files.filter((f) => f.acknowledged);
    const rec = r.recovery === undefined ? 'not recovered' : `slot ${r.recovery.slot} recovered by node ${r.recovery.by} in ${r.recovery.afterKillMs.slotFreed} ms`;
    process.stdout.write(
      `Verdict: ${r.verdict} — ${r.nodes} nodes up in ${r.allUpMs} ms; node ${r.victim} killed mid-put, declared dead in ≤${Math.max(...r.downMs)} ms, fenced in ${r.fencedMs} ms, ${rec}; ${acked.filter((f) => f.afterRecovery === 'intact').length}/${acked.length} acknowledged files intact.\n`,
    );
    for (const f of r.failures) process.stdout.write(`  FAIL: ${f}\n`);
  }
  if (r.verdict !== 'PASS') process.exitCode = 1;
}
