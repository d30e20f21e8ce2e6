// `sanbox cluster init|status` and `sanbox node`'s actions, loaded when one runs (tools/commands/cluster.ts
// registers them). Each imports the node code it needs itself: `cluster init` needs none of it.

import { hex64 } from '../../src/format/where.js';
import { SanboxError, UsageError } from '../../src/errors.js';
import { initClusterImage } from '../../src/heartbeat/cluster-image.js';
import { FENCE_POLICIES, type FencePolicy } from '../../src/heartbeat/fence-policy.js';
import { deriveTiming, presetTiming, TIMING_PRESETS } from '../../src/timing.js';
import { deviceList } from '../../src/volume/devices.js';
import type { ClusterStatus } from '../../src/node/status.js';
import { parseSizeBytes } from '../../src/units.js';
import { clusterImage } from '../image-arg.js';
import { printFields, printJson, printSection, printTable } from '../output.js';

function positiveInt(v: string, what: string): number {
  if (!/^\d+$/.test(v) || Number(v) <= 0) throw new UsageError(`${what} must be a positive integer, not '${v}'`);
  return Number(v);
}

function nonNegativeInt(v: string, what: string): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${what} must be a non-negative integer, not '${v}'`);
  return Number(v);
}

function printStatus(s: ClusterStatus): void {
  printTable(s.slots, [
    { header: 'Node', value: (r) => r.node, align: 'right' },
    { header: 'Name', value: (r) => r.name },
    { header: 'PID', value: (r) => r.pid ?? '', align: 'right' },
    { header: 'Seq', value: (r) => r.seq, align: 'right' },
    { header: 'Generation', value: (r) => r.generation },
    { header: 'State', value: (r) => r.state },
    { header: 'Age', value: (r) => (r.state === 'free' || r.ageMs === null ? '' : `${(r.ageMs / 1000).toFixed(1)}s`), align: 'right' },
  ]);
}

/** Cursor home + clear screen (ECMA-48 CUP and ED): what crm_mon and watch(1) do between frames. */
const CLEAR_SCREEN = '\x1b[H\x1b[2J';

function printReport(s: ClusterStatus): void {
  const t = s.timing;
  printFields([
    ['Cluster', s.cluster],
    ['Image', s.image],
    ['Quorum', `${s.quorum.quorate ? 'yes' : 'NO'} (${s.quorum.alive.length} of ${s.quorum.base.length} nodes up)`],
    ['Timing', `${t.preset}: interval ${t.intervalMs} ms, dead after ${t.deadMs} ms, I/O timeout ${t.ioTimeoutMs} ms`],
    ['Fencing', `self-fence after ${t.selfFenceMs} ms, gate wait ${t.fenceGateWaitMs} ms, power fence wait ${t.powerFenceWaitMs} ms (poll ${t.powerFencePollMs} ms), retry ≤ ${t.fenceRetryMsMax} ms`],
    ['Locks', `timeout ${t.lockTimeoutMs} ms, poll ${t.lockPollMinMs}..${t.lockPollMaxMs} ms, reservation lock wait ${t.reservationLockWaitMs} ms`],
    ['Join/NBD', `join probe ${t.joinProbeMs} ms, NBD I/O timeout ${t.nbdIoTimeoutMs} ms`],
    ['Quorum loss', `I/O to shared and private containers held ≤ ${t.quorumHoldMs} ms, then EIO`],
  ]);
  printStatus(s);
  printMounts(s);
  printActiveLvs(s);
}

function printActiveLvs(s: ClusterStatus): void {
  if (s.activeLvs.length === 0) return;
  process.stdout.write('\nActive LVs (LV locks granted in the lockspace; mode open: opened without the LV lock, changes refused):\n');
  printTable(s.activeLvs, [
    { header: 'LV', value: (a) => a.lv },
    { header: 'Node', value: (a) => a.node, align: 'right' },
    { header: 'Mode', value: (a) => a.mode },
    { header: 'Node state', value: (a) => s.slots[a.node]?.state ?? '?' },
  ]);
}

function printMounts(s: ClusterStatus): void {
  if (s.mounts === undefined) return;
  printSection("Mounts (from the volumes' slot maps)", s.mounts, [
    { header: 'Volume', value: (m) => m.volume },
    { header: 'Slot', value: (m) => m.slot, align: 'right' },
    { header: 'Node', value: (m) => m.node, align: 'right' },
    { header: 'Node state', value: (m) => s.slots[m.node]?.state ?? 'not a node of this cluster' },
    { header: 'Journal', value: (m) => (m.journalDirty ? 'dirty' : 'clean') },
  ]);
}

export async function init(image: string, o: Record<string, string | boolean | undefined>): Promise<void> {
  const sector = String(o.sectorSize);
  if (sector !== '512' && sector !== '4096') throw new UsageError(`--sector-size must be 512 or 4096, not '${sector}'`);
  const preset = String(o.timing);
  if (!(preset in TIMING_PRESETS)) throw new UsageError(`--timing must be one of ${Object.keys(TIMING_PRESETS).join(', ')}, not '${preset}'`);
  const base = presetTiming(preset);
  const custom = o.interval !== undefined || o.deadThreshold !== undefined || o.ioTimeout !== undefined;
  let timing = base;
  try {
    if (custom) {
      timing = deriveTiming(
        {
          intervalMs: o.interval !== undefined ? positiveInt(String(o.interval), '--interval') : base.intervalMs,
          deadThreshold: o.deadThreshold !== undefined ? positiveInt(String(o.deadThreshold), '--dead-threshold') : base.deadThreshold,
          ioTimeoutMs: o.ioTimeout !== undefined ? positiveInt(String(o.ioTimeout), '--io-timeout') : base.ioTimeoutMs,
        },
        'custom',
      );
    }
  } catch (err) {
    if (err instanceof SanboxError && err.code === 'EINVAL') throw new UsageError(err.message);
    throw err;
  }
  const nodeCount = positiveInt(String(o.nodes), '--nodes');
  if (nodeCount > 255) throw new UsageError(`--nodes must be at most 255 (o2hb node numbers 0..254), not ${nodeCount}`);
  const names = typeof o.nodeNames === 'string' ? o.nodeNames.split(',') : undefined;
  if (names !== undefined && names.length !== nodeCount) throw new UsageError(`--node-names lists ${names.length} names for ${nodeCount} nodes`);
  const dup = names?.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new UsageError(`--node-names names '${dup}' twice; each node needs its own name`);
  const info = await initClusterImage(image, {
    clusterName: String(o.name),
    nodeCount,
    sectorSizeBytes: Number(sector) as 512 | 4096,
    timing,
    lockspaceBytes: o.lockspaceSize !== undefined ? parseSizeBytes(String(o.lockspaceSize)) : undefined,
    locksPerNode: positiveInt(String(o.locksPerNode), '--locks-per-node'),
    runDir: typeof o.runDir === 'string' ? o.runDir : undefined,
    nodeNames: names,
    force: o.force === true,
  });
  if (o.json) {
    printJson({
      image: info.path,
      cluster: info.config.clusterName,
      uuid: info.header.clusterUuid.toString('hex'),
      nodes: info.config.nodeCount,
      sectorSizeBytes: info.header.sectorSizeBytes,
      imageSizeBytes: info.header.imageSizeBytes,
      timing: info.timing,
      runDir: info.config.runDir,
      regions: info.header.regions,
    });
    return;
  }
  process.stdout.write(
    `Cluster "${info.config.clusterName}" created in ${image}: ${nodeCount} nodes, ${info.header.sectorSizeBytes}-byte sectors, ` +
      `timing ${info.timing.preset} (interval ${info.timing.intervalMs} ms, dead after ${info.timing.deadMs} ms, I/O timeout ${info.timing.ioTimeoutMs} ms).\n`,
  );
}

export async function status(positional: string | undefined, o: { cluster?: string; json: boolean; watch?: string | boolean; count?: string; volume?: string[]; devices?: string }): Promise<void> {
  const image = clusterImage(positional, o.cluster);
  const { readVolumeMounts, StatusReader } = await import('../../src/node/status.js');
  const reader = await StatusReader.open(image);
  const read = async (lastChange?: Map<number, { seq: bigint; atMs: number }>): Promise<ClusterStatus> => {
    const s = await reader.read(lastChange);
    if (o.volume !== undefined) s.mounts = await readVolumeMounts(o.volume, deviceList([], o.devices));
    return s;
  };
  try {
    if (o.watch === undefined) {
      const s = await read();
      if (o.json) printJson(s);
      else printReport(s);
      return;
    }
    const everyMs = o.watch === true ? reader.intervalMs : positiveInt(String(o.watch), '--watch');
    const count = o.count !== undefined ? nonNegativeInt(o.count, '--count') : Infinity;
    const lastChange = new Map<number, { seq: bigint; atMs: number }>();
    let stop = false;
    process.once('SIGINT', () => (stop = true));
    // On a terminal the view is redrawn in place (like crm_mon); piped, frames are appended.
    const redraw = process.stdout.isTTY === true && !o.json;
    for (let i = 0; i < count && !stop; i++) {
      const s = await read(lastChange);
      if (o.json) process.stdout.write(JSON.stringify(s) + '\n');
      else {
        if (redraw) process.stdout.write(CLEAR_SCREEN);
        process.stdout.write(`--- ${new Date().toISOString()} ${s.cluster}\n`);
        if (redraw) printReport(s);
        else {
          printStatus(s);
          printMounts(s);
        }
      }
      if (i + 1 < count) await new Promise((r) => setTimeout(r, everyMs));
    }
  } finally {
    await reader.close();
  }
}

export async function node(positional: string | undefined, o: { cluster?: string; node: string; name?: string; fence: string; volume?: string[]; mount?: string[]; devices?: string; json: boolean }): Promise<void> {
  if (!FENCE_POLICIES.includes(o.fence as FencePolicy)) throw new UsageError(`--fence must be one of ${FENCE_POLICIES.join(', ')}, not '${o.fence}'`);
  const image = clusterImage(positional, o.cluster);
  const nodeId = nonNegativeInt(o.node, '--node');
  const stamp = (): string => new Date().toISOString();
  const { runNode } = await import('../../src/node/run.js');
  const exitCode = await runNode(
    { clusterImage: image, nodeId, name: o.name, fencePolicy: o.fence as FencePolicy, volumes: o.volume, mounts: o.mount, devices: deviceList([], o.devices) },
    {
      log: (msg, data) => {
        if (o.json) process.stdout.write(JSON.stringify({ t: stamp(), node: nodeId, msg, ...data }) + '\n');
        else process.stdout.write(`${stamp()} node${nodeId}: ${msg}\n`);
      },
      event: (ev) => {
        if (o.json) process.stdout.write(JSON.stringify({ t: stamp(), node: nodeId, event: ev.kind, peer: ev.nodeId, generation: hex64(ev.generation) }) + '\n');
      },
    },
  );
  if (exitCode !== 0) process.exit(exitCode);
}
