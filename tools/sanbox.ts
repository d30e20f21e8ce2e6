// The `sanbox` program: runs tools/cli.ts's main on the process's arguments.

import { main } from './cli.js';

// Output piped into `head` (or any reader that goes away) ends quietly: EPIPE is not an error of ours.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

// Run when executed (bin/sanbox.js imports this module).
const code = await main(process.argv.slice(2));
// An action may have set a failure status of its own after printing its report (demo's FAIL
// verdict, exit 1); a successful return must not clear it.
if (code !== 0 || process.exitCode === undefined) process.exitCode = code;
