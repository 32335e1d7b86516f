// Record a program with the real CLI, replay the trace with the real CLI, and return both sides
// so tests can compare output, exit status and verification.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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

export function recordAndReplay(command: string[], opts: { input?: string | Buffer; cwd?: string; beforeReplay?: () => void } = {}): RoundTrip {
  const dir = mkdtempSync(join(tmpdir(), 'ra-roundtrip-'));
  const trace = join(dir, 'trace.rrz');
  const summaryPath = join(dir, 'summary.json');
  const recorded = cli(['record', '-o', trace, '--', ...command], opts);
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
