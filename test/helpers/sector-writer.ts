// Child process for the multi-process disk tests: opens IMG as a sanbox disk (shared in-use
// guard) and writes self-checking records into the sectors s where s % writers == id, `rounds`
// times over, interleaving with the other writers. Faults come from SANBOX_FAULTS if set.
// Usage: node sector-writer.js IMG ID WRITERS SECTORS ROUNDS

import { openFileDevice } from '../../src/disk/open.js';
import { makeRecord, RECORD_BYTES } from './sector-record.js';

const [img, idText, writersText, sectorsText, roundsText] = process.argv.slice(2);
const id = Number(idText);
const writers = Number(writersText);
const sectors = Number(sectorsText);
const rounds = Number(roundsText);

const dev = openFileDevice(img!);
let failures = 0;
for (let round = 1; round <= rounds; round++) {
  for (let s = id; s < sectors; s += writers) {
    try {
      dev.writeSync(makeRecord(id, s, round), s * RECORD_BYTES);
    } catch (err) {
      failures++;
      process.stderr.write(`${(err as Error).message}\n`);
    }
  }
}
dev.closeSync();
process.stdout.write(JSON.stringify({ id, failures }) + '\n');
