// `sanbox bench TARGET`: the disk workloads against an image, nbd:// export or VG/LV, fio beside
// them; a table, --json, --plot FILE.svg. A thin shell over src/perf (the action in
// bench-actions.ts, loaded when it runs).

import type { Command } from 'commander';
import { BENCH_WORKLOADS, workloadId } from '../../src/perf/workloads.js';
import { TARGET_DEVICES_HELP } from '../image-arg.js';
import { lazyAction } from './lazy.js';

const actions = () => import('./bench-actions.js');

export function register(program: Command): void {
  program
    .command('bench')
    .description(
      'benchmark a target with the disk workloads — random 4 KiB and 512 B reads and writes, 1 MiB sequential, ' +
        '4 KiB random reads at queue depths 1-32, a 70/30 read/write mix — through sanbox\'s device layer, with fio on ' +
        'the same bytes beside each when it is installed (psync/io_uring on an image, the nbd engine on nbd://, the PV ' +
        'range of a linear LV). Write workloads overwrite the region: a device holding a filesystem or PV label is ' +
        `refused without --force. Workload ids: ${BENCH_WORKLOADS.map(workloadId).join(', ')}.`,
    )
    .argument('<target>', 'image file, nbd://… or VG/LV')
    .option('--duration <time>', 'how long each workload runs, per engine', '2s')
    .option('--size <size>', 'bytes of the target the I/O ranges over, from its start (default: all of it up to 1G)')
    .option('--workloads <ids>', 'comma-separated workload ids to run (default: all)')
    .option('--read-only', 'only the read workloads; the target is opened read-only', false)
    .option('--no-fio', 'do not run fio beside sanbox')
    .option('--force', 'run the write workloads even over a filesystem or PV label', false)
    .option('--devices <list>', TARGET_DEVICES_HELP)
    .option('--json', 'print the results as JSON (with --plot, histograms and timelines too)', false)
    .option('--plot <file.svg>', 'draw IOPS, latency percentiles, a latency histogram and throughput over time to an SVG file')
    .action(lazyAction(actions, (m) => m.bench));
}
