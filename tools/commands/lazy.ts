// Command actions loaded when their command runs. Every `sanbox` process registers every command
// (names, options, help: cheap, static), but imports only the implementation of the one it runs;
// loading all of them cost ≈ 0.15 s of CPU per process (docs/test-time.md, "Lazy commands").

import { SanboxError } from '../../src/errors.js';

/**
 * What a command whose actions module is missing says: a half-built dist/ (an interrupted build, a
 * new command not compiled yet). The same line bin/sanbox.js prints when dist/ is missing entirely
 * (it runs before dist/ exists, so it cannot import this).
 */
export const NOT_BUILT_MESSAGE = 'not built yet; run `npm install` (or `npm run build`) first';

/**
 * An action for commander that imports its module when the command runs, then calls the function
 * `pick` chooses from it with commander's arguments. What it throws reaches tools/cli.ts as before;
 * a module that cannot be found while the actions load is the one-line NOT_BUILT_MESSAGE (exit 1),
 * and only then: the same error from the action itself is the action's own.
 */
export function lazyAction<M, A extends unknown[]>(load: () => Promise<M>, pick: (m: M) => (...args: A) => unknown): (...args: A) => Promise<void> {
  return async (...args: A): Promise<void> => {
    let m: M;
    try {
      m = await load();
    } catch (err) {
      if ((err as NodeJS.ErrnoException)?.code === 'ERR_MODULE_NOT_FOUND') throw new SanboxError('ENOENT', NOT_BUILT_MESSAGE, { cause: err });
      throw err;
    }
    await pick(m)(...args);
  };
}
