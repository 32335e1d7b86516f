import test from 'ava';
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TraceWriter } from '../../src/trace/index.ts';
import { HEADER, everyKind } from './fixtures.ts';
import { tmpFile } from './helpers.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const cli = (...args: string[]) => spawnSync(process.execPath, ['bin/replay-anywhere.js', 'info', ...args], { cwd: root, encoding: 'utf8', timeout: 60_000 });

function write(complete: boolean): string {
  const file = tmpFile('info.rrz');
  const w = TraceWriter.create(file, HEADER);
  for (const e of everyKind(w.bytes(new Uint8Array(9000).fill(1)))) w.append(e);
  w.close(complete ? { complete: true } : { complete: false, reason: 'recorder interrupted by SIGINT' });
  return file;
}

test('info prints a human summary', (t) => {
  const r = cli(write(true));
  t.is(r.status, 0, r.stderr);
  for (const want of [/format 1\.0/, /status: +complete/, /command: +ls -la \/etc/, /testhost/, /no PMU: perf_event_open/, /AVX AVX2 XSAVE POPCNT/,
    /pid 100: ls -la \/etc/, /pid 101 \(child of 100\)/, /13 \(3 syscalls\)/, /rdtsc +2/, /blobs: +1, 8\.8 KiB/, /compression: +[\d.]+x/])
    t.regex(r.stdout, want);
});

test('info --json prints one object with the same facts', (t) => {
  const r = cli(write(false), '--json');
  t.is(r.status, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  t.false(j.complete);
  t.is(j.incompleteReason, 'recorder interrupted by SIGINT');
  t.deepEqual(j.command, ['ls', '-la', '/etc']);
  t.is(j.syscalls, 3);
  t.deepEqual(j.processes.map((p: { pid: number }) => p.pid), [100, 101]);
  t.deepEqual(j.processes[0].argv, ['ls', '-la', '/etc']);
  t.is(j.threads, 2);
  t.is(j.blobs, 1);
  t.is(j.tickMode, 'no PMU: perf_event_open: ENOENT (no hardware counters in this VM)');
  t.deepEqual(j.maskedFeatures, ['AVX', 'AVX2', 'XSAVE', 'POPCNT']);
  t.is(j.formatVersion, '1.0');
});

test('info on a corrupt or missing file: one line, exit 1', (t) => {
  const bad = tmpFile('bad.rrz');
  const good = fs.readFileSync(write(true));
  good[good.length - 200] ^= 0xff;
  fs.writeFileSync(bad, good);
  for (const f of [bad, '/nonexistent/trace.rrz']) {
    const r = cli(f);
    t.is(r.status, 1);
    t.is(r.stdout, '');
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.regex(r.stderr, /^replay-anywhere: info: /);
  }
  t.is(cli().status, 1);
});
