// What a `sanbox` process loads (docs/test-time.md, "Lazy commands"): every command is registered
// (names, options, help) from small modules, and only the command that runs imports its
// implementation, tools/commands/X-actions.ts, with the library code it uses. Every module a
// process loads is recorded by a loader hook (helpers/import-log.ts), in separate OS processes.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildProgram } from '../tools/cli.js';
import { IMPORT_LOG_ENV } from './helpers/import-log.js';
import { runToolWith } from './helpers/run-tool.js';
import { REPO_ROOT, runSanbox, tempDir } from './helpers/tmp.js';

const DIST = path.join(REPO_ROOT, 'dist');
const IMPORT_LOG_PRELOAD = path.join(DIST, 'test/helpers/import-log.js');
/** Bound on the one process that prints every command's help. */
const ALL_HELP_TIMEOUT_MS = 60_000;
/** Room for every command's help text (≈ 150 KB). */
const ALL_HELP_MAX_BUFFER_BYTES = 4 * 1024 * 1024;
/** The modules of src/node that help texts name, kept small for that: everything else there is the node runtime. */
const LIGHT_NODE_MODULES = ['src/node/exit-status.js', 'src/node/demo-limits.js'];

/** The dist/ paths (e.g. tools/commands/disk-actions.js) of the modules a log recorded. */
function loaded(log: string): string[] {
  const prefix = pathToFileURL(DIST).href + '/';
  return fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter((u) => u.startsWith(prefix)).map((u) => u.slice(prefix.length)) : [];
}

const actionModules = (mods: string[]): string[] => mods.filter((m) => /^tools\/commands\/[a-z0-9]+-actions\.js$/.test(m)).sort();
const nodeRuntime = (mods: string[]): string[] => mods.filter((m) => m.startsWith('src/node/') && !LIGHT_NODE_MODULES.includes(m));

/** Runs `sanbox ARGS…` as a process with the import log; its result and the modules it loaded. */
async function sanboxLoading(t: ExecutionContext, args: string[]): Promise<{ code: number | null; stderr: string; modules: string[] }> {
  const log = path.join(tempDir(t), `imports-${args.join('-').replace(/[^a-z0-9-]/gi, '_')}.log`);
  const r = await runSanbox(t, args, { env: { NODE_OPTIONS: `--import=${IMPORT_LOG_PRELOAD}`, [IMPORT_LOG_ENV]: log } });
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
  const log = path.join(tempDir(t), 'imports-help.log');
  const script = `const { main } = await import(${JSON.stringify(pathToFileURL(path.join(DIST, 'tools/cli.js')).href)});
    const codes = [];
    for (const p of ${JSON.stringify(paths)}) codes.push(await main([...p, '--help']));
    process.stderr.write(JSON.stringify(codes));`;
  const r = await runToolWith(process.execPath, ['--import', IMPORT_LOG_PRELOAD, '--input-type=module', '-e', script], {
    env: { ...process.env, [IMPORT_LOG_ENV]: log },
    timeoutMs: ALL_HELP_TIMEOUT_MS,
    maxBufferBytes: ALL_HELP_MAX_BUFFER_BYTES,
    noExitCode: -1,
  });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stderr) as number[], paths.map(() => 0), 'every --help exits 0');
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
});
