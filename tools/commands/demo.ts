// `sanbox demo`: prints the demo scenario of src/node/demo.ts as a narrative (or JSON).

import type { Command } from 'commander';
import { UsageError } from '../../src/errors.js';
import { hex64 } from '../../src/format/o2hb-block.js';
import { DEMO_NODES_MAX, DEMO_NODES_MIN, runDemo } from '../../src/node/demo.js';
import { printJson, printTable } from '../output.js';

interface DemoOptions {
  dir: string;
  nodes: string;
  json: boolean;
}

export function register(program: Command): void {
  program
    .command('demo')
    .description(
      'run a local demo cluster: create a cluster image, start N node processes that heartbeat through it, kill one with SIGKILL, watch the others declare it dead and fence it, and print a verdict',
    )
    .option('--dir <dir>', 'where the demo images go (replaced if they exist)', 'sanbox-demo')
    .option('--nodes <n>', `number of node processes (${DEMO_NODES_MIN}-${DEMO_NODES_MAX})`, '3')
    .option('--json', 'print the result as JSON instead of a narrative', false)
    .action(async (o: DemoOptions) => {
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
        process.stdout.write(
          `Verdict: ${r.verdict} — ${r.nodes} nodes up in ${r.allUpMs} ms; node ${r.victim} killed, declared dead in ≤${Math.max(...r.downMs)} ms, fenced in ${r.fencedMs} ms.\n`,
        );
      }
      if (r.verdict !== 'PASS') process.exitCode = 1;
    });
}
