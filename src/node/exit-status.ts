// The exit status of a node that fenced itself, in a module of its own: tools/cli.ts maps errors to
// it at every `sanbox` start, without loading the node code of src/node/run.ts.

/** Exit status of a node that fenced itself (its I/O is stopped; its peers fence it). */
export const EXIT_SELF_FENCED = 3;
