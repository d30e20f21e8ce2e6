// `sanbox demo`: the main job on a default local image. Creates a cluster image, starts N node
// processes that heartbeat through it, shows them see each other, kills one with SIGKILL, shows
// the survivors declare it dead and fence it, stops the rest cleanly, and prints a verdict.

import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { createImage, openDevice } from '../../src/disk/index.js';
import { UsageError } from '../../src/errors.js';
import { hex64 } from '../../src/format/o2hb-block.js';
import { mkfs, Ocfs2Volume, readHeartbeat } from '../../src/fs/index.js';
import { initClusterImage } from '../../src/heartbeat/cluster-image.js';
import { presetTiming } from '../../src/heartbeat/timing.js';
import { launchNode, stopAll, type LaunchedNode } from '../../src/node/launcher.js';
import { StatusReader } from '../../src/node/status.js';
import { printJson, printTable } from '../output.js';

/** Bounds on each demo step (the local preset declares death in ~1.5 s). */
const READY_TIMEOUT_MS = 10_000;
const SEE_EACH_OTHER_TIMEOUT_MS = 10_000;
const FENCE_MARGIN_MS = 10_000;
/** The demo's shared ocfs2 volume: sparse, so it costs a few MiB of real blocks. */
const VOLUME_BYTES = 1024 ** 3;

/** Formats the demo's shared volume as ocfs2 with one slot per node. */
async function makeVolume(volume: string, slots: number): Promise<string> {
  createImage(volume, { sizeBytes: VOLUME_BYTES, force: true });
  const dev = await openDevice(volume, { guard: 'exclusive' });
  try {
    const r = await mkfs(dev, { slots, label: 'demo', clusterStack: 'o2cb', clusterName: 'demo', journalSizeBytes: 8 * 1024 ** 2 });
    return r.uuid;
  } finally {
    await dev.close();
  }
}

/** The o2hb blocks on the volume (what `debugfs.ocfs2 -R hb` shows), one line per live slot. */
async function showVolumeHeartbeat(volume: string, quiet: boolean): Promise<number> {
  const dev = await openDevice(volume, { guard: 'none', readOnly: true });
  try {
    const hb = await readHeartbeat(await Ocfs2Volume.open(dev));
    if (!quiet) {
      printTable(hb.slots, [
        { header: 'Slot', value: (s) => s.slot, align: 'right' },
        { header: 'Node', value: (s) => s.nodeId, align: 'right' },
        { header: 'Seq', value: (s) => s.seq.toString(), align: 'right' },
        { header: 'Generation', value: (s) => hex64(s.generation) },
        { header: 'DeadMs', value: (s) => s.deadMs, align: 'right' },
        { header: 'Checksum', value: (s) => (s.cksumValid ? 'ok' : 'BAD') },
      ]);
    }
    return hb.slots.filter((s) => s.cksumValid).length;
  } finally {
    await dev.close();
  }
}

interface DemoOptions {
  dir: string;
  nodes: string;
  json: boolean;
}

async function showStatus(image: string, quiet: boolean): Promise<void> {
  if (quiet) return;
  const reader = await StatusReader.open(image);
  try {
    const s = await reader.read();
    printTable(s.slots, [
      { header: 'Node', value: (r) => r.node, align: 'right' },
      { header: 'Name', value: (r) => r.name },
      { header: 'PID', value: (r) => r.pid ?? '', align: 'right' },
      { header: 'Generation', value: (r) => r.generation },
      { header: 'State', value: (r) => r.state },
      { header: 'Age', value: (r) => (r.ageMs === null || r.state === 'free' ? '' : `${(r.ageMs / 1000).toFixed(1)}s`), align: 'right' },
    ]);
  } finally {
    await reader.close();
  }
}

export function register(program: Command): void {
  program
    .command('demo')
    .description(
      'run a local demo cluster: create a cluster image, start N node processes that heartbeat through it, kill one with SIGKILL, watch the others declare it dead and fence it, and print a verdict',
    )
    .option('--dir <dir>', 'where the demo images go (replaced if they exist)', 'sanbox-demo')
    .option('--nodes <n>', 'number of node processes (2-16)', '3')
    .option('--json', 'print the result as JSON instead of a narrative', false)
    .action(async (o: DemoOptions) => {
      const nodeCount = Number(o.nodes);
      if (!Number.isInteger(nodeCount) || nodeCount < 2 || nodeCount > 16) throw new UsageError(`--nodes must be an integer from 2 to 16, not '${o.nodes}'`);
      const say = (line: string): void => {
        if (!o.json) process.stdout.write(line + '\n');
      };
      fs.mkdirSync(o.dir, { recursive: true });
      const image = path.resolve(o.dir, 'cluster.img');
      const timing = presetTiming('local');
      // The control sockets go in the demo's own directory: the node killed with SIGKILL cannot
      // remove its socket, and the default run directory ($TMPDIR/sanbox-<uuid>) would outlive the demo.
      const runDir = path.resolve(o.dir, 'run');
      const info = await initClusterImage(image, {
        clusterName: 'demo',
        nodeCount,
        timing,
        nodeNames: Array.from({ length: nodeCount }, (_, i) => `node${i}`),
        force: true,
        runDir,
      });
      const volume = path.resolve(o.dir, 'volume.img');
      const volumeUuid = await makeVolume(volume, nodeCount);
      say(`1. Cluster image ${image}: ${nodeCount} nodes, heartbeat every ${info.timing.intervalMs} ms, dead after ${info.timing.deadMs} ms.`);
      say(`   Shared volume ${volume}: 1 GiB ocfs2 (UUID ${volumeUuid}, ${nodeCount} slots); the nodes heartbeat there too, o2hb-compatibly.`);

      const nodes: LaunchedNode[] = [];
      const onSignal = (): void => void stopAll(nodes).then(() => process.exit(130));
      process.once('SIGINT', onSignal);
      const t0 = Date.now();
      try {
        for (let i = 0; i < nodeCount; i++) nodes.push(launchNode({ clusterImage: image, nodeId: i, extraArgs: ['--volume', volume] }));
        await Promise.all(nodes.map((n) => n.waitEvent((e) => e.msg?.startsWith('ready') === true, READY_TIMEOUT_MS, 'ready')));
        // Everyone sees everyone else up.
        await Promise.all(
          nodes.flatMap((n) =>
            nodes.filter((p) => p !== n).map((p) => n.waitEvent((e) => e.event === 'up' && e.peer === p.nodeId, SEE_EACH_OTHER_TIMEOUT_MS, `up event for node ${p.nodeId}`)),
          ),
        );
        const allUpMs = Date.now() - t0;
        say(`2. Started ${nodeCount} node processes (pids ${nodes.map((n) => n.pid).join(', ')}); every node saw every other up after ${allUpMs} ms.`);
        await showStatus(image, o.json);
        say(`   Their heartbeat blocks on the ocfs2 volume (as debugfs.ocfs2 -R hb shows them):`);
        const volumeSlots = await showVolumeHeartbeat(volume, o.json);

        const victim = nodes[nodeCount - 1]!;
        const survivors = nodes.slice(0, -1);
        const killedAt = Date.now();
        victim.child.kill('SIGKILL');
        say(`3. kill -9 node ${victim.nodeId} (pid ${victim.pid}).`);
        const downs = await Promise.all(
          survivors.map((n) => n.waitEvent((e) => e.event === 'down' && e.peer === victim.nodeId && e.receivedAtMs >= killedAt, info.timing.deadMs + FENCE_MARGIN_MS, `down event for node ${victim.nodeId}`)),
        );
        const fenced = await Promise.any(
          survivors.map((n) => n.waitEvent((e) => e.event === 'fenced' && e.peer === victim.nodeId && e.receivedAtMs >= killedAt, info.timing.deadMs + FENCE_MARGIN_MS, `fenced event for node ${victim.nodeId}`)),
        );
        const downMs = downs.map((e) => e.receivedAtMs - killedAt);
        const fencedMs = fenced.receivedAtMs - killedAt;
        say(`4. Survivors declared node ${victim.nodeId} dead after ${Math.min(...downMs)}–${Math.max(...downMs)} ms; it was fenced ${fencedMs} ms after the kill (by node ${fenced.node}).`);
        await showStatus(image, o.json);

        await stopAll(survivors);
        const codes = survivors.map((n) => n.child.exitCode);
        const clean = codes.every((c) => c === 0);
        say(`5. Survivors left the cluster ${clean ? 'cleanly' : `with exit codes ${codes.join(', ')}`}.`);
        const pass = clean && volumeSlots === nodeCount && Math.max(...downMs) <= info.timing.deadMs + FENCE_MARGIN_MS;
        if (o.json) {
          printJson({ image, volume, volumeUuid, volumeHeartbeatSlots: volumeSlots, nodes: nodeCount, timing: info.timing, allUpMs, victim: victim.nodeId, downMs, fencedMs, fencedBy: fenced.node, survivorsLeftCleanly: clean, verdict: pass ? 'PASS' : 'FAIL' });
        } else {
          say(`Verdict: ${pass ? 'PASS' : 'FAIL'} — ${nodeCount} nodes up in ${allUpMs} ms; node ${victim.nodeId} killed, declared dead in ≤${Math.max(...downMs)} ms, fenced in ${fencedMs} ms.`);
        }
        if (!pass) process.exitCode = 1;
      } finally {
        process.removeListener('SIGINT', onSignal);
        await stopAll(nodes);
        // Every node has exited; only the killed node's stale socket can be left.
        fs.rmSync(runDir, { recursive: true, force: true });
      }
    });
}
