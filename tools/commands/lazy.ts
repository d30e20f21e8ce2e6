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

/** The compiled tree, dist/ (this file is dist/tools/commands/lazy.js). */
const DIST_ROOT_URL = new URL('../../', import.meta.url).href;

/**
 * The path under dist/ of a module of our own compiled tree that `err` says is missing: the build is
 * incomplete. Anything else missing (an npm package, which Node reports without a url; a file outside
 * dist/) is undefined: its own error, which a rebuild would not fix (review of the lazy commands).
 */
export function missingBuiltModule(err: unknown, distRootUrl: string = DIST_ROOT_URL): string | undefined {
  const e = err as (NodeJS.ErrnoException & { url?: unknown }) | undefined;
  if (e?.code !== 'ERR_MODULE_NOT_FOUND' || typeof e.url !== 'string' || !e.url.startsWith(distRootUrl)) return undefined;
  return e.url.slice(distRootUrl.length);
}

/**
 * An action for commander that imports its module when the command runs, then calls the function
 * `pick` chooses from it with commander's arguments. What it throws reaches tools/cli.ts as before;
 * a file of dist/ that cannot be found while the actions load is the one line NOT_BUILT_MESSAGE,
 * naming the file (exit 1), and only then: a missing package, or the same error from the action
 * itself, is passed on as it was.
 */
export function lazyAction<M, A extends unknown[]>(load: () => Promise<M>, pick: (m: M) => (...args: A) => unknown): (...args: A) => Promise<void> {
  return async (...args: A): Promise<void> => {
    let m: M;
    try {
      m = await load();
    } catch (err) {
      const missing = missingBuiltModule(err);
      if (missing !== undefined) throw new SanboxError('ENOENT', `${NOT_BUILT_MESSAGE} (dist/${missing} is missing)`, { cause: err });
      throw err;
    }
    await pick(m)(...args);
  };
}
