// Preload (`node --import …/import-log.js`) that records every module a process loads: the URL of
// each, one a line, appended to the file named by SANBOX_IMPORT_LOG. The hooks run in Node's loader
// thread (node:module register); a process started without the variable records nothing.

import { register } from 'node:module';

/** The environment variable naming the log file. */
export const IMPORT_LOG_ENV = 'SANBOX_IMPORT_LOG';

register('./import-log-hooks.js', import.meta.url);
