// Child process for the multi-process tests over any device spec (an image path or nbd://…):
// opens SPEC with openDevice (promise form) and writes self-checking records into the sectors s
// where s % writers == id, `rounds` times over, interleaving with the other writers.
// Usage: node device-sector-writer.js SPEC ID WRITERS SECTORS ROUNDS

import { openDevice } from '../../src/disk/open.js';
import { makeRecord, RECORD_BYTES } from './sector-record.js';

const [spec, idText, writersText, sectorsText, roundsText] = process.argv.slice(2);
const id = Number(idText);
const writers = Number(writersText);
const sectors = Number(sectorsText);
const rounds = Number(roundsText);

const dev = await openDevice(spec!);
let failures = 0;
for (let round = 1; round <= rounds; round++) {
  for (let s = id; s < sectors; s += writers) {
    try {
      await dev.write(makeRecord(id, s, round), s * RECORD_BYTES);
    } catch (err) {
      failures++;
      process.stderr.write(`${(err as Error).message}\n`);
    }
  }
}
await dev.flush();
await dev.close();
process.stdout.write(JSON.stringify({ id, failures }) + '\n');
