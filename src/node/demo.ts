// The demo scenario (`sanbox demo`): creates a cluster image and an ocfs2 volume, starts N node
// processes that heartbeat through both and mount the volume, each in its own slot; they write
// files through their slot journals; one is killed with SIGKILL while a put is in flight (its
// transaction committed in its journal, its home blocks not yet written); the survivors declare it
// dead and fence it, exactly one of them replays its journal and frees its slot; every file a
// node acknowledged is read back through a survivor and compared by sha256; the rest unmount and
// leave, and the run is judged. The scenario lives here (the files in demo-files.ts);
// tools/commands/demo-actions.ts only prints what it reports.

import fs from 'node:fs';
import path from 'node:path';
import { createImage, openDevice } from '../disk/index.js';
import { mkfs, Ocfs2Volume, readHeartbeat } from '../fs/index.js';
import type { HeartbeatSlot } from '../fs/heartbeat-reader.js';
import { initClusterImage } from '../heartbeat/cluster-image.js';
import { presetTiming, type Timing } from '../timing.js';
import { launchNode, stopAll, type LaunchedNode } from './launcher.js';
import { DemoFiles, type DemoFile } from './demo-files.js';
import type { ReplayedTransactionReport } from './recovery.js';
import { readVolumeMounts, StatusReader, type ClusterStatus, type VolumeMount } from './status.js';
import { DEMO_FENCE_MARGIN_MS, DEMO_READY_TIMEOUT_MS, DEMO_SEE_EACH_OTHER_TIMEOUT_MS } from '../timing.js';
import { DEMO_NODES_MAX, DEMO_NODES_MIN } from './demo-limits.js';

/** The demo's shared ocfs2 volume: sparse, so it costs a few MiB of real blocks. */
const VOLUME_BYTES = 1024 ** 3;
/** Each slot's journal: the demo's transactions are a few blocks each, checkpointed at once. */
const JOURNAL_BYTES = 8 * 1024 ** 2;
/** The files each node puts (sizes chosen to show inline data, one block, and 1 MiB of clusters). */
const NODE_FILES: readonly { name: string; sizeBytes: number }[] = [
  { name: 'note.txt', sizeBytes: 300 },
  { name: 'page.bin', sizeBytes: 4096 },
  { name: 'big.bin', sizeBytes: 1024 ** 2 },
];
/** Each node also puts one file of this size into the directory they share. */
const SHARED_FILE_BYTES = 4096;
/** The put the victim has in flight when it is killed. */
const IN_FLIGHT_BYTES = 256 * 1024;

/** Formats the demo's shared volume as ocfs2 with one slot per node. */
async function makeVolume(volume: string, slots: number): Promise<string> {
  createImage(volume, { sizeBytes: VOLUME_BYTES, force: true });
  const dev = await openDevice(volume, { guard: 'exclusive' });
  try {
    const r = await mkfs(dev, { slots, label: 'demo', clusterStack: 'o2cb', clusterName: 'demo', journalSizeBytes: JOURNAL_BYTES });
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
  files(files: DemoFile[]): void;
}

/** The survivor's recovery of the victim's slot, times in ms after the kill. */
export interface DemoRecovery {
  by: number;
  slot: number;
  replayed: ReplayedTransactionReport[];
  /** Survivors that found the slot recovered already (under the superblock lock) and skipped it. */
  skippedBy: number[];
  afterKillMs: {
    down: number | undefined;
    fenced: number | undefined;
    superLock: number;
    replayed: number;
    clean: number;
    slotFreed: number;
  };
}

export interface DemoResult {
  image: string;
  volume: string;
  volumeUuid: string;
  volumeHeartbeatSlots: number;
  nodes: number;
  timing: Timing;
  allUpMs: number;
  /** Which node mounted the volume in which slot. */
  mounts: VolumeMount[];
  victim: number;
  victimSlot: number;
  downMs: number[];
  fencedMs: number;
  fencedBy: number;
  /** The put the victim had in flight, and the transaction the demo saw committed in its journal. */
  inFlight: { path: string; heldBlock: number; committedSequence: number };
  recovery: DemoRecovery | undefined;
  /** Every file put, acknowledged or not, with what a survivor read back after the recovery. */
  files: DemoFile[];
  /** The victim's slot was free after the recovery; every slot was free after the survivors unmounted. */
  victimSlotFreed: boolean;
  allSlotsFreeAtEnd: boolean;
  survivorsLeftCleanly: boolean;
  /** Why the verdict is FAIL (empty on PASS). */
  failures: string[];
  verdict: 'PASS' | 'FAIL';
}

const range = (xs: number[]): string => (Math.min(...xs) === Math.max(...xs) ? `${xs[0]}` : `${Math.min(...xs)}–${Math.max(...xs)}`);

export async function runDemo(o: { dir: string; nodeCount: number }, obs: DemoObserver): Promise<DemoResult> {
  const { nodeCount } = o;
  fs.mkdirSync(o.dir, { recursive: true });
  const image = path.resolve(o.dir, 'cluster.img');
  const timing = presetTiming('local');
  // The control sockets go in the demo's own directory: the node killed with SIGKILL cannot
  // remove its socket, and the default run directory ($TMPDIR/sanbox-<uuid>) would outlive the demo.
  const runDir = path.resolve(o.dir, 'run');
  // The local copies of what the nodes put and got (the control channel carries paths, not data).
  const scratchDir = path.resolve(o.dir, 'files');
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
  obs.step(`   Shared volume ${volume}: 1 GiB ocfs2 (UUID ${volumeUuid}, ${nodeCount} slots, a ${JOURNAL_BYTES / 1024 ** 2} MiB journal per slot).`);

  const nodes: LaunchedNode[] = [];
  const clients: DemoFiles[] = [];
  const failures: string[] = [];
  const onSignal = (): void => void stopAll(nodes).then(() => process.exit(130));
  process.once('SIGINT', onSignal);
  const t0 = Date.now();
  try {
    for (let i = 0; i < nodeCount; i++) nodes.push(launchNode({ clusterImage: image, nodeId: i, extraArgs: ['--mount', volume] }));
    // "ready" comes after the mount.
    await Promise.all(nodes.map((n) => n.waitEvent((e) => e.msg?.startsWith('ready') === true, DEMO_READY_TIMEOUT_MS, 'ready')));
    // Everyone sees everyone else up.
    await Promise.all(
      nodes.flatMap((n) =>
        nodes.filter((p) => p !== n).map((p) => n.waitEvent((e) => e.event === 'up' && e.peer === p.nodeId, DEMO_SEE_EACH_OTHER_TIMEOUT_MS, `up event for node ${p.nodeId}`)),
      ),
    );
    const allUpMs = Date.now() - t0;
    const mounts = await readVolumeMounts([volume]);
    obs.step(`2. Started ${nodeCount} node processes (pids ${nodes.map((n) => n.pid).join(', ')}); each mounted the volume, and every node saw every other up after ${allUpMs} ms.`);
    obs.status(await clusterStatus(image));
    obs.step(`   Their heartbeat blocks on the ocfs2 volume (as debugfs.ocfs2 -R hb shows them):`);
    const slots = await volumeHeartbeat(volume);
    obs.volumeHeartbeat(slots);
    const volumeSlots = slots.filter((s) => s.cksumValid).length;
    obs.step(`   Slots (the volume's slot map): ${mounts.map((m) => `node ${m.node} in slot ${m.slot}`).join(', ')}; each node logs its changes in its slot's journal.`);

    // Every node puts its files at the same time, one after another in its own directory, and one
    // into the directory they share.
    for (const n of nodes) clients.push(await DemoFiles.connect(image, n.nodeId, volume, scratchDir));
    await clients[0]!.mkdir('/shared');
    const files: DemoFile[] = [];
    const dirInodes = await Promise.all(
      clients.map(async (c) => {
        const dirInode = await c.mkdir(`/node${c.nodeId}`);
        for (const f of [...NODE_FILES.map((x) => ({ path: `/node${c.nodeId}/${x.name}`, sizeBytes: x.sizeBytes })), { path: `/shared/node${c.nodeId}.bin`, sizeBytes: SHARED_FILE_BYTES }]) {
          const p = c.put(f.path, f.sizeBytes);
          files.push(p.file);
          await p.acked;
        }
        return dirInode;
      }),
    );
    const seqs = (n: number): string => range(files.filter((f) => f.node === n && f.sequence !== undefined).map((f) => f.sequence!));
    obs.step(`3. The nodes put ${files.length} files at once (${NODE_FILES.map((f) => f.name).join(', ')} in their own directories, one each in /shared), every one acknowledged after its JBD2 commit was durable: transactions ${clients.map((c) => `${seqs(c.nodeId)} (node ${c.nodeId})`).join(', ')}.`);

    // The victim puts one more file with the write of its directory's block back home held by a
    // fault rule (the new inode's block goes home first), so it is killed with the transaction
    // committed in its journal and only partly written home.
    const victim = nodes[nodeCount - 1]!;
    const victimFiles = clients[nodeCount - 1]!;
    const victimSlot = mounts.find((m) => m.node === victim.nodeId)?.slot;
    if (victimSlot === undefined) throw new Error(`node ${victim.nodeId} is not in the volume's slot map`);
    const heldBlock = dirInodes[nodeCount - 1]!;
    const inFlightPath = `/node${victim.nodeId}/inflight.bin`;
    const { put: inFlight, committedSequence } = await victimFiles.putHeldAfterCommit(inFlightPath, IN_FLIGHT_BYTES, { slot: victimSlot, dirInode: heldBlock, timeoutMs: DEMO_READY_TIMEOUT_MS });
    files.push(inFlight.file);
    obs.step(`4. Node ${victim.nodeId} puts ${inFlightPath} (${IN_FLIGHT_BYTES / 1024} KiB); a fault rule in the node holds its write of block ${heldBlock} (the directory) back`);
    obs.step(`   home, so transaction ${committedSequence} is committed in slot ${victimSlot}'s journal but only partly written home, and the put is not acknowledged.`);
    const survivors = nodes.slice(0, -1);
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    obs.step(`   kill -9 node ${victim.nodeId} (pid ${victim.pid}) with that put in flight.`);
    const waitMs = info.timing.deadMs + DEMO_FENCE_MARGIN_MS;
    const downs = await Promise.all(
      survivors.map((n) => n.waitEvent((e) => e.event === 'down' && e.peer === victim.nodeId && e.receivedAtMs >= killedAt, waitMs, `down event for node ${victim.nodeId}`)),
    );
    const fenced = await Promise.any(
      survivors.map((n) => n.waitEvent((e) => e.event === 'fenced' && e.peer === victim.nodeId && e.receivedAtMs >= killedAt, waitMs, `fenced event for node ${victim.nodeId}`)),
    );
    // Every survivor with the volume mounted tries the recovery; one does it, the others skip it.
    const outcomes = await Promise.all(
      survivors.map(async (n) => ({
        node: n.nodeId,
        outcome: (await n.waitEvent((e) => e.recovery?.node === victim.nodeId && e.receivedAtMs >= killedAt, waitMs, `recovery of node ${victim.nodeId}'s slot`)).recovery!,
      })),
    );
    if (await inFlight.acked.then(() => true, () => false)) failures.push(`the held put of ${inFlightPath} was acknowledged`);
    const downMs = downs.map((e) => e.receivedAtMs - killedAt);
    const fencedMs = fenced.receivedAtMs - killedAt;
    obs.step(`5. Survivors declared node ${victim.nodeId} dead after ${range(downMs)} ms; it was fenced ${fencedMs} ms after the kill (by node ${fenced.node}).`);
    const recovered = outcomes.filter((x) => x.outcome.kind === 'recovered');
    let recovery: DemoRecovery | undefined;
    if (recovered.length !== 1) failures.push(`${recovered.length} survivors recovered slot ${victimSlot} (exactly one must)`);
    const r0 = recovered[0];
    if (r0 !== undefined && r0.outcome.kind === 'recovered') {
      const t = r0.outcome.times;
      const rel = (ms: number): number => ms - killedAt;
      recovery = {
        by: r0.node, slot: r0.outcome.slot, replayed: r0.outcome.replayed,
        skippedBy: outcomes.filter((x) => x.outcome.kind === 'skipped').map((x) => x.node),
        afterKillMs: {
          down: t.down === undefined ? undefined : rel(t.down), fenced: t.fenced === undefined ? undefined : rel(t.fenced),
          superLock: rel(t.superLock), replayed: rel(t.replayed), clean: rel(t.clean), slotFreed: rel(t.slotFreed),
        },
      };
      const a = recovery.afterKillMs;
      obs.step(`   Node ${recovery.by} recovered slot ${recovery.slot} ${a.slotFreed} ms after the kill${recovery.skippedBy.length > 0 ? ` (node${recovery.skippedBy.length > 1 ? 's' : ''} ${recovery.skippedBy.join(', ')} found it done and skipped it)` : ''}:`);
      for (const tx of recovery.replayed) obs.step(`     transaction ${tx.sequence} replayed: home blocks ${tx.homeBlocks.join(', ')}`);
      if (recovery.replayed.length === 0) obs.step(`     no transaction to replay`);
      obs.step(`     after the kill: fenced ${a.fenced ?? '?'} ms, superblock lock ${a.superLock} ms, journal replayed ${a.replayed} ms, marked clean ${a.clean} ms, slot ${recovery.slot} free ${a.slotFreed} ms`);
      if (!recovery.replayed.some((tx) => tx.sequence === committedSequence)) failures.push(`transaction ${committedSequence}, committed before the kill, was not replayed`);
    }
    const mountsAfter = await readVolumeMounts([volume]);
    const victimSlotFreed = !mountsAfter.some((m) => m.slot === victimSlot);
    if (!victimSlotFreed) failures.push(`slot ${victimSlot} is still taken after the recovery`);
    obs.status(await clusterStatus(image));

    // Read every file back through the first survivor.
    await clients[0]!.verify(files);
    const acked = files.filter((f) => f.acknowledged);
    const intact = acked.filter((f) => f.afterRecovery === 'intact');
    if (intact.length !== acked.length) failures.push(`${acked.length - intact.length} acknowledged files are not intact`);
    const inFlightState = inFlight.file.afterRecovery;
    if (inFlightState !== 'intact' && inFlightState !== 'absent') failures.push(`the in-flight ${inFlightPath} is ${inFlightState} (must be whole or absent)`);
    obs.step(`6. Read back through node ${clients[0]!.nodeId} after the recovery: ${intact.length} of ${acked.length} acknowledged files intact (sha256 equal); the unacknowledged ${inFlightPath} is ${inFlightState === 'intact' ? 'whole' : inFlightState}.`);
    obs.files([...files].sort((x, y) => x.path.localeCompare(y.path)));

    for (const c of clients.splice(0)) c.close();
    await stopAll(survivors);
    const codes = survivors.map((n) => n.child.exitCode);
    const clean = codes.every((c) => c === 0);
    const allSlotsFreeAtEnd = (await readVolumeMounts([volume])).length === 0;
    obs.step(`7. Survivors unmounted the volume and left the cluster ${clean ? 'cleanly' : `with exit codes ${codes.join(', ')}`}${allSlotsFreeAtEnd ? '; every slot is free' : '; some slot is still taken'}.`);
    if (!clean) failures.push(`survivors exited with ${codes.join(', ')}`);
    if (!allSlotsFreeAtEnd) failures.push('a slot is still taken after every node left');
    if (volumeSlots !== nodeCount) failures.push(`${volumeSlots} of ${nodeCount} nodes heartbeat on the volume`);
    if (Math.max(...downMs) > info.timing.deadMs + DEMO_FENCE_MARGIN_MS) failures.push(`death declared only after ${Math.max(...downMs)} ms`);
    return {
      image, volume, volumeUuid, volumeHeartbeatSlots: volumeSlots, nodes: nodeCount, timing: info.timing, allUpMs, mounts,
      victim: victim.nodeId, victimSlot, downMs, fencedMs, fencedBy: fenced.node,
      inFlight: { path: inFlightPath, heldBlock, committedSequence }, recovery, files,
      victimSlotFreed, allSlotsFreeAtEnd, survivorsLeftCleanly: clean, failures, verdict: failures.length === 0 ? 'PASS' : 'FAIL',
    };
  } finally {
    process.removeListener('SIGINT', onSignal);
    for (const c of clients) c.close();
    await stopAll(nodes);
    // Every node has exited; only the killed node's stale socket can be left.
    fs.rmSync(runDir, { recursive: true, force: true });
    fs.rmSync(scratchDir, { recursive: true, force: true });
  }
}
