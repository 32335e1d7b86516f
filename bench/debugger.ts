// Reverse debugging speed on a program of more than 1e8 instructions: reverse-stepi from the end,
// reverse-continue to a watchpoint hit near the start, the memory checkpoints take; and the same
// operations under gdb's own `record full` on the same program, natively, where it can finish.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openDebugSession } from '../src/debugger/session.ts';
import { TraceReader } from '../src/trace/reader.ts';
import { getReg } from '../src/replay/registers.ts';
import { DEFAULT_MASKED_FEATURES, maskEnv } from '../src/recorder/cpu-mask.ts';
import { median } from './timing.ts';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'bin', 'replay-anywhere.js');
const ITERATIONS = 20_000_000;
/** gdb `record full` gets this long before it is called unable to finish. */
const RECORD_FULL_TIMEOUT_S = 60;
/** A run small enough for `record full` to finish, to show its per-operation times. */
const SMALL_ITERATIONS = 2_000;

export interface RecordFullFigures {
  iterations: number;
  finished: boolean;
  /** Instructions in its log ("info record"). */
  instructions?: number;
  /** Whether reverse-continue stopped at the watchpoint (rather than at the start of the log). */
  stoppedAtWatchpoint?: boolean;
  /** Seconds to run from main to the end under `record full` (or until the timeout). */
  recordSeconds: number;
  reverseStepiSeconds?: number;
  reverseContinueWatchSeconds?: number;
}

export interface DebuggerFigures {
  program: string;
  instructions: number;
  /** Opening the session and running forward to the end (checkpoints are taken on the way). */
  forwardToEndSeconds: number;
  reverseStepiSeconds: number;
  reverseContinueWatchSeconds: number;
  checkpoints: number;
  checkpointBytes: number;
  recordFull: RecordFullFigures[];
}

export async function runDebuggerBench(): Promise<DebuggerFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'ra-bench-debug-'));
  try {
    const exe = join(dir, 'debug-target');
    execFileSync('gcc', ['-O1', '-g', '-no-pie', '-o', exe, join(here, 'programs', 'debug-target.c')]);
    const marker = symbol(exe, 'marker');
    const trace = join(dir, 'debug-target.rrz');
    execFileSync(process.execPath, [cli, 'record', '-o', trace, '--', exe, String(ITERATIONS)], { stdio: ['ignore', 'ignore', 'inherit'] });

    const reader = TraceReader.open(trace);
    // "The end": the process's exit_group syscall instruction (a breakpoint there).
    let exitSyscall = 0;
    for (const ev of reader.events(0)) if (ev.kind === 'syscall' && ev.number === 231) exitSyscall = Number(getReg(ev.regs, 'rip')) - 2;
    const t0 = performance.now();
    const s = await openDebugSession(reader);
    const [tid] = s.threads();
    s.setBreakpoint(exitSyscall);
    const end = await s.resume({ direction: 'forward', step: false, tid });
    if (end.cause.kind !== 'breakpoint') throw new Error(`expected to stop at exit_group, got ${JSON.stringify(end)}`);
    const forwardToEndSeconds = (performance.now() - t0) / 1000;
    s.removeBreakpoint(exitSyscall);
    const instructions = s.clock;

    const steps: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      const stop = await s.resume({ direction: 'backward', step: true, tid });
      steps.push((performance.now() - t) / 1000);
      if (stop.cause.kind !== 'step') throw new Error(`reverse-stepi: ${JSON.stringify(stop)}`);
    }
    s.setWatchpoint(marker, 8, 'write');
    const t1 = performance.now();
    const hit = await s.resume({ direction: 'backward', step: false, tid });
    const reverseContinueWatchSeconds = (performance.now() - t1) / 1000;
    if (hit.cause.kind !== 'watchpoint') throw new Error(`reverse-continue to the watchpoint: ${JSON.stringify(hit)}`);
    const stats = s.checkpointStats();
    s.close();

    return {
      program: `debug-target ${ITERATIONS}`,
      instructions,
      forwardToEndSeconds,
      reverseStepiSeconds: median(steps),
      reverseContinueWatchSeconds,
      checkpoints: stats.count,
      checkpointBytes: stats.bytes,
      recordFull: [recordFull(exe, SMALL_ITERATIONS), recordFull(exe, ITERATIONS)],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function symbol(exe: string, name: string): number {
  const line = execFileSync('nm', [exe]).toString().split('\n').find((l) => l.endsWith(` ${name}`));
  if (!line) throw new Error(`${name} not in ${exe}`);
  return parseInt(line, 16);
}

/** gdb's `record full` on the native program: from main to _exit, then the same reverse moves. */
function recordFull(exe: string, iterations: number): RecordFullFigures {
  // record full cannot record AVX/AVX-512 instructions: glibc gets the same mask as our recordings.
  const tunables = maskEnv(DEFAULT_MASKED_FEATURES, {}).GLIBC_TUNABLES;
  const timed = (label: string, cmd: string) => [
    '-ex', 'python import time; t0 = time.time()', '-ex', cmd, '-ex', `python print("@${label}", time.time() - t0)`,
  ];
  const args = [
    '-batch', '-nx', '-ex', 'set pagination off', '-ex', `set environment GLIBC_TUNABLES=${tunables}`, '-ex', 'break main', '-ex', `run ${iterations}`,
    '-ex', 'record full', '-ex', 'set record full insn-number-max unlimited', '-ex', 'break _exit',
    ...timed('record', 'continue'),
    ...timed('rsi', 'reverse-stepi'),
    '-ex', 'watch marker',
    ...timed('rc', 'reverse-continue'),
    '-ex', 'info record',
    exe,
  ];
  const r = spawnSync('gdb', args, { encoding: 'utf8', timeout: RECORD_FULL_TIMEOUT_S * 1000, killSignal: 'SIGKILL' });
  const figure = (label: string) => {
    const m = new RegExp(`^@${label} ([0-9.e-]+)$`, 'm').exec(r.stdout ?? '');
    return m ? Number(m[1]) : undefined;
  };
  const recordSeconds = figure('record');
  const finished = recordSeconds !== undefined && /Breakpoint 2(\.\d+)?, .*_exit/.test(r.stdout ?? '');
  spawnSync('pkill', ['-KILL', '-f', exe]);
  const logged = /Log contains (\d+) instructions/.exec(r.stdout ?? '');
  return {
    iterations,
    finished,
    instructions: logged ? Number(logged[1]) : undefined,
    stoppedAtWatchpoint: finished ? /Old value = /.test(r.stdout ?? '') : undefined,
    recordSeconds: recordSeconds ?? RECORD_FULL_TIMEOUT_S,
    reverseStepiSeconds: finished ? figure('rsi') : undefined,
    reverseContinueWatchSeconds: finished ? figure('rc') : undefined,
  };
}

export function formatDebuggerTable(d: DebuggerFigures): string {
  const f = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(3));
  const lines = [
    `| | instructions | to the end s | reverse-stepi s | reverse-continue to watchpoint s | checkpoints |`,
    `|---|---|---|---|---|---|`,
    `| replay-anywhere, \`${d.program}\` | ${d.instructions.toExponential(2)} | ${f(d.forwardToEndSeconds)} | ${f(d.reverseStepiSeconds)} | ${f(d.reverseContinueWatchSeconds)} | ${d.checkpoints}, ${(d.checkpointBytes / 2 ** 20).toFixed(1)} MiB |`,
  ];
  for (const r of d.recordFull) {
    const rc = r.stoppedAtWatchpoint === false ? `${f(r.reverseContinueWatchSeconds)} (ran to the start of its log, missed the watchpoint)` : f(r.reverseContinueWatchSeconds);
    lines.push(`| gdb \`record full\`, \`debug-target ${r.iterations}\` | ${r.instructions?.toExponential(2) ?? ''} | ${r.finished ? f(r.recordSeconds) : `did not finish in ${RECORD_FULL_TIMEOUT_S} s`} | ${f(r.reverseStepiSeconds)} | ${rc} | |`);
  }
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const d = await runDebuggerBench();
  process.stdout.write(`${formatDebuggerTable(d)}\n`);
}
