// Every benchmark of the project in one run: the emulator microbenchmark, the trace store,
// record/replay against native, pinned strace and qemu-x86_64, and the real-program corpus.
// Writes bench/results.json, bench/report.md and bench/chart.svg, and prints the report.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatCorpusTable, runCorpus, setupCorpus } from './corpus.ts';
import { formatDebuggerTable, runDebuggerBench } from './debugger.ts';
import { runEmulatorBench } from './emulator.ts';
import { formatRecordReplayTable, runRecordReplayBench, type WorkloadFigures } from './record-replay.ts';
import { runTraceBench } from './trace.ts';
import { renderChart } from './chart.ts';

const here = dirname(fileURLToPath(import.meta.url));
const say = (s: string) => process.stderr.write(`bench: ${s}\n`);

function version(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).split('\n')[0].trim();
  } catch {
    return 'not found';
  }
}

const machine = {
  date: new Date().toISOString(),
  cpu: cpus()[0]?.model ?? 'unknown',
  cores: cpus().length,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  kernel: release(),
  node: process.version,
  qemu: version('qemu-x86_64', ['--version']),
  strace: version('strace', ['-V']),
};

say('emulator microbenchmark');
const emulator = await runEmulatorBench();
say('trace store');
const trace = runTraceBench({ quiet: true });
say('record and replay (native, strace, record, qemu-x86_64, replay)');
const recordReplay = await runRecordReplayBench();

say('reverse debugging (replay-anywhere and gdb record full)');
const debuggerFigures = await runDebuggerBench();

say('real-program corpus');
setupCorpus(say);
const corpus = runCorpus();

const results = { machine, emulator, trace, recordReplay, debugger: debuggerFigures, corpus };
writeFileSync(join(here, 'results.json'), JSON.stringify(results, null, 2) + '\n');
writeFileSync(join(here, 'chart.svg'), renderChart(recordReplay, machine.date.slice(0, 10)));

const g = (x: number) => (x / 1e9).toFixed(2);
const report = [
  `# Benchmark report`,
  '',
  `${machine.date.slice(0, 10)} on ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}, ${machine.qemu}. Median of ${process.env.BENCH_RUNS ?? 3} runs for whole commands.`,
  '',
  '## Record and replay',
  '',
  formatRecordReplayTable(recordReplay),
  '',
  '![record and replay times, trace bytes per event](chart.svg)',
  '',
  '## Reverse debugging (bench/debugger.ts)',
  '',
  formatDebuggerTable(debuggerFigures),
  '',
  '## Emulator (bench/emulator.ts)',
  '',
  `| instructions | plain Unicorn | with tick counting | counting cost |`,
  `|---|---|---|---|`,
  `| ${emulator.instructions} | ${g(emulator.plainInstructionsPerSecond)} G/s | ${g(emulator.countingInstructionsPerSecond)} G/s | ${emulator.ratio.toFixed(2)}x |`,
  '',
  '## Trace store (bench/trace.ts)',
  '',
  `| events | raw MB | write MB/s | read MB/s | random access ms | event compression | overall compression |`,
  `|---|---|---|---|---|---|---|`,
  `| ${trace.events} | ${trace.rawEventMB.toFixed(1)} | ${trace.writeMBs.toFixed(1)} | ${trace.readMBs.toFixed(1)} | ${trace.randomAccessMs.toFixed(1)} | ${trace.eventCompressionRatio.toFixed(1)}x | ${trace.overallCompressionRatio.toFixed(1)}x |`,
  '',
  '## Real-program corpus (bench/corpus.ts, `npm run corpus`)',
  '',
  formatCorpusTable(corpus),
  '',
].join('\n');
writeFileSync(join(here, 'report.md'), report);
process.stdout.write(report);
