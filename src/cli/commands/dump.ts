// `replay-anywhere dump FILE`: the trace's events, one per line (or as JSON).
import { isBlobRef, type Bytes, type TraceEvent } from '../../trace/schema.ts';
import { syscallName } from '../../trace/syscall-names.ts';
import { TraceFormatError } from '../../trace/errors.ts';
import { syscallArgs } from '../../replay/registers.ts';
import { intOption, parseArgs } from '../args.ts';
import { UserError } from '../errors.ts';
import { openTrace } from '../open-trace.ts';
import type { Command } from '../main.ts';

const help = `usage: replay-anywhere dump [OPTIONS] FILE

List the events of a trace: number, process/thread, kind, and for syscalls the name,
arguments and result.

options:
  --json          one JSON array of event objects (register images and memory contents
                  are summarised as sizes)
  --pid PID       only events of this process
  --from N        start at event N
  --count N       at most N events
  -h, --help      this help`;

const byteSize = (b: Bytes) => (isBlobRef(b) ? b.size : b.length);
const hexAddr = (n: number) => '0x' + n.toString(16);

/** A JSON-friendly summary of an event. */
export function describeEvent(n: number, ev: TraceEvent): Record<string, unknown> {
  const base = { event: n, kind: ev.kind, pid: ev.pid, tid: ev.tid, ...(ev.ticks !== undefined ? { ticks: ev.ticks } : {}) };
  switch (ev.kind) {
    case 'syscall':
      return {
        ...base,
        syscall: syscallName(ev.number),
        number: ev.number,
        args: syscallArgs(ev.regs),
        result: ev.result,
        writes: ev.writes.map((w) => ({ addr: w.addr, size: byteSize(w.data) })),
        ...(ev.mappings ? { mappings: ev.mappings.map((m) => ({ start: m.start, end: m.end, prot: m.prot, name: m.name })) } : {}),
        ...(ev.noReturn ? { noReturn: true } : {}),
      };
    case 'exec':
      return { ...base, path: ev.path, argv: ev.argv, mappings: ev.mappings.length, brk: ev.brk, ...(ev.stackLimit !== undefined ? { stackLimit: ev.stackLimit } : {}) };
    case 'rdtsc':
      return { ...base, insn: ev.insn, rip: ev.rip, value: ev.value.toString(), ...(ev.aux !== undefined ? { aux: ev.aux } : {}) };
    case 'signal':
      return { ...base, signo: ev.signo, code: ev.code, synchronous: ev.synchronous, fatal: ev.fatal, ...(ev.addr !== undefined ? { addr: ev.addr } : {}), ...(ev.beforeSyscall ? { beforeSyscall: true } : {}), ...(ev.inUserCode ? { inUserCode: true } : {}) };
    case 'clone':
      return { ...base, childPid: ev.childPid, childTid: ev.childTid, flags: ev.flags };
    case 'switch':
      return base;
    case 'exit':
      return { ...base, code: ev.code, signal: ev.signal, processExit: ev.processExit };
  }
}

function formatLine(n: number, ev: TraceEvent): string {
  const head = `${String(n).padStart(7)}  ${String(ev.pid).padStart(6)}/${String(ev.tid).padEnd(6)} `;
  switch (ev.kind) {
    case 'syscall': {
      const args = syscallArgs(ev.regs).map((a) => (Math.abs(a) < 4096 ? String(a) : hexAddr(a)));
      const result = ev.noReturn ? '(no return)' : Math.abs(ev.result) < 4096 ? String(ev.result) : hexAddr(ev.result);
      const wrote = ev.writes.reduce((s, w) => s + byteSize(w.data), 0);
      return `${head}syscall ${syscallName(ev.number)}(${args.join(', ')}) = ${result}${wrote ? `  [wrote ${wrote} bytes]` : ''}`;
    }
    case 'exec':
      return `${head}exec    ${ev.path} ${JSON.stringify(ev.argv)} (${ev.mappings.length} mappings)`;
    case 'rdtsc':
      return `${head}${ev.insn.padEnd(7)} at ${hexAddr(ev.rip)} = ${ev.value}`;
    case 'signal':
      return `${head}signal  ${ev.signo} code ${ev.code}${ev.synchronous ? ' synchronous' : ''}${ev.fatal ? ' fatal' : ''}${ev.addr !== undefined ? ` addr ${hexAddr(ev.addr)}` : ''}${ev.beforeSyscall ? ' before the next syscall' : ''}${ev.inUserCode ? ' in user code' : ''}`;
    case 'clone':
      return `${head}clone   child ${ev.childPid}/${ev.childTid} flags ${hexAddr(ev.flags)}`;
    case 'switch':
      return `${head}switch`;
    case 'exit':
      return `${head}exit    ${ev.code !== null ? `code ${ev.code}` : `signal ${ev.signal}`}${ev.processExit ? ' (process)' : ''}`;
  }
}

const command: Command = {
  summary: 'list the events of a trace',
  help,
  async run(argv) {
    const args = parseArgs(argv, { values: ['pid', 'from', 'count'], flags: ['json'] }, 'dump');
    const pid = intOption(args, 'pid', 'dump');
    const from = intOption(args, 'from', 'dump') ?? 0;
    const count = intOption(args, 'count', 'dump') ?? Infinity;
    const reader = openTrace(args.positional[0], 'dump');
    const json = args.options.has('json');
    const out: Record<string, unknown>[] = [];
    let text = '';
    const flush = () => {
      process.stdout.write(text);
      text = '';
    };
    let shown = 0;
    try {
      if (from > reader.eventCount) throw new UserError(`dump: --from ${from} is past the last event (${reader.eventCount} events)`);
      let n = from;
      for (const ev of reader.events(from)) {
        if (shown >= count) break;
        if (pid === undefined || ev.pid === pid) {
          if (json) out.push(describeEvent(n, ev));
          else {
            text += formatLine(n, ev) + '\n';
            if (text.length > 1 << 16) flush();
          }
          shown++;
        }
        n++;
      }
    } catch (err) {
      if (err instanceof TraceFormatError) throw new UserError(`dump: ${err.message}`);
      throw err;
    } finally {
      reader.close();
    }
    if (json) process.stdout.write(JSON.stringify(out, null, 1) + '\n');
    else flush();
    return 0;
  },
};

export default command;
