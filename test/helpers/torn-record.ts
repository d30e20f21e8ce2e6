// The two records the torn-read test's writer alternates between (test/helpers/torn-record-writer.ts).

import { encodeNodeRecord } from '../../src/format/node-record.js';

export function tornTestRecord(nodeId: number, generation: bigint): Buffer {
  return encodeNodeRecord({
    nodeId,
    generation,
    pid: 4242,
    pidStartTicks: 7n,
    bootId: Buffer.alloc(16, 0xb0),
    joinedAtMs: 0,
    prKey: 0x5342_0000_0000_0000n + generation,
    // Different lengths so the two halves of the two records differ.
    name: generation === 1n ? 'first' : 'the-second-incarnation',
    hostname: 'torn',
  });
}
