#!/usr/bin/env node
// The main job, end to end: record a real program, show what the trace holds, replay it in the
// software CPU and check that the replay reproduces the recorded output and exit status.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'bin', 'replay-anywhere.js');
const dir = mkdtempSync(join(tmpdir(), 'replay-anywhere-demo-'));
const programs = [
  ['ls', '-la', '/usr'],
  // Debian's python3 by path: a python3 earlier on PATH may be a shell-script shim (pyenv) that forks.
  ['/usr/bin/python3', '-c', 'import hashlib; print(sum(range(10**6)), hashlib.sha256(b"replay").hexdigest()[:16])'],
];

function step(title, args, capture = false) {
  process.stderr.write(`\n$ replay-anywhere ${args.join(' ')}\n`);
  const r = spawnSync(process.execPath, [cli, ...args], { stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'], encoding: 'buffer' });
  if (r.error) throw r.error;
  if (capture) process.stdout.write(r.stdout);
  return { status: r.status, stdout: r.stdout };
}

let failed = false;
try {
  for (const [i, program] of programs.entries()) {
    const trace = join(dir, `demo-${i}.rrz`);
    const rec = step('record', ['record', '-o', trace, '--', ...program], true);
    step('info', ['info', trace]);
    const summaryPath = join(dir, `summary-${i}.json`);
    const rep = step('run', ['run', '--summary-json', summaryPath, trace], true);
    const summary = JSON.parse(readFileSync(summaryPath, 'utf8'));
    const same = rec.status === 0 && rec.stdout.equals(rep.stdout) && rec.status === rep.status && summary.verified;
    process.stderr.write(
      `\n${same ? 'OK' : 'MISMATCH'}: ${program.join(' ')}: recorded exit ${rec.status}, replayed exit ${rep.status}, ` +
        `output ${rec.stdout.equals(rep.stdout) ? 'identical' : 'different'} (${rec.stdout.length} bytes), ` +
        `${summary.events} events, ${summary.instructions} instructions, ${summary.ticks} ticks verified in ${summary.seconds.toFixed(2)} s\n`,
    );
    if (!same) failed = true;
  }
  // Debugging the first recording with gdb, backwards too: ls's second statx(), back to the first,
  // then back to the start of the recording.
  const gdbArgs = ['debug', join(dir, 'demo-0.rrz'), '--', '-batch', '-nx', '-ex', 'set breakpoint pending on', '-ex', 'break statx',
    '-ex', 'continue', '-ex', 'continue', '-ex', 'reverse-continue', '-ex', 'reverse-continue'];
  const dbg = step('debug', gdbArgs, true);
  const hits = (dbg.stdout.toString().match(/^Breakpoint 1, /gm) ?? []).length;
  const back = /No more reverse-execution history/.test(dbg.stdout.toString());
  process.stderr.write(`\n${dbg.status === 0 && hits === 3 && back ? 'OK' : 'MISMATCH'}: gdb on the replay of ls: 2 statx() calls forward, 1 backward, then the start of the recording\n`);
  if (!(dbg.status === 0 && hits === 3 && back)) failed = true;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
