#!/usr/bin/env node
// One-command set-up: Debian packages, npm packages, the native addon and the recorder helper.
// Each step runs only when its output is missing or older than its inputs, so `npm test` can call it every time.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const buildOnly = process.argv.includes('--build-only');
const say = (msg) => process.stderr.write(`setup: ${msg}\n`);

function fail(msg) {
  process.stderr.write(`setup: ${msg}\n`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], cwd: root, ...opts });
  if (r.error) fail(`cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) fail(`${cmd} ${args.join(' ')} failed with status ${r.status}`);
}

// Newest modification time under a path (files only).
function newest(path) {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let t = 0;
  for (const name of readdirSync(path)) {
    if (name === 'build' || name === 'node_modules') continue;
    t = Math.max(t, newest(join(path, name)));
  }
  return t;
}

if (process.platform !== 'linux' || process.arch !== 'x64') fail(`replay-anywhere needs Linux on x86-64 (this is ${process.platform}/${process.arch})`);

// Debian packages: the emulator and disassembler libraries the addon links, and the tools tests drive.
const debianPackages = ['libunicorn-dev', 'libcapstone-dev', 'gdb', 'strace', 'qemu-user'];
function installed(pkg) {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).includes('install ok installed');
  } catch {
    return false;
  }
}
if (!buildOnly) {
  const missing = debianPackages.filter((p) => !installed(p));
  if (missing.length > 0) {
    const cmd = `apt-get update && apt-get install -y ${missing.join(' ')}`;
    if (process.getuid?.() !== 0) fail(`missing Debian packages: ${missing.join(', ')}. Run: sudo sh -c '${cmd}'`);
    say(`installing Debian packages: ${missing.join(' ')}`);
    run('sh', ['-c', `DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing.join(' ')}`]);
  }

  // npm packages: install when node_modules is missing or older than package.json.
  const stamp = join(root, 'node_modules', '.package-lock.json');
  if (!existsSync(stamp) || statSync(stamp).mtimeMs < statSync(join(root, 'package.json')).mtimeMs) {
    say('installing npm packages');
    run('npm', ['install', '--no-audit', '--no-fund']);
  }
}

// The N-API addon over libunicorn.
const addonDir = join(root, 'src', 'emulator', 'native');
const addon = join(addonDir, 'build', 'Release', 'emulator.node');
if (existsSync(join(addonDir, 'binding.gyp')) && (!existsSync(addon) || statSync(addon).mtimeMs < newest(addonDir))) {
  say('building the emulator addon');
  const gyp = join(root, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  const nodedir = existsSync('/usr/include/node/node_api.h') ? ['--nodedir=/usr'] : [];
  run(process.execPath, [gyp, 'rebuild', ...nodedir, '--loglevel=warn'], { cwd: addonDir });
}

// The recorder's ptrace helper.
const helperDir = join(root, 'src', 'recorder-native');
if (existsSync(join(helperDir, 'Makefile'))) run('make', ['-s', '-C', helperDir]);

// The CLI as one JavaScript bundle: starts in a fraction of the time tsx needs to compile the
// sources. bin/replay-anywhere.js uses it only while it is newer than every source file.
const bundle = join(root, 'build', 'cli.mjs');
const sources = join(root, 'src');
if (!existsSync(bundle) || statSync(bundle).mtimeMs < newest(sources)) {
  const esbuild = join(root, 'node_modules', '.bin', 'esbuild');
  run(esbuild, [join(sources, 'cli', 'main.ts'), '--bundle', '--platform=node', '--format=esm', '--target=node20',
    '--packages=external', '--log-level=warning', `--define:RA_SOURCE_DIR=${JSON.stringify(sources)}`, `--outfile=${bundle}`]);
}
