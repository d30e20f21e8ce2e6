// Child process for liveness tests: heartbeats as o2hb node NODE in a volume's region — a new
// hb_seq every INTERVAL_MS — until SIGTERM, then writes the clean-stop block (generation 0) and
// exits. A separate process, so a busy test process cannot make it look dead.
// Usage: node o2hb-beater.js IMG REGION_OFFSET BLOCK_BYTES NODE INTERVAL_MS

import fs from 'node:fs';
import { encodeO2hbBlock } from '../../src/format/o2hb-block.js';

const [img, offsetText, bytesText, nodeText, intervalText] = process.argv.slice(2);
const blockBytes = Number(bytesText);
const nodeId = Number(nodeText);
const at = Number(offsetText) + nodeId * blockBytes;
const fd = fs.openSync(img!, 'r+');
let seq = BigInt(Math.floor(Date.now() / 1000));
const GENERATION = 0x5eed_0001n;
const beat = (generation: bigint): void => {
  seq += 1n;
  fs.writeSync(fd, encodeO2hbBlock({ seq, nodeId, generation, deadMs: 62_000 }, blockBytes), 0, blockBytes, at);
  fs.fdatasyncSync(fd);
};
beat(GENERATION);
process.stdout.write('beating\n');
const timer = setInterval(() => beat(GENERATION), Number(intervalText));
process.on('SIGTERM', () => {
  clearInterval(timer);
  beat(0n);
  fs.closeSync(fd);
  process.exit(0);
});
