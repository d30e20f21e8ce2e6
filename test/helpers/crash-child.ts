// The crash tests' writer process: `node crash-child.js VOL SLOT NODE SCRIPT.json` mounts VOL's
// slot for NODE, runs the script's file operations and unmounts (test/helpers/crash-script.ts
// mountAndRun), printing "ack I" on stdout after operation I was acknowledged — written with a
// synchronous write, so the line is in the pipe before the next operation's first I/O. Started
// with SANBOX_CRASH_AT, it SIGKILLs itself at that I/O (src/disk/crash-point.ts); the driver
// then knows exactly which operations were acknowledged. Exit 0 after the umount, 1 on an error.

import fs from 'node:fs';
import { openDevice } from '../../src/disk/open.js';
import { mountAndRun, type ScriptOp } from './crash-script.js';

async function main(): Promise<void> {
  const [vol, slotArg, nodeArg, scriptFile] = process.argv.slice(2);
  if (vol === undefined || scriptFile === undefined) throw new Error('usage: crash-child VOL SLOT NODE SCRIPT.json');
  const ops = JSON.parse(fs.readFileSync(scriptFile, 'utf8')) as ScriptOp[];
  const dev = await openDevice(vol);
  try {
    await mountAndRun(dev, Number(slotArg), Number(nodeArg), ops, (i) => void fs.writeSync(1, `ack ${i}\n`));
  } finally {
    await dev.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    fs.writeSync(2, `crash-child: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
