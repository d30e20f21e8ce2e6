// `sanbox fault set|clear|ls CONTROL`: edit the fault-injection control file that node processes
// started with SANBOX_FAULTS=CONTROL re-read while they run (src/disk/fault-device.ts). The
// actions are in fault-actions.ts, loaded when one runs.

import type { Command } from 'commander';
import { lazyAction } from './lazy.js';

const actions = () => import('./fault-actions.js');

/** The rule options of `fault set` and `ctl … fault set`. */
export function addRuleOptions(c: Command): Command {
  return c
    .option('--action <action>', 'eio | latency | stall | torn')
    .option('--id <id>', 'a name for the rule (to clear it later)')
    .option('--op <op>', 'read | write | any', 'any')
    .option('--device <substring>', 'only devices whose name contains this')
    .option('--offset <size>', 'only I/O overlapping this byte range: start')
    .option('--length <size>', 'only I/O overlapping this byte range: length')
    .option('--after-ops <n>', 'fire from the (n+1)-th matching operation on')
    .option('--count <n>', 'fire at most n times')
    .option('--latency <duration>', 'for latency: delay per operation, e.g. 50ms')
    .option('--torn-sectors <n>', 'for torn: how many leading sectors land');
}

export function register(program: Command): void {
  const fault = program
    .command('fault')
    .description('inject disk faults into running node processes through a control file (start them with SANBOX_FAULTS=CONTROL); `sanbox ctl CLUSTER NODE fault …` does the same on a running node without a file');

  addRuleOptions(
    fault
      .command('set')
      .description('add a rule: fail with EIO, add latency, stall until cleared, or tear writes')
      .argument('<control>', 'the control file named by SANBOX_FAULTS'),
  ).action(lazyAction(actions, (m) => m.set));

  fault
    .command('clear')
    .description('remove one rule (releasing what it stalls), or all rules')
    .argument('<control>', 'the control file')
    .argument('[id]', 'the rule to remove; all rules when omitted')
    .action(lazyAction(actions, (m) => m.clear));

  fault
    .command('ls')
    .description('list the rules in a control file')
    .argument('<control>', 'the control file')
    .option('--json', 'print as JSON', false)
    .action(lazyAction(actions, (m) => m.ls));
}
