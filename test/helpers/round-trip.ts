// Record a program with the real CLI, replay the trace with the real CLI, and return both sides
// so tests can compare output, exit status and verification.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import type { ReplaySummary } from '../../src/cli/commands/run.ts';

export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'replay-anywhere.js');

export type { ReplaySummary };

export interface RoundTrip {
  trace: string;
  recorded: { status: number | null; stdout: Buffer; stderr: string };
  replayed: { status: number | null; stdout: Buffer; stderr: string };
  summary: ReplaySummary;
  cleanup(): void;
}

/** Runs the CLI synchronously. */
export function cli(args: string[], opts: { input?: string | Buffer; cwd?: string } = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { input: opts.input ?? '', cwd: opts.cwd, maxBuffer: 1 << 28 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

export function recordAndReplay(command: string[], opts: { input?: string | Buffer; cwd?: string; beforeReplay?: () => void; recordArgs?: string[] } = {}): RoundTrip {
  const dir = mkdtempSync(join(tmpdir(), 'ra-roundtrip-'));
  const trace = join(dir, 'trace.rrz');
  const summaryPath = join(dir, 'summary.json');
  const recorded = cli(['record', ...(opts.recordArgs ?? []), '-o', trace, '--', ...command], opts);
  opts.beforeReplay?.();
  const replayed = cli(['run', '--summary-json', summaryPath, trace], { cwd: opts.cwd });
  let summary: ReplaySummary;
  try {
    summary = JSON.parse(readFileSync(summaryPath, 'utf8'));
  } catch {
    throw new Error(`replay wrote no summary (status ${replayed.status}): ${replayed.stderr}\nrecord said: ${recorded.stderr}`);
  }
  return { trace, recorded, replayed, summary, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Records and replays `command`, asserting the replay reproduced the recording exactly: the
 * expected output on both sides, the exit status, verification, counted work. */
export function replaysExactly(t: ExecutionContext, command: string[], expected: string, expectStatus = 0): RoundTrip {
  const rt = recordAndReplay(command);
  t.teardown(rt.cleanup);
  t.is(rt.recorded.status, expectStatus, `record: ${rt.recorded.stderr}`);
  t.is(rt.recorded.stdout.toString(), expected);
  t.is(rt.summary.divergence, null, rt.replayed.stderr);
  t.true(rt.summary.verified);
  t.is(rt.replayed.status, expectStatus, rt.replayed.stderr);
  t.is(rt.summary.exitStatus, expectStatus);
  t.is(rt.replayed.stdout.toString(), expected);
  t.true(rt.summary.instructions > 0 && rt.summary.ticks > 0 && rt.summary.ticks < rt.summary.instructions);
  return rt;
}
