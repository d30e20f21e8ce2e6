// The fuzz tests' one rule: a codec given bad bytes returns a result or throws a FormatError,
// never anything else (a TypeError or RangeError there is a bug in the codec).

import type { ExecutionContext } from 'ava';
import { FormatError } from '../../src/errors.js';

/**
 * Runs `fn`. 'parsed' if it returned, 'refused' if it threw a FormatError; anything else thrown
 * fails the test (naming `what`, with the error's stack) and gives 'other'.
 */
export function onlyFormatError(t: ExecutionContext, what: string, fn: () => unknown): 'parsed' | 'refused' | 'other' {
  try {
    fn();
    return 'parsed';
  } catch (err) {
    if (err instanceof FormatError) return 'refused';
    t.fail(`${what}: ${err instanceof Error ? (err.stack ?? `${err.constructor.name}: ${err.message}`) : String(err)}`);
    return 'other';
  }
}

/** Deterministic PRNG (mulberry32): a failing fuzz case can be replayed from its seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
