// Debian programs that use threads and process trees, recorded for real and replayed exactly:
// xz with two worker threads, sort with a helper thread, and git creating a repository.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, recordAndReplay } from '../helpers/round-trip.ts';

const dir = mkdtempSync(join(tmpdir(), 'ra-real-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

/** `n` distinct numbers, one per line, in a fixed shuffled order. */
function shuffledLines(n: number): string {
  const xs = Array.from({ length: n }, (_, i) => i + 1);
  let seed = 12345;
  for (let i = n - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const j = seed % (i + 1);
    [xs[i], xs[j]] = [xs[j], xs[i]];
  }
  return xs.join('\n') + '\n';
}

function threadCount(trace: string): number {
  return JSON.parse(cli(['info', '--json', trace]).stdout.toString()).threads;
}

test.serial('xz -T2 with small blocks: two worker threads compress, replay gives the same bytes', (t) => {
  const input = join(dir, 'xz-input.txt');
  writeFileSync(input, shuffledLines(40_000));
  const rt = recordAndReplay(['/usr/bin/xz', '-T2', '--block-size=65536', '-c', input]);
  t.teardown(rt.cleanup);
  t.is(rt.recorded.status, 0, rt.recorded.stderr);
  t.is(rt.recorded.stdout.subarray(0, 6).toString('hex'), 'fd377a585a00', 'an xz stream');
  t.is(threadCount(rt.trace), 3);
  t.is(rt.summary.divergence, null, rt.replayed.stderr);
  t.true(rt.replayed.stdout.equals(rt.recorded.stdout));
});

test.serial('sort --parallel=2 of 140,000 lines: a helper thread sorts half', (t) => {
  const input = join(dir, 'sort-input.txt');
  writeFileSync(input, shuffledLines(140_000));
  const rt = recordAndReplay(['/usr/bin/env', 'LC_ALL=C', '/usr/bin/sort', '-n', '--parallel=2', input]);
  t.teardown(rt.cleanup);
  t.is(rt.recorded.status, 0, rt.recorded.stderr);
  const lines = rt.recorded.stdout.toString().split('\n');
  t.is(lines.length, 140_001);
  t.deepEqual([lines[0], lines[69_999], lines[139_999]], ['1', '70000', '140000']);
  t.is(threadCount(rt.trace), 2);
  t.is(rt.summary.divergence, null, rt.replayed.stderr);
  t.true(rt.replayed.stdout.equals(rt.recorded.stdout));
});

test.serial('git init, add, commit and log in a new repository (a process tree)', (t) => {
  const repo = join(dir, 'repo');
  const script = [
    `git init -q -b main ${repo}`, `cd ${repo}`, 'echo one > a.txt', 'git add a.txt',
    'git commit -q -m first', 'echo two >> a.txt', 'git commit -q -a -m second', 'git log --format="%an %s %ad" --date=unix',
  ].join(' && ');
  const env = ['GIT_AUTHOR_NAME=Ada', 'GIT_AUTHOR_EMAIL=ada@example.org', 'GIT_COMMITTER_NAME=Ada', 'GIT_COMMITTER_EMAIL=ada@example.org',
    'GIT_AUTHOR_DATE=@1700000000 +0000', 'GIT_COMMITTER_DATE=@1700000000 +0000', 'HOME=' + dir];
  const rt = recordAndReplay(['/usr/bin/env', ...env, '/bin/sh', '-c', script]);
  t.teardown(rt.cleanup);
  t.is(rt.recorded.status, 0, rt.recorded.stderr);
  t.is(rt.recorded.stdout.toString(), 'Ada second 1700000000\nAda first 1700000000\n');
  t.is(rt.summary.divergence, null, rt.replayed.stderr);
  t.is(rt.replayed.stdout.toString(), rt.recorded.stdout.toString());
  t.true(JSON.parse(cli(['info', '--json', rt.trace]).stdout.toString()).processes.length >= 6, 'git and sh processes');
});
