// Command actions loaded when their command runs. Every `sanbox` process registers every command
// (names, options, help: cheap, static), but imports only the implementation of the one it runs;
// loading all of them cost ≈ 0.15 s of CPU per process (docs/test-time.md, "Lazy commands").

/**
 * An action for commander that imports its module when the command runs, then calls the function
 * `pick` chooses from it with commander's arguments. What it throws reaches tools/cli.ts as before.
 */
export function lazyAction<M, A extends unknown[]>(load: () => Promise<M>, pick: (m: M) => (...args: A) => unknown): (...args: A) => Promise<void> {
  return async (...args: A): Promise<void> => {
    await pick(await load())(...args);
  };
}
