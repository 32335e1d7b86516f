// Parser of the helper's event stream (src/recorder-native/stream.c writes it; keep the two in step).
//
// Records: u32 type, u32 zero, u64 payloadLength, payload. Little-endian. Payload fields: u32, u64,
// i64, BYTES = u64 length + raw, STR = BYTES of UTF-8. EV = u32 pid, u32 tid, u32 hasTicks, u64 ticks.
// MAPPING = u64 start, u64 end, u32 prot, u32 flags, u64 offset, STR name, u32 hasData, [BYTES data].
// WRITE = u64 addr, BYTES data.
//   1 INFO        u32 cpuidFaulting, u32 pmu, STR pmuEventOrReason, u32 cpu, u64 xcr0, u32 patchedSites
//                 (bits: 1 rdtsc, 2 rdtscp, 4 cpuid, trapped by int3 patches where the CPU cannot trap them)
//   2 CPUID       u32 n, n x (u32 leaf, subleaf, eax, ebx, ecx, edx)
//   3 EXEC        EV, STR path, u32 argc, argc x STR, BYTES regs, BYTES fpregs, BYTES auxv, u64 brk,
//                 u32 nmaps, nmaps x MAPPING, u64 stackLimit (RLIMIT_STACK soft limit; all ones: none)
//   4 SYSCALL     EV, u64 number, BYTES regs, i64 result, u32 noReturn, u32 nwrites, WRITE...,
//                 u32 nmaps, MAPPING..., u32 hasOutput, [BYTES output copied to stdout/stderr by the kernel]
//                 u32 outputTarget (writes to fd 1/2: 0 that fd of the recording, 1/2 the recording's
//                 stdout/stderr through the other fd, 3 not the recording's output: a pipe of the program)
//   5 RDTSC       EV, u64 rip, u32 isRdtscp, u64 value, u32 aux
//   6 SIGNAL      EV, u32 signo, i32 code, u32 synchronous, u64 addr, BYTES regs, u32 fatal,
//                 u32 nwrites, WRITE..., u32 hasHandlerRegs, [BYTES handlerRegs], u32 placement (0 where the
//                 previous event left the thread, 1 before its next syscall, 2 in user code: no handler)
//   7 EXIT        EV, u32 signaled, u32 codeOrSignal, u32 processExit
//   8 EXEC_FAILED u32 errno, STR message
//   9 STOPPED     STR message
//  10 ERROR       STR message
//  11 END
//  12 CLONE       EV (the creating thread), u32 childPid, u32 childTid, u64 flags, BYTES regs, BYTES fpregs,
//                 u32 nwrites, WRITE... (what the kernel wrote into the child's memory: CLONE_CHILD_SETTID)
//  13 SWITCH      EV (the thread that runs user code from now on, in its process)
//  14 WARNING     STR message (for the user; the recording goes on)
import type { CpuidLeaf } from '../trace/schema.ts';

export const RecType = { Info: 1, Cpuid: 2, Exec: 3, Syscall: 4, Rdtsc: 5, Signal: 6, Exit: 7, ExecFailed: 8, Stopped: 9, Error: 10, End: 11, Clone: 12, Switch: 13, Warning: 14 } as const;

/** Bytes are views into the stream's buffers: copy (or hand to TraceWriter.bytes) before keeping. */
export interface RawMapping { start: number; end: number; prot: number; flags: number; fileOffset: number; name: string; data?: Uint8Array }
export interface RawWrite { addr: number; data: Uint8Array }
export interface Ev { pid: number; tid: number; ticks?: number }

export type HelperRecord =
  | { type: 'info'; cpuidFaulting: boolean; pmu: boolean; pmuText: string; cpu: number; xcr0: number; patchedInstructions: string[] }
  | { type: 'cpuid'; leaves: CpuidLeaf[] }
  | ({ type: 'exec'; path: string; argv: string[]; regs: Uint8Array; fpregs: Uint8Array; auxv: Uint8Array; brk: number; mappings: RawMapping[]; stackLimit: number } & Ev)
  | ({ type: 'syscall'; number: number; regs: Uint8Array; result: number; noReturn: boolean; writes: RawWrite[]; mappings: RawMapping[]; output?: Uint8Array; outputTarget: number } & Ev)
  | ({ type: 'rdtsc'; rip: number; rdtscp: boolean; value: bigint; aux: number } & Ev)
  | ({ type: 'signal'; signo: number; code: number; synchronous: boolean; addr: number; regs: Uint8Array; fatal: boolean; writes: RawWrite[]; handlerRegs?: Uint8Array; placement: number } & Ev)
  | ({ type: 'switch' } & Ev)
  | ({ type: 'clone'; childPid: number; childTid: number; flags: number; regs: Uint8Array; fpregs: Uint8Array; writes: RawWrite[] } & Ev)
  | ({ type: 'exit'; signaled: boolean; value: number; processExit: boolean } & Ev)
  | { type: 'exec-failed'; errno: number; message: string }
  | { type: 'stopped'; message: string }
  | { type: 'warning'; message: string }
  | { type: 'error'; message: string }
  | { type: 'end' };

const utf8 = new TextDecoder();

class Cursor {
  private dv: DataView;
  pos = 0;
  constructor(private buf: Uint8Array) {
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  u32(): number { const v = this.dv.getUint32(this.pos, true); this.pos += 4; return v; }
  i32(): number { const v = this.dv.getInt32(this.pos, true); this.pos += 4; return v; }
  u64big(): bigint { const v = this.dv.getBigUint64(this.pos, true); this.pos += 8; return v; }
  u64(): number { return Number(this.u64big()); }
  i64(): number { const v = this.dv.getBigInt64(this.pos, true); this.pos += 8; return Number(v); }
  bytes(): Uint8Array {
    const n = this.u64();
    if (this.pos + n > this.buf.length) throw new RangeError(`stream record: ${n} bytes at ${this.pos} overrun the record`);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  str(): string { return utf8.decode(this.bytes()); }
  ev(): Ev {
    const pid = this.u32(), tid = this.u32(), hasTicks = this.u32(), ticks = this.u64();
    return hasTicks ? { pid, tid, ticks } : { pid, tid };
  }
  mapping(): RawMapping {
    const start = this.u64(), end = this.u64(), prot = this.u32(), flags = this.u32(), fileOffset = this.u64(), name = this.str();
    const m: RawMapping = { start, end, prot, flags, fileOffset, name };
    if (this.u32()) m.data = this.bytes();
    return m;
  }
  list<T>(f: () => T): T[] {
    const n = this.u32();
    const out: T[] = [];
    for (let i = 0; i < n; i++) out.push(f());
    return out;
  }
  write(): RawWrite { return { addr: this.u64(), data: this.bytes() }; }
}

export function decodeRecord(type: number, payload: Uint8Array): HelperRecord {
  const c = new Cursor(payload);
  switch (type) {
    case RecType.Info: {
      const cpuidFaulting = c.u32() !== 0, pmu = c.u32() !== 0, pmuText = c.str(), cpu = c.i32(), xcr0 = c.u64(), patched = c.u32();
      const patchedInstructions = (['rdtsc', 'rdtscp', 'cpuid'] as const).filter((_, bit) => patched & (1 << bit));
      return { type: 'info', cpuidFaulting, pmu, pmuText, cpu, xcr0, patchedInstructions };
    }
    case RecType.Cpuid: return { type: 'cpuid', leaves: c.list(() => ({ leaf: c.u32(), subleaf: c.u32(), eax: c.u32(), ebx: c.u32(), ecx: c.u32(), edx: c.u32() })) };
    case RecType.Exec: {
      const ev = c.ev(), path = c.str(), argv = c.list(() => c.str()), regs = c.bytes(), fpregs = c.bytes(), auxv = c.bytes(), brk = c.u64();
      const mappings = c.list(() => c.mapping()), stackLimit = Math.min(c.u64(), Number.MAX_SAFE_INTEGER);
      return { type: 'exec', ...ev, path, argv, regs, fpregs, auxv, brk, mappings, stackLimit };
    }
    case RecType.Syscall: {
      const ev = c.ev(), number = c.u64(), regs = c.bytes(), result = c.i64(), noReturn = c.u32() !== 0;
      const writes = c.list(() => c.write());
      const mappings = c.list(() => c.mapping());
      const output = c.u32() ? c.bytes() : undefined;
      const outputTarget = c.u32();
      return { type: 'syscall', ...ev, number, regs, result, noReturn, writes, mappings, output, outputTarget };
    }
    case RecType.Rdtsc: {
      const ev = c.ev();
      return { type: 'rdtsc', ...ev, rip: c.u64(), rdtscp: c.u32() !== 0, value: c.u64big(), aux: c.u32() };
    }
    case RecType.Signal: {
      const ev = c.ev(), signo = c.u32(), code = c.i32(), synchronous = c.u32() !== 0, addr = c.u64(), regs = c.bytes(), fatal = c.u32() !== 0;
      const writes = c.list(() => c.write());
      const handlerRegs = c.u32() ? c.bytes() : undefined;
      const placement = c.u32();
      return { type: 'signal', ...ev, signo, code, synchronous, addr, regs, fatal, writes, handlerRegs, placement };
    }
    case RecType.Exit: {
      const ev = c.ev();
      return { type: 'exit', ...ev, signaled: c.u32() !== 0, value: c.u32(), processExit: c.u32() !== 0 };
    }
    case RecType.Clone: {
      const ev = c.ev(), childPid = c.u32(), childTid = c.u32(), flags = c.u64(), regs = c.bytes(), fpregs = c.bytes();
      return { type: 'clone', ...ev, childPid, childTid, flags, regs, fpregs, writes: c.list(() => c.write()) };
    }
    case RecType.Switch: return { type: 'switch', ...c.ev() };
    case RecType.ExecFailed: return { type: 'exec-failed', errno: c.u32(), message: c.str() };
    case RecType.Stopped: return { type: 'stopped', message: c.str() };
    case RecType.Warning: return { type: 'warning', message: c.str() };
    case RecType.Error: return { type: 'error', message: c.str() };
    case RecType.End: return { type: 'end' };
    default: throw new RangeError(`unknown helper record type ${type}`);
  }
}

/** Splits a byte stream into records; feed chunks, take whole records. */
export class RecordSplitter {
  private pending: Uint8Array = new Uint8Array(0);

  /** Whole records in `chunk` (and what was pending); the rest waits for more. */
  *push(chunk: Uint8Array): Generator<HelperRecord> {
    let buf = this.pending.length ? concat(this.pending, chunk) : chunk;
    let pos = 0;
    while (buf.length - pos >= 16) {
      const dv = new DataView(buf.buffer, buf.byteOffset + pos, 16);
      const type = dv.getUint32(0, true);
      const len = Number(dv.getBigUint64(8, true));
      if (buf.length - pos - 16 < len) break;
      const payload = buf.subarray(pos + 16, pos + 16 + len);
      pos += 16 + len;
      yield decodeRecord(type, payload);
    }
    this.pending = pos === buf.length ? new Uint8Array(0) : buf.slice(pos);
    buf = this.pending;
  }

  /** Bytes of an unfinished record at the end of the stream (0 when it ended on a boundary). */
  get leftover(): number {
    return this.pending.length;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}
