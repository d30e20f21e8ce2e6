// Preload (`node --import …/import-log.js`) that records every module a process loads: the URL of
// each, one a line, appended to the file named by SANBOX_IMPORT_LOG. The hooks run in Node's loader
// thread (node:module register) and get the file's path from here (initialize's data); a process
// started without the variable records nothing.

import { register } from 'node:module';

/** The environment variable naming the log file. */
export const IMPORT_LOG_ENV = 'SANBOX_IMPORT_LOG';

/** What initialize() in import-log-hooks.ts receives. */
export interface ImportLogData {
  logPath: string;
}

const logPath = process.env[IMPORT_LOG_ENV];
if (logPath !== undefined && logPath !== '') register('./import-log-hooks.js', import.meta.url, { data: { logPath } satisfies ImportLogData });
