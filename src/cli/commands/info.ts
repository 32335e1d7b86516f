// `replay-anywhere info FILE [--json]`: what is in a trace.
import type { Command } from '../main.ts';
import { parseArgs } from '../args.ts';
import { UserError } from '../errors.ts';
import { TraceReader } from '../../trace/reader.ts';
import { TraceFormatError } from '../../trace/errors.ts';

const CLONE_THREAD = 0x10000;

export interface TraceInfo {
  file: string;
  formatVersion: string;
  complete: boolean;
  incompleteReason?: string;
  producer: string;
  command: string[];
  cwd: string;
  recordedAt: string;
  hostname: string;
  kernel: string;
  tickMode: string;
  maskedFeatures: string[];
  cpuidFaulting: boolean;
  /** Instructions trapped by int3 patches because the CPU could not trap them. */
  patchedInstructions: string[];
  processes: { pid: number; parent?: number; argv: string[]; threads: number[]; exitCode?: number | null; exitSignal?: number | null }[];
  threads: number;
  events: number;
  eventsByKind: Record<string, number>;
  syscalls: number;
  chunks: number;
  blobs: number;
  blobBytes: number;
  blobStoredBytes: number;
  rawEventBytes: number;
  compressedEventBytes: number;
  fileBytes: number;
  compressionRatio: number;
}

export function traceInfo(file: string): TraceInfo {
  const r = TraceReader.open(file);
  try {
    const h = r.header;
    const procs = new Map<number, TraceInfo['processes'][number]>();
    const proc = (pid: number) => {
      let p = procs.get(pid);
      if (!p) procs.set(pid, (p = { pid, argv: [], threads: [] }));
      return p;
    };
    const tids = new Set<number>();
    const addThread = (pid: number, tid: number) => {
      tids.add(tid);
      const p = proc(pid);
      if (!p.threads.includes(tid)) p.threads.push(tid);
    };
    for (const e of r.events()) {
      addThread(e.pid, e.tid);
      if (e.kind === 'exec') proc(e.pid).argv = e.argv;
      else if (e.kind === 'clone') {
        if (e.flags & CLONE_THREAD) addThread(e.pid, e.childTid);
        else {
          const child = proc(e.childPid);
          child.parent = e.pid;
          if (child.argv.length === 0) child.argv = proc(e.pid).argv;
          addThread(e.childPid, e.childTid);
        }
      } else if (e.kind === 'exit' && e.processExit) {
        const p = proc(e.pid);
        p.exitCode = e.code;
        p.exitSignal = e.signal;
      }
    }
    const st = r.stats();
    return {
      file,
      formatVersion: `${h.formatMajor}.${h.formatMinor}`,
      complete: r.complete,
      ...(r.complete ? {} : { incompleteReason: r.incompleteReason }),
      producer: h.producer,
      command: h.command,
      cwd: h.cwd,
      recordedAt: h.recordedAt,
      hostname: h.hostname,
      kernel: h.kernel,
      tickMode: h.tickMode.kind === 'pmu' ? `PMU event ${h.tickMode.event}` : `no PMU: ${h.tickMode.reason}`,
      maskedFeatures: h.maskedFeatures,
      cpuidFaulting: h.cpuidFaulting,
      patchedInstructions: h.patchedInstructions ?? [],
      processes: [...procs.values()],
      threads: tids.size,
      events: r.eventCount,
      eventsByKind: st.eventsByKind,
      syscalls: st.eventsByKind.syscall ?? 0,
      chunks: st.chunks,
      blobs: st.blobs,
      blobBytes: st.blobBytes,
      blobStoredBytes: st.blobStoredBytes,
      rawEventBytes: st.rawEventBytes,
      compressedEventBytes: st.compressedEventBytes,
      fileBytes: st.fileBytes,
      compressionRatio: Number(st.compressionRatio.toFixed(2)),
    };
  } finally {
    r.close();
  }
}

function size(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

function human(i: TraceInfo): string {
  const shell = (a: string[]) => a.map((s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`)).join(' ');
  const lines = [
    `trace:       ${i.file} (${size(i.fileBytes)}, format ${i.formatVersion}, ${i.producer})`,
    `status:      ${i.complete ? 'complete' : `INCOMPLETE: ${i.incompleteReason}`}`,
    `command:     ${shell(i.command)}`,
    `cwd:         ${i.cwd}`,
    `recorded:    ${i.recordedAt} on ${i.hostname} (Linux ${i.kernel})`,
    `ticks:       ${i.tickMode}`,
    `masked CPU:  ${i.maskedFeatures.length ? i.maskedFeatures.join(' ') : '(none)'}`,
    `traps:       rdtsc ${i.patchedInstructions.includes('rdtsc') ? 'by int3 patches (the CPU ignored PR_SET_TSC)' : 'by PR_SET_TSC'}; ` +
      `cpuid ${i.cpuidFaulting ? 'by CPUID faulting' : i.patchedInstructions.includes('cpuid') ? 'by int3 patches (no CPUID faulting)' : 'not trapped'}`,
    `processes:   ${i.processes.length}, threads: ${i.threads}`,
  ];
  for (const p of i.processes) {
    const exit = p.exitSignal != null ? `, killed by signal ${p.exitSignal}` : p.exitCode != null ? `, exit ${p.exitCode}` : '';
    lines.push(`  pid ${p.pid}${p.parent !== undefined ? ` (child of ${p.parent})` : ''}: ${shell(p.argv) || '?'}${p.threads.length > 1 ? ` [${p.threads.length} threads]` : ''}${exit}`);
  }
  lines.push(`events:      ${i.events} (${i.syscalls} syscalls) in ${i.chunks} chunks`);
  for (const [k, n] of Object.entries(i.eventsByKind).sort((a, b) => b[1] - a[1])) lines.push(`  ${k.padEnd(8)} ${n}`);
  lines.push(`blobs:       ${i.blobs}, ${size(i.blobBytes)} stored in ${size(i.blobStoredBytes)}`);
  lines.push(`records:     ${size(i.rawEventBytes)} stored in ${size(i.compressedEventBytes)}`);
  lines.push(`compression: ${i.compressionRatio}x overall`);
  return lines.join('\n');
}

const info: Command = {
  summary: 'show what a trace holds: command, processes, events, sizes, tick mode',
  help: `usage: replay-anywhere info FILE [--json]

Summarise a trace: format version, whether it is complete, the recorded command, host and time,
processes and threads, event counts by kind, blobs and compression, tick mode, masked CPU features.

options:
  --json   print the same as one JSON object`,
  async run(argv) {
    const args = parseArgs(argv, { flags: ['json'] }, 'info');
    if (args.positional.length !== 1) throw new UserError('info: expected one trace file (usage: replay-anywhere info FILE [--json])');
    let i: TraceInfo;
    try {
      i = traceInfo(args.positional[0]);
    } catch (e) {
      if (e instanceof TraceFormatError) throw new UserError(`info: ${e.message}`);
      throw e;
    }
    process.stdout.write((args.options.has('json') ? JSON.stringify(i) : human(i)) + '\n');
    return 0;
  },
};

export default info;
