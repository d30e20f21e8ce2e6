// The `sanbox` command line as a function: builds the commands, runs one command line, and turns
// every failure into one line on stderr with exit 1 (2 for usage errors, commander's included; 3 fenced).
// No side effects on import: tools/sanbox.ts runs it as a program, tests may run it in-process.

import { Command, CommanderError } from 'commander';
import { isSanboxError, UsageError } from '../src/errors.js';
import { commandGroups } from './commands/index.js';
import { ctlLvmArgv } from './commands/ctl.js';
import { explainErrno } from '../src/disk/system-error.js';
import { EXIT_SELF_FENCED } from '../src/node/exit-status.js';

/**
 * Exit statuses, the same for the same kind of error in every command (README "Exit status").
 * `lock` also passes on its command's status (126 not executable, 127 not found, as a shell does).
 */
export const EXIT_OK = 0;
/** An operational failure: a bad or foreign image, I/O, a busy device, a lock not had in time. */
export const EXIT_FAILURE = 1;
/** A usage error: bad or missing arguments, options in conflict (commander's own included). */
export const EXIT_USAGE = 2;
/** This node was fenced (or fenced itself), or a lock held for a command was lost: the status `node` and `lock` exit with. */
export const EXIT_FENCED = EXIT_SELF_FENCED;

export function buildProgram(): Command {
  const program = new Command('sanbox')
    .description('sanbox — a SAN in a box: shared disks as image files, LVM2 and ocfs2 formats, disk heartbeat, locks and fencing between node processes')
    .version('0.1.0')
    .exitOverride()
    // A usage error is one line, the hint on it (commander's showHelpAfterError adds a second).
    .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: (s, write) => write(`${s.trimEnd()} (run with --help for usage)\n`) });
  for (const register of commandGroups) register(program);
  // Subcommands inherit exit override so usage errors reach the handler below.
  const walk = (c: Command): void => {
    c.exitOverride();
    c.commands.forEach(walk);
  };
  walk(program);
  return program;
}

/** "PATH: open failed: permission denied (EACCES)" for a Node system error, else undefined. */
function systemFailure(err: unknown): string | undefined {
  const e = err as NodeJS.ErrnoException;
  if (isSanboxError(err) || typeof e?.code !== 'string' || typeof e.syscall !== 'string' || !/^E[A-Z0-9]+$/.test(e.code)) return undefined;
  const where = e.path !== undefined ? `${e.path}: ` : '';
  return `${where}${e.syscall} failed: ${explainErrno(e.code) ?? e.message.split('\n')[0]} (${e.code})`;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    // `ctl IMAGE N lvm CMD ARGS` is the LVM command CMD run as running node N.
    await program.parseAsync(ctlLvmArgv(argv) ?? argv, { from: 'user' });
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit 0; everything else commander reports is a usage error.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT_OK;
      return EXIT_USAGE;
    }
    // The environment's usual failures (a system call's errno, with the path it failed on) are
    // one line saying what failed and where, not an "unexpected" error.
    const sys = systemFailure(err);
    const msg = sys ?? (err instanceof Error ? err.message.split('\n')[0]! : String(err));
    // An error that is not one of ours is a bug or an unexpected system failure: say so.
    const hint = isSanboxError(err) || sys !== undefined || process.env.SANBOX_DEBUG ? '' : ' (unexpected error; SANBOX_DEBUG=1 shows where)';
    process.stderr.write(`sanbox: ${msg}${hint}\n`);
    if (err instanceof UsageError) return EXIT_USAGE;
    if (isSanboxError(err) && err.code === 'EFENCED') return EXIT_FENCED;
    if (!isSanboxError(err) && process.env.SANBOX_DEBUG) process.stderr.write(`${(err as Error).stack ?? ''}\n`);
    return EXIT_FAILURE;
  }
}

