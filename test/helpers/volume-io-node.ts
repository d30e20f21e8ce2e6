// Child process for the failover and quorum tests: joins the cluster as a real node (startNode:
// heartbeat, membership, fencing, control socket for `sanbox ctl`), then does I/O on volumes
// through its device provider (fence gate, quorum hold) as told on stdin, one command a line:
//
//   open NAME SPEC            open SPEC (VG/LV) for data I/O as the provider gives it (openVolume)
//   openlocked NAME SPEC      open VG/LV under its LV lock (PR) with lock-out (openLockedLv)
//   write ID NAME OFFSET      write 4 KiB at OFFSET: the byte ID repeated, then flush
//   read ID NAME OFFSET       read 4 KiB at OFFSET
//   close NAME                close it (answer id close:NAME)
//   loop NAME OFFSET          write 4 KiB at OFFSET every LOOP_GAP_MS (a counter), until a write
//                             fails: answers done loop:NAME after the first, failed loop:NAME at the end
//
// Every answer and event is a JSON line on stdout:
//   {"ev":"joined"}, {"ev":"quorum","quorate":bool,"up":[…]} on every membership change,
//   {"ev":"done","id":…,"byte":first byte (reads)}, {"ev":"failed","id":…,"code":…,"msg":…},
//   {"ev":"opened","name":…}. Commands run concurrently: a held write does not stop a later one.
//
// Usage: node volume-io-node.js IMG NODE [FENCE]   (PVs of VG/LV specs from SANBOX_DEVICES; FENCE:
// the node's fence policy, default the node's)

import readline from 'node:readline';
import type { BlockDevice } from '../../src/disk/device.js';
import { SanboxError } from '../../src/errors.js';
import { startNode } from '../../src/node/node.js';
import { openLockedLv } from '../../src/node/lvm-cluster.js';
import { Mode } from '../../src/dlm/compat-matrix.js';
import type { FencePolicy } from '../../src/heartbeat/fencer.js';

const [img, nodeText, fenceText] = process.argv.slice(2);
const IO_BYTES = 4096;
/** Gap between a loop's writes: a writer that is outside its fence gate most of the time, as a real one is. */
const LOOP_GAP_MS = 5;

function say(ev: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify({ ...ev, atMs: Date.now() }) + '\n');
}

async function main(): Promise<void> {
  const fencePolicy = fenceText === undefined ? undefined : (fenceText as FencePolicy);
  const node = await startNode({ clusterImage: img!, nodeId: Number(nodeText), log: (msg) => say({ ev: 'log', msg }), ...(fencePolicy !== undefined ? { fencePolicy } : {}) });
  const quorum = (): void => {
    const up = node.membership.members().filter((m) => m.state === 'up').map((m) => m.nodeId);
    say({ ev: 'quorum', quorate: node.membership.hasQuorum(), up });
  };
  node.membership.subscribe(quorum);
  say({ ev: 'joined' });
  quorum();
  const devs = new Map<string, BlockDevice>();
  const dev = (name: string): BlockDevice => {
    const d = devs.get(name);
    if (d === undefined) throw new SanboxError('EINVAL', `no volume opened as ${name}`);
    return d;
  };
  const run = async (id: string, op: () => Promise<Record<string, unknown>>): Promise<void> => {
    try {
      say({ ev: 'done', id, ...(await op()) });
    } catch (err) {
      const e = err as Error & { code?: string };
      say({ ev: 'failed', id, code: e.code ?? 'unknown', msg: e.message });
    }
  };
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const [cmd, a, b, c] = line.trim().split(/\s+/);
    if (cmd === 'open') {
      void run(`open:${a}`, async () => {
        devs.set(a!, await node.provider.openVolume(b!));
        return {};
      });
    } else if (cmd === 'openlocked') {
      void run(`open:${a}`, async () => {
        devs.set(a!, await openLockedLv(node, b!, Mode.PR));
        return {};
      });
    } else if (cmd === 'close') {
      void run(`close:${a}`, async () => {
        await dev(a!).close();
        devs.delete(a!);
        return {};
      });
    } else if (cmd === 'write') {
      void run(a!, async () => {
        const d = dev(b!);
        await d.write(Buffer.alloc(IO_BYTES, Number(a) & 0xff), Number(c));
        await d.flush();
        return {};
      });
    } else if (cmd === 'loop') {
      void run(`loop:${a}`, async () => {
        const d = dev(a!);
        for (let n = 1; ; n++) {
          const buf = Buffer.alloc(IO_BYTES);
          buf.writeUInt32LE(n, 0);
          await d.write(buf, Number(b));
          if (n === 1) say({ ev: 'done', id: `loop:${a}` });
          await new Promise((r) => setTimeout(r, LOOP_GAP_MS));
        }
      });
    } else if (cmd === 'read') {
      void run(a!, async () => {
        const buf = Buffer.alloc(IO_BYTES);
        await dev(b!).read(buf, Number(c));
        return { byte: buf[0] };
      });
    } else {
      say({ ev: 'failed', id: a ?? '', code: 'EUSAGE', msg: `unknown command ${cmd}` });
    }
  });
  // stdin closed: the test is done with us; leave cleanly.
  rl.on('close', () => void node.stop().then(() => process.exit(0)));
}

main().catch((err: unknown) => {
  process.stderr.write(`volume-io-node: ${(err as Error).message}\n`);
  process.exit(1);
});
