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

/** Environment variable that replays a fuzz run: the seed a failed test logged. */
export const FUZZ_SEED_ENV = 'SANBOX_FUZZ_SEED';

/**
 * The seed of one fuzz test: SANBOX_FUZZ_SEED when set (to replay a failure), otherwise a fresh
 * random one, so every run explores new inputs. It is logged with t.log, which ava prints for a
 * failed test: `SANBOX_FUZZ_SEED=N npx ava dist/test/FILE.test.js --match 'TITLE'` replays it.
 */
export function fuzzSeed(t: ExecutionContext): number {
  const env = process.env[FUZZ_SEED_ENV];
  let seed: number;
  if (env !== undefined && env !== '') {
    seed = Number(env);
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffff_ffff) throw new Error(`${FUZZ_SEED_ENV}=${env} is not a 32-bit unsigned integer`);
  } else {
    seed = Math.floor(Math.random() * 0x1_0000_0000);
  }
  t.log(`fuzz seed ${seed} (replay with ${FUZZ_SEED_ENV}=${seed})`);
  return seed;
}

/** A seeded source of random inputs for one fuzz test (see fuzzSeed). */
export interface FuzzRandom {
  readonly seed: number;
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max) — or [0, min) when max is omitted (crypto.randomInt's shape). */
  int(min: number, max?: number): number;
  bytes(n: number): Buffer;
}

export function fuzzRandom(t: ExecutionContext): FuzzRandom {
  const seed = fuzzSeed(t);
  const next = prng(seed);
  const int = (min: number, max?: number): number => (max === undefined ? Math.floor(next() * min) : min + Math.floor(next() * (max - min)));
  return {
    seed,
    next,
    int,
    bytes: (n) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
  };
}
