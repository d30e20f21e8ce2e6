// The file operations `sanbox ctl C N fs …` names (src/node/fs-commands.ts runs them in the node).
// Apart from fs-commands.ts so the ctl client checks the name without loading the node runtime.

export const FS_SUBCOMMANDS = ['mkdir', 'put', 'get', 'rm', 'ls'] as const;
export type FsSubcommand = (typeof FS_SUBCOMMANDS)[number];
