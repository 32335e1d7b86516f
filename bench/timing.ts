// Wall-clock timing of whole commands for benchmarks: median of several runs.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';

export interface Timed {
  seconds: number;
  status: number | null;
  stdout: Buffer;
}

export function timeCommand(cmd: string, args: string[], opts: SpawnSyncOptions = {}): Timed {
  const start = performance.now();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 30, ...opts });
  const seconds = (performance.now() - start) / 1000;
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  return { seconds, status: r.status, stdout: r.stdout as Buffer };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Median wall time of `runs` runs; every run must exit 0. */
export function medianSeconds(runs: number, cmd: string, args: string[], opts: SpawnSyncOptions = {}): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = timeCommand(cmd, args, opts);
    if (t.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${t.status}`);
    times.push(t.seconds);
  }
  return median(times);
}

export const benchRuns = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
