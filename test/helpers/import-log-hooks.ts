// Loader hooks of import-log.ts: every module loaded (ES modules, and CommonJS ones reached by an
// import) is appended to the file SANBOX_IMPORT_LOG names, before it is loaded.

import fs from 'node:fs';

type LoadNext = (url: string, context: unknown) => Promise<unknown>;

export async function load(url: string, context: unknown, next: LoadNext): Promise<unknown> {
  const log = process.env.SANBOX_IMPORT_LOG;
  if (log !== undefined && log !== '') fs.appendFileSync(log, `${url}\n`);
  return next(url, context);
}
