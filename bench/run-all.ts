// Every benchmark of the project in one run: the emulator microbenchmark, the trace store,
// record/replay against native, pinned strace and qemu-x86_64, and the real-program corpus.
// Writes bench/results.json, bench/report.md and bench/chart.svg, and prints the report.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatCorpusTable, runCorpus, setupCorpus } from './corpus.ts';
import { runEmulatorBench } from './emulator.ts';
import { formatRecordReplayTable, runRecordReplayBench, type WorkloadFigures } from './record-replay.ts';
import { runTraceBench } from './trace.ts';

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

say('real-program corpus');
setupCorpus(say);
const corpus = runCorpus();

const results = { machine, emulator, trace, recordReplay, corpus };
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

/** A hand-written SVG: per workload, native / strace -f / record and native / qemu-x86_64 / replay
 * as horizontal bars (seconds, one scale per workload), then trace bytes per event. */
function renderChart(rows: WorkloadFigures[], date: string): string {
  const esc = (t: string) => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const width = 760;
  const labelW = 130;
  const barMax = width - labelW - 110;
  const barH = 16;
  const gap = 4;
  const colors = { native: '#8c8c8c', strace: '#e0a030', record: '#d0453a', qemu: '#4a90d0', replay: '#2e6b3a', bytes: '#7a5cb0' };
  const out: string[] = [];
  let y = 30;
  out.push(`<text x="10" y="20" font-size="15" font-weight="bold">replay-anywhere: record and replay, wall seconds (median), ${esc(date)}</text>`);
  const bar = (label: string, value: number, max: number, color: string, text: string) => {
    const w = Math.max(1, (value / max) * barMax);
    out.push(`<text x="${labelW - 6}" y="${y + barH - 4}" font-size="12" text-anchor="end">${esc(label)}</text>`);
    out.push(`<rect x="${labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${color}"/>`);
    out.push(`<text x="${(labelW + w + 5).toFixed(1)}" y="${y + barH - 4}" font-size="12">${esc(text)}</text>`);
    y += barH + gap;
  };
  for (const r of rows) {
    y += 12;
    out.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">${esc(`${r.workload} (${r.command}): ${r.events} events, ${r.instructions} instructions`)}</text>`);
    y += 8;
    const max = Math.max(r.nativeSeconds, r.straceSeconds, r.recordSeconds, r.qemuSeconds, r.replaySeconds);
    const s = (x: number) => `${x.toFixed(3)} s`;
    bar('native', r.nativeSeconds, max, colors.native, s(r.nativeSeconds));
    bar('strace -f pinned', r.straceSeconds, max, colors.strace, s(r.straceSeconds));
    bar('record', r.recordSeconds, max, colors.record, `${s(r.recordSeconds)} (${r.recordVsStrace.toFixed(2)}x strace)`);
    y += 6;
    bar('native', r.nativeSeconds, max, colors.native, s(r.nativeSeconds));
    bar('qemu-x86_64', r.qemuSeconds, max, colors.qemu, s(r.qemuSeconds));
    bar('replay', r.replaySeconds, max, colors.replay, `${s(r.replaySeconds)} (${r.replayVsQemu.toFixed(2)}x qemu)`);
  }
  y += 12;
  out.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">trace bytes per event</text>`);
  y += 8;
  const maxBytes = Math.max(...rows.map((r) => r.bytesPerEvent));
  for (const r of rows) bar(r.workload, r.bytesPerEvent, maxBytes, colors.bytes, `${r.bytesPerEvent.toFixed(1)} B/event`);
  y += 6;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    ...out,
    '</svg>',
    '',
  ].join('\n');
}
