// A promise the test settles by hand, and a few turns of the event loop: for in-process tests that
// hold an operation at a step (a flush, a lock, a quorum hold) and look at what happened meanwhile.

export interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}

export function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Lets the event loop turn `n` times (setImmediate), so whatever was ready has run. */
export const ticks = async (n = 20): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};
