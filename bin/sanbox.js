#!/usr/bin/env node
// Thin launcher: the command line is compiled to dist/ by `npm install` (the prepare script).
import('../dist/tools/sanbox.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
    process.stderr.write('sanbox: not built yet; run `npm install` (or `npm run build`) first\n');
    process.exit(1);
  }
  throw err;
});
