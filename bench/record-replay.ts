// Record and replay speed on a compute-heavy and a syscall-heavy program, against native,
// pinned strace (the ptrace floor) and qemu-x86_64, all measured in the same run.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchRuns, medianSeconds } from './timing.ts';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'bin', 'replay-anywhere.js');

export interface WorkloadFigures {
  workload: string;
  command: string;
  nativeSeconds: number;
  straceSeconds: number;
  recordSeconds: number;
  qemuSeconds: number;
  replaySeconds: number;
  events: number;
  instructions: number;
  traceBytes: number;
  bytesPerEvent: number;
  recordVsStrace: number;
  replayVsQemu: number;
}

const workloads = [
  { name: 'compute-heavy', source: 'compute.c', args: ['20000000'] },
  { name: 'syscall-heavy', source: 'syscalls.c', args: ['30000'] },
];

export async function runRecordReplayBench(): Promise<WorkloadFigures[]> {
  const dir = mkdtempSync(join(tmpdir(), 'ra-bench-'));
  const results: WorkloadFigures[] = [];
  try {
    for (const w of workloads) {
      const exe = join(dir, w.name);
      execFileSync('gcc', ['-O2', '-o', exe, join(here, 'programs', w.source)]);
      const program = [exe, ...w.args];
      const trace = join(dir, `${w.name}.rrz`);
      const summary = join(dir, `${w.name}.json`);
      const nativeSeconds = medianSeconds(benchRuns, exe, w.args);
      const straceSeconds = medianSeconds(benchRuns, 'taskset', ['-c', '0', 'strace', '-f', '-o', '/dev/null', ...program]);
      const recordSeconds = medianSeconds(benchRuns, process.execPath, [cli, 'record', '-o', trace, '--', ...program]);
      const qemuSeconds = medianSeconds(benchRuns, 'qemu-x86_64', program);
      const replaySeconds = medianSeconds(benchRuns, process.execPath, [cli, 'run', '--quiet', '--summary-json', summary, trace]);
      const s = JSON.parse(readFileSync(summary, 'utf8'));
      if (!s.verified) throw new Error(`${w.name}: replay did not verify: ${JSON.stringify(s.divergence)}`);
      const traceBytes = statSync(trace).size;
      results.push({
        workload: w.name,
        command: `${w.source.replace('.c', '')} ${w.args.join(' ')}`,
        nativeSeconds,
        straceSeconds,
        recordSeconds,
        qemuSeconds,
        replaySeconds,
        events: s.events,
        instructions: s.instructions,
        traceBytes,
        bytesPerEvent: traceBytes / s.events,
        recordVsStrace: recordSeconds / straceSeconds,
        replayVsQemu: replaySeconds / qemuSeconds,
      });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

export function formatRecordReplayTable(rows: WorkloadFigures[]): string {
  const f = (x: number) => x.toFixed(3);
  const lines = [
    '| workload | native s | strace -f pinned s | record s | record / strace | qemu-x86_64 s | replay s | replay / qemu | events | instructions | trace bytes/event |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.workload} (${r.command}) | ${f(r.nativeSeconds)} | ${f(r.straceSeconds)} | ${f(r.recordSeconds)} | ${r.recordVsStrace.toFixed(2)}x | ${f(r.qemuSeconds)} | ${f(r.replaySeconds)} | ${r.replayVsQemu.toFixed(2)}x | ${r.events} | ${r.instructions} | ${r.bytesPerEvent.toFixed(1)} |`,
    );
  }
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rows = await runRecordReplayBench();
  console.log(formatRecordReplayTable(rows));
}
