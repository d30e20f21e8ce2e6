// The demo scenario (`sanbox demo`): creates a cluster image and an ocfs2 volume, starts N node
// processes that heartbeat through both, shows they see each other, kills one with SIGKILL, shows
// the survivors declare it dead and fence it, stops the rest cleanly, and judges the run. The
// scenario lives here; tools/commands/demo.ts only prints what it reports.

import fs from 'node:fs';
import path from 'node:path';
import { createImage, openDevice } from '../disk/index.js';
import { mkfs, Ocfs2Volume, readHeartbeat } from '../fs/index.js';
import type { HeartbeatSlot } from '../fs/heartbeat-reader.js';
import { initClusterImage } from '../heartbeat/cluster-image.js';
import { presetTiming, type Timing } from '../timing.js';
import { launchNode, stopAll, type LaunchedNode } from './launcher.js';
import { StatusReader, type ClusterStatus } from './status.js';
import { DEMO_FENCE_MARGIN_MS, DEMO_READY_TIMEOUT_MS, DEMO_SEE_EACH_OTHER_TIMEOUT_MS } from '../timing.js';

/** The demo's shared ocfs2 volume: sparse, so it costs a few MiB of real blocks. */
const VOLUME_BYTES = 1024 ** 3;
/** Node counts the demo runs with: two make a cluster, 16 keep one machine responsive. */
export const DEMO_NODES_MIN = 2;
export const DEMO_NODES_MAX = 16;

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

/** The o2hb blocks on the volume (what `debugfs.ocfs2 -R hb` shows). */
async function volumeHeartbeat(volume: string): Promise<HeartbeatSlot[]> {
  const dev = await openDevice(volume, { guard: 'none', readOnly: true });
  try {
    return (await readHeartbeat(await Ocfs2Volume.open(dev))).slots;
  } finally {
    await dev.close();
  }
}

async function clusterStatus(image: string): Promise<ClusterStatus> {
  const reader = await StatusReader.open(image);
  try {
    return await reader.read();
  } finally {
    await reader.close();
  }
}

/** What the scenario reports as it goes; the command line prints it. */
export interface DemoObserver {
  step(text: string): void;
  status(s: ClusterStatus): void;
  volumeHeartbeat(slots: HeartbeatSlot[]): void;
}

export interface DemoResult {
  image: string;
  volume: string;
  volumeUuid: string;
  volumeHeartbeatSlots: number;
  nodes: number;
  timing: Timing;
  allUpMs: number;
  victim: number;
  downMs: number[];
  fencedMs: number;
  fencedBy: number;
  survivorsLeftCleanly: boolean;
  verdict: 'PASS' | 'FAIL';
}

export async function runDemo(o: { dir: string; nodeCount: number }, obs: DemoObserver): Promise<DemoResult> {
  const { nodeCount } = o;
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
  obs.step(`1. Cluster image ${image}: ${nodeCount} nodes, heartbeat every ${info.timing.intervalMs} ms, dead after ${info.timing.deadMs} ms.`);
  obs.step(`   Shared volume ${volume}: 1 GiB ocfs2 (UUID ${volumeUuid}, ${nodeCount} slots); the nodes heartbeat there too, o2hb-compatibly.`);

  const nodes: LaunchedNode[] = [];
  const onSignal = (): void => void stopAll(nodes).then(() => process.exit(130));
  process.once('SIGINT', onSignal);
  const t0 = Date.now();
  try {
    for (let i = 0; i < nodeCount; i++) nodes.push(launchNode({ clusterImage: image, nodeId: i, extraArgs: ['--volume', volume] }));
    await Promise.all(nodes.map((n) => n.waitEvent((e) => e.msg?.startsWith('ready') === true, DEMO_READY_TIMEOUT_MS, 'ready')));
    // Everyone sees everyone else up.
    await Promise.all(
      nodes.flatMap((n) =>
        nodes.filter((p) => p !== n).map((p) => n.waitEvent((e) => e.event === 'up' && e.peer === p.nodeId, DEMO_SEE_EACH_OTHER_TIMEOUT_MS, `up event for node ${p.nodeId}`)),
      ),
    );
    const allUpMs = Date.now() - t0;
    obs.step(`2. Started ${nodeCount} node processes (pids ${nodes.map((n) => n.pid).join(', ')}); every node saw every other up after ${allUpMs} ms.`);
    obs.status(await clusterStatus(image));
    obs.step(`   Their heartbeat blocks on the ocfs2 volume (as debugfs.ocfs2 -R hb shows them):`);
    const slots = await volumeHeartbeat(volume);
    obs.volumeHeartbeat(slots);
    const volumeSlots = slots.filter((s) => s.cksumValid).length;

    const victim = nodes[nodeCount - 1]!;
    const survivors = nodes.slice(0, -1);
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    obs.step(`3. kill -9 node ${victim.nodeId} (pid ${victim.pid}).`);
    const downs = await Promise.all(
      survivors.map((n) => n.waitEvent((e) => e.event === 'down' && e.peer === victim.nodeId && e.receivedAtMs >= killedAt, info.timing.deadMs + DEMO_FENCE_MARGIN_MS, `down event for node ${victim.nodeId}`)),
    );
    const fenced = await Promise.any(
      survivors.map((n) => n.waitEvent((e) => e.event === 'fenced' && e.peer === victim.nodeId && e.receivedAtMs >= killedAt, info.timing.deadMs + DEMO_FENCE_MARGIN_MS, `fenced event for node ${victim.nodeId}`)),
    );
    const downMs = downs.map((e) => e.receivedAtMs - killedAt);
    const fencedMs = fenced.receivedAtMs - killedAt;
    obs.step(`4. Survivors declared node ${victim.nodeId} dead after ${Math.min(...downMs)}–${Math.max(...downMs)} ms; it was fenced ${fencedMs} ms after the kill (by node ${fenced.node}).`);
    obs.status(await clusterStatus(image));

    await stopAll(survivors);
    const codes = survivors.map((n) => n.child.exitCode);
    const clean = codes.every((c) => c === 0);
    obs.step(`5. Survivors left the cluster ${clean ? 'cleanly' : `with exit codes ${codes.join(', ')}`}.`);
    const pass = clean && volumeSlots === nodeCount && Math.max(...downMs) <= info.timing.deadMs + DEMO_FENCE_MARGIN_MS;
    return { image, volume, volumeUuid, volumeHeartbeatSlots: volumeSlots, nodes: nodeCount, timing: info.timing, allUpMs, victim: victim.nodeId, downMs, fencedMs, fencedBy: fenced.node, survivorsLeftCleanly: clean, verdict: pass ? 'PASS' : 'FAIL' };
  } finally {
    process.removeListener('SIGINT', onSignal);
    await stopAll(nodes);
    // Every node has exited; only the killed node's stale socket can be left.
    fs.rmSync(runDir, { recursive: true, force: true });
  }
}
