// What a `sanbox` process loads (docs/test-time.md, "Lazy commands"): every command is registered
// (names, options, help) from small modules, and only the command that runs imports its
// implementation, tools/commands/X-actions.ts, with the library code it uses. Every module a
// process loads is recorded by a loader hook (helpers/import-log.ts), in separate OS processes.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildProgram } from '../tools/cli.js';
import { lazyAction, missingBuiltModule, NOT_BUILT_MESSAGE } from '../tools/commands/lazy.js';
import { SanboxError } from '../src/errors.js';
import { IMPORT_LOG_ENV } from './helpers/import-log.js';
import { runToolWith } from './helpers/run-tool.js';
import { REPO_ROOT, runSanbox, SANBOX_BIN, tempDir } from './helpers/tmp.js';

const DIST = path.join(REPO_ROOT, 'dist');
const IMPORT_LOG_PRELOAD = path.join(DIST, 'test/helpers/import-log.js');
/** Bound on the one process that prints every command's help. */
const ALL_HELP_TIMEOUT_MS = 60_000;
/** Room for every command's help text (≈ 150 KB). */
const ALL_HELP_MAX_BUFFER_BYTES = 4 * 1024 * 1024;
/** The modules of src/node that help texts name, kept small for that: everything else there is the node runtime. */
const LIGHT_NODE_MODULES = ['src/node/exit-status.js', 'src/node/demo-limits.js'];

/**
 * The dist/ paths (e.g. tools/commands/disk-actions.js) of the modules a log recorded. A log that
 * is missing or lacks the command line's own module is a hook that did not run: an error, never an
 * empty list that every "loads nothing of X" check would pass.
 */
function loaded(log: string): string[] {
  if (!fs.existsSync(log)) throw new Error(`${log}: no import log: the loader hook did not run`);
  const prefix = pathToFileURL(DIST).href + '/';
  const modules = fs.readFileSync(log, 'utf8').split('\n').filter((u) => u.startsWith(prefix)).map((u) => u.slice(prefix.length));
  if (!modules.includes('tools/cli.js')) throw new Error(`${log}: tools/cli.js is not among the ${modules.length} modules recorded`);
  return modules;
}

/** NODE_OPTIONS that add the import log's preload to the ones this process was given (quoted: a path may hold spaces). */
function nodeOptionsWithImportLog(): string {
  return [process.env.NODE_OPTIONS, `--import=${JSON.stringify(IMPORT_LOG_PRELOAD)}`].filter((o) => o !== undefined && o !== '').join(' ');
}

const actionModules = (mods: string[]): string[] => mods.filter((m) => /^tools\/commands\/[a-z0-9]+-actions\.js$/.test(m)).sort();
const nodeRuntime = (mods: string[]): string[] => mods.filter((m) => m.startsWith('src/node/') && !LIGHT_NODE_MODULES.includes(m));

/** Runs `sanbox ARGS…` as a process with the import log; its result and the modules it loaded. */
async function sanboxLoading(t: ExecutionContext, args: string[]): Promise<{ code: number | null; stderr: string; modules: string[] }> {
  const log = path.join(tempDir(t), `imports-${args.join('-').replace(/[^a-z0-9-]/gi, '_')}.log`);
  const r = await runSanbox(t, args, { env: { NODE_OPTIONS: nodeOptionsWithImportLog(), [IMPORT_LOG_ENV]: log } });
  return { code: r.code, stderr: r.stderr, modules: loaded(log) };
}

test('--version and the help of every command and subcommand load no command implementation and no node runtime', async (t) => {
  const v = await sanboxLoading(t, ['--version']);
  t.is(v.code, 0, v.stderr);
  t.true(v.modules.includes('tools/commands/index.js'), 'the log records the modules the process loads');
  t.deepEqual(actionModules(v.modules), []);
  t.deepEqual(nodeRuntime(v.modules), []);

  // Every command's --help, in one process: tools/cli.ts's main, as the `sanbox` program runs it.
  const walk = (c: ReturnType<typeof buildProgram>, at: string[]): string[][] => [at, ...c.commands.flatMap((s) => walk(s, [...at, s.name()]))];
  const paths = walk(buildProgram(), []);
  t.true(paths.length > 40, `${paths.length} commands`);
  const dir = tempDir(t);
  const log = path.join(dir, 'imports-help.log');
  // The exit codes go to a file of their own: stderr may carry a Node warning as well.
  const codesFile = path.join(dir, 'help-codes.json');
  const script = `const { main } = await import(${JSON.stringify(pathToFileURL(path.join(DIST, 'tools/cli.js')).href)});
    const { writeFileSync } = await import('node:fs');
    const codes = [];
    for (const p of ${JSON.stringify(paths)}) codes.push(await main([...p, '--help']));
    writeFileSync(${JSON.stringify(codesFile)}, JSON.stringify(codes));`;
  const r = await runToolWith(process.execPath, ['--import', IMPORT_LOG_PRELOAD, '--input-type=module', '-e', script], {
    env: { ...process.env, [IMPORT_LOG_ENV]: log },
    timeoutMs: ALL_HELP_TIMEOUT_MS,
    maxBufferBytes: ALL_HELP_MAX_BUFFER_BYTES,
    noExitCode: -1,
  });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(fs.readFileSync(codesFile, 'utf8')) as number[], paths.map(() => 0), 'every --help exits 0');
  t.true(r.stdout.includes('Usage: sanbox lvs [options]'), 'the help texts were printed');
  const modules = loaded(log);
  t.deepEqual(actionModules(modules), []);
  t.deepEqual(nodeRuntime(modules), []);
});

test('a command loads its own actions and the library code it uses, not the node runtime it does not', async (t) => {
  const dir = tempDir(t);
  const pv = path.join(dir, 'pv.img');
  const cluster = path.join(dir, 'cluster.img');
  for (const args of [['disk', 'create', pv, '--size', '16M'], ['cluster', 'init', cluster, '--nodes', '2', '--name', 'lazy']]) {
    const r = await runSanbox(t, args);
    t.is(r.code, 0, r.stderr);
  }

  const disk = await sanboxLoading(t, ['disk', 'info', pv]);
  t.is(disk.code, 0, disk.stderr);
  t.deepEqual(actionModules(disk.modules), ['tools/commands/disk-actions.js']);
  t.deepEqual(disk.modules.filter((m) => m === 'src/volume/manager.js' || m.startsWith('src/fs/')), [], 'disk info loads no volume manager and no ocfs2');
  t.deepEqual(nodeRuntime(disk.modules), []);

  for (const args of [['pvcreate', pv], ['vgcreate', 'vg0', pv]]) {
    const r = await runSanbox(t, args);
    t.is(r.code, 0, r.stderr);
  }
  const lvs = await sanboxLoading(t, ['lvs', '--devices', pv]);
  t.is(lvs.code, 0, lvs.stderr);
  t.deepEqual(actionModules(lvs.modules), ['tools/commands/lvm-actions.js']);
  t.true(lvs.modules.includes('src/volume/manager.js'));
  t.deepEqual(nodeRuntime(lvs.modules), [], 'a report not run as a node loads no node code');

  // A failure after the implementation was imported still reaches tools/cli.ts: one line, exit 1.
  const dlm = await sanboxLoading(t, ['dlm', 'ls', cluster]);
  t.is(dlm.code, 1);
  t.regex(dlm.stderr, /^sanbox: .*lockspace is not formatted yet.*\n$/);
  t.deepEqual(actionModules(dlm.modules), ['tools/commands/dlm-actions.js']);
  t.false(dlm.modules.includes('src/node/lock-run.js'), 'dlm ls loads no lock-and-run node');
  t.deepEqual(nodeRuntime(dlm.modules), [], 'dlm ls loads no node runtime');
});

/** Bound on one `sanbox` process of the half-built tree. */
const HALF_BUILT_RUN_TIMEOUT_MS = 30_000;
/** Room for a help text or a one-line error. */
const HALF_BUILT_MAX_BUFFER_BYTES = 1024 * 1024;

test('a half-built dist/ (an actions module missing) is the launcher\'s one line for a missing dist/, naming the file, exit 1; help still works', async (t) => {
  // A copy of the program whose build stopped before disk-actions.js: bin/, package.json (ES
  // modules), dist/src and dist/tools, and the repository's node_modules (commander).
  const root = tempDir(t);
  fs.cpSync(path.dirname(SANBOX_BIN), path.join(root, 'bin'), { recursive: true });
  fs.copyFileSync(path.join(REPO_ROOT, 'package.json'), path.join(root, 'package.json'));
  for (const d of ['src', 'tools']) fs.cpSync(path.join(DIST, d), path.join(root, 'dist', d), { recursive: true });
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(root, 'node_modules'));
  fs.rmSync(path.join(root, 'dist/tools/commands/disk-actions.js'));
  const run = (args: string[]) =>
    runToolWith(process.execPath, [path.join(root, 'bin', path.basename(SANBOX_BIN)), ...args], { env: { ...process.env, SANBOX_DEBUG: '' }, timeoutMs: HALF_BUILT_RUN_TIMEOUT_MS, maxBufferBytes: HALF_BUILT_MAX_BUFFER_BYTES, noExitCode: -1 });

  const help = await run(['disk', 'info', '--help']);
  t.is(help.code, 0, help.stderr);
  t.true(help.stdout.startsWith('Usage: sanbox disk info'), help.stdout);
  const info = await run(['disk', 'info', path.join(root, 'no.img')]);
  t.is(info.code, 1, info.stderr);
  t.is(info.stderr, `sanbox: ${NOT_BUILT_MESSAGE} (dist/tools/commands/disk-actions.js is missing)\n`);
  // Another command's actions are there: it runs (and fails on its own terms).
  const ls = await run(['dlm', 'ls', path.join(root, 'no.img')]);
  t.is(ls.code, 1, ls.stderr);
  t.notRegex(ls.stderr, /not built/);

  // Without dist/ at all the launcher says the same.
  fs.rmSync(path.join(root, 'dist'), { recursive: true });
  const none = await run(['--version']);
  t.is(none.code, 1, none.stderr);
  t.is(none.stderr, `sanbox: ${NOT_BUILT_MESSAGE}\n`);
});

test('lazyAction: only a file of dist/ missing while the actions load is "not built"; a missing package, a file elsewhere, or the action\'s own error is passed on', async (t) => {
  const dir = tempDir(t);
  const rootUrl = pathToFileURL(dir + path.sep).href;
  const gone = pathToFileURL(path.join(dir, 'tools', 'gone-actions.js')).href;
  // Node's own errors: a missing file carries its url, a missing package none.
  const fileErr = await import(gone).then(() => undefined, (e: unknown) => e);
  t.is((fileErr as NodeJS.ErrnoException | undefined)?.code, 'ERR_MODULE_NOT_FOUND');
  t.is(missingBuiltModule(fileErr, rootUrl), 'tools/gone-actions.js');
  t.is(missingBuiltModule(fileErr, pathToFileURL(path.join(dir, 'elsewhere') + path.sep).href), undefined, 'a file outside the tree');
  const packageErr = await import('sanbox-no-such-package-' + 'x').then(() => undefined, (e: unknown) => e);
  t.is((packageErr as NodeJS.ErrnoException | undefined)?.code, 'ERR_MODULE_NOT_FOUND');
  t.is(missingBuiltModule(packageErr, rootUrl), undefined, 'a missing package is not a half build');
  // Through lazyAction with the real dist/: a file outside it is passed on as it was.
  const outside = lazyAction(() => import(gone) as Promise<{ run: () => void }>, (m) => m.run);
  const outsideErr = await t.throwsAsync(outside());
  t.false(outsideErr instanceof SanboxError);
  const own = lazyAction(async () => ({ run: async () => void (await import(gone)) }), (m) => m.run);
  const ownErr = await t.throwsAsync(own());
  t.is((ownErr as NodeJS.ErrnoException | undefined)?.code, 'ERR_MODULE_NOT_FOUND', 'passed on as it was');
  t.false(ownErr instanceof SanboxError);
});
