// Loader hooks of import-log.ts: every module loaded (ES modules, and CommonJS ones reached by an
// import) is appended to the log file import-log.ts names, before it is loaded.

import fs from 'node:fs';
import type { ImportLogData } from './import-log.js';

type LoadNext = (url: string, context: unknown) => Promise<unknown>;

let logPath: string | undefined;

export function initialize(data: ImportLogData): void {
  logPath = data.logPath;
}

export async function load(url: string, context: unknown, next: LoadNext): Promise<unknown> {
  if (logPath !== undefined) fs.appendFileSync(logPath, `${url}\n`);
  return next(url, context);
}
