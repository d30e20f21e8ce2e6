// Child process for the torn-read test: rewrites node `NODE`'s record sector of a cluster image,
// alternating two valid records (generations 1 and 2), each in two halves with TORN_MS between
// them, so a reader in another process sees torn sectors often; then rests STABLE_MS.
// Prints "ready" after the first full record. Runs until killed.
// Usage: node torn-record-writer.js IMG NODE TORN_MS STABLE_MS

import fs from 'node:fs';
import { readClusterImage, nodeRecordOffset } from '../../src/heartbeat/cluster-image.js';
import { sleepSyncMs } from '../../src/disk/sleep.js';
import { tornTestRecord } from './torn-record.js';

const [img, nodeText, tornText, stableText] = process.argv.slice(2);
const nodeId = Number(nodeText);
const tornMs = Number(tornText);
const stableMs = Number(stableText);
const info = await readClusterImage(img!);
const off = nodeRecordOffset(info, nodeId);
const records = [tornTestRecord(nodeId, 1n), tornTestRecord(nodeId, 2n)];
const half = records[0]!.length / 2;
const fd = fs.openSync(img!, 'r+');
fs.writeSync(fd, records[0]!, 0, records[0]!.length, off);
process.stdout.write('ready\n');
for (let i = 1; ; i++) {
  const rec = records[i % 2]!;
  fs.writeSync(fd, rec, 0, half, off);
  sleepSyncMs(tornMs);
  fs.writeSync(fd, rec, half, half, off + half);
  sleepSyncMs(stableMs);
}
