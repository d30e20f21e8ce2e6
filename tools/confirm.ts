// lvm2's manners for destructive changes: on a terminal, ask "[y/n]"; with -y/--yes, go ahead;
// with neither (a script, stdin not a terminal), refuse with one line saying how to confirm.
// lvm2 itself reads the answer from a non-terminal stdin; sanbox refuses instead, so a pipe can
// never answer "y" by accident.

import readline from 'node:readline/promises';
import { SanboxError } from '../src/errors.js';

/** Resolves when confirmed; otherwise throws with `refusal` (what is not done, and why it asks). */
export async function confirm(question: string, refusal: string, yes: boolean): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY) throw new SanboxError('EINVAL', `${refusal}; pass -y (--yes) to confirm, stdin is not a terminal`);
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout });
  try {
    const answer = (await rl.question(`  ${question} [y/n]: `)).trim().toLowerCase();
    if (answer === 'y' || answer === 'yes') return;
  } finally {
    rl.close();
  }
  throw new SanboxError('ECANCELED', `${refusal}: not confirmed`);
}
