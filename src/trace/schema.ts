// The records of a .rrz trace. This file is the schema: the writer stores these shapes, the reader
// returns them. It depends on nothing else of ours. docs/trace-format.md describes the file layout.

/** Format version written by this build. A reader refuses a newer major, accepts any minor. */
export const FORMAT_MAJOR = 1;
export const FORMAT_MINOR = 0;

/** A content-addressed blob stored once in the trace: sha256 of the bytes, hex. */
export interface BlobRef {
  blob: string;
  size: number;
}

/** Bytes inline (small) or in the blob store (large, shared). */
export type Bytes = Uint8Array | BlobRef;

export function isBlobRef(b: Bytes): b is BlobRef {
  return !(b instanceof Uint8Array);
}

/**
 * General registers as Linux's `struct user_regs_struct` (x86-64): 27 little-endian u64 in this
 * order. 216 bytes. The same layout the recorder gets from PTRACE_GETREGS and the emulator accepts.
 */
export const USER_REGS = [
  'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi',
  'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs',
] as const;
export type UserRegName = (typeof USER_REGS)[number];
export const USER_REGS_SIZE = USER_REGS.length * 8;
/** x87/SSE state as the 512-byte FXSAVE area (Linux's `struct user_fpregs_struct`). */
export const FXSAVE_SIZE = 512;

/** Read one register out of a user_regs_struct image. */
export function userReg(regs: Uint8Array, name: UserRegName): bigint {
  const i = USER_REGS.indexOf(name);
  return new DataView(regs.buffer, regs.byteOffset, regs.byteLength).getBigUint64(i * 8, true);
}

/** How ticks (retired conditional branches) were measured while recording. */
export type TickMode =
  | { kind: 'no-pmu'; reason: string }
  | { kind: 'pmu'; event: string };

/** First record of every trace. */
export interface TraceHeader {
  formatMajor: number;
  formatMinor: number;
  /** Recorder build that wrote it, e.g. "replay-anywhere 0.1.0". */
  producer: string;
  /** ISO 8601 time the recording started. */
  recordedAt: string;
  hostname: string;
  /** Kernel release of the recording machine (uname -r). */
  kernel: string;
  /** argv of the recorded command, as given to `record`. */
  command: string[];
  cwd: string;
  tickMode: TickMode;
  /** CPU features the recorder kept the program from using (GLIBC_TUNABLES names, OPENSSL_ia32cap...). */
  maskedFeatures: string[];
  /** Whether CPUID faulting masked CPUID itself; when false, programs that probe CPUID saw the real CPU. */
  cpuidFaulting: boolean;
  /** What CPUID answered on the recording machine, as the program saw it. Replay answers from this. */
  cpuid: CpuidLeaf[];
  /** XCR0 as XGETBV returned it on the recording machine (0 without OSXSAVE). Replay answers
   * XGETBV from it: the emulator has no XGETBV. Absent in traces of format 1.0. */
  xcr0?: number;
  /** Instructions the recorder trapped by putting an int3 on each of them in the program's code,
   * because the CPU could not trap them (rdtsc under a hypervisor that ignores PR_SET_TSC, cpuid
   * without CPUID faulting): 'rdtsc', 'rdtscp', 'cpuid'. Code it could not find (JIT code,
   * assembly without unwind tables) ran them untrapped. Absent: none patched (format 1.0). */
  patchedInstructions?: string[];
}

export interface CpuidLeaf {
  leaf: number;
  subleaf: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

/** One mapping of an address space, as /proc/PID/maps shows it, with its contents. */
export interface Mapping {
  start: number;
  end: number;
  /** PROT_* bits: 1 read, 2 write, 4 exec. */
  prot: number;
  /** MAP_* bits relevant to replay: MAP_SHARED 1, MAP_PRIVATE 2. */
  flags: number;
  /** Path, or a pseudo name such as [heap], [stack], [vdso]; '' for anonymous. */
  name: string;
  fileOffset: number;
  /** Contents of [start, end); absent means zero-filled (or unreadable, like [vvar]). */
  data?: Bytes;
}

/** A range of memory the kernel (or the recorder) wrote, applied at the event. */
export interface MemoryWrite {
  addr: number;
  data: Bytes;
}

/**
 * A moment of one thread's user-mode execution that no syscall marks: where an asynchronous event
 * (preemption, a signal arriving in user code) interrupted it. Replay runs the thread to the first
 * moment at which its state equals this one: it arrives at `rip` (from `regs`) with every register
 * equal, and every page listed here holds the recorded contents. Two moments with equal registers
 * and equal memory have identical futures, so that first match is exact (docs/execution-points.md).
 * With a PMU, `ticks` narrows the search to one arrival and the rest is a cross-check.
 */
export interface ExecutionPoint {
  /** Hardware ticks (retired conditional branches) of the thread at the point, with a PMU. */
  ticks?: number;
  /** user_regs_struct at the point. */
  regs: Uint8Array;
  /** FXSAVE area at the point (x87, MXCSR, XMM0-15). */
  fpregs: Uint8Array;
  /** The memory digest: runs of consecutive pages as u64 start address, u64 page count, then one
   * u64 page_hash (src/trace/page_hash.h) per page; every present page of the process's writable
   * private memory, in address order. */
  pages: Bytes;
}

interface EventBase {
  /** Thread (Linux TID) the event belongs to. */
  tid: number;
  /** Process (TGID). */
  pid: number;
  /** Hardware ticks of this thread at the event, when recorded with a PMU. */
  ticks?: number;
}

/** A process image starting: after execve returned (or the first program started). */
export interface ExecEvent extends EventBase {
  kind: 'exec';
  path: string;
  argv: string[];
  /** Registers and FPU state at the first user instruction. */
  regs: Uint8Array;
  fpregs: Uint8Array;
  mappings: Mapping[];
  /** Raw auxv as the kernel gave it (pairs of u64). */
  auxv: Uint8Array;
  /** Current program break right after exec. */
  brk: number;
  /** RLIMIT_STACK soft limit in bytes (Number.MAX_SAFE_INTEGER: unlimited): how far the main
   * stack grows on faults. Absent in traces of format 1.0 without it (replay assumes 8 MiB). */
  stackLimit?: number;
}

/** One system call: the registers at entry, the result, and what it wrote. */
export interface SyscallEvent extends EventBase {
  kind: 'syscall';
  /** Syscall number (orig_rax). */
  number: number;
  /** Full user_regs_struct at syscall entry. */
  regs: Uint8Array;
  /** rax at exit: result or -errno. */
  result: number;
  /** Memory written by the kernel, in order. */
  writes: MemoryWrite[];
  /** For mmap/mremap of files: mappings created with contents, applied after `result`. */
  mappings?: Mapping[];
  /** Bytes the kernel copied to stdout/stderr from a file, never passing through the program's
   * memory (sendfile, copy_file_range, splice into fd 1 or 2). */
  output?: Bytes;
  /** Set when the syscall never returned to user code in this process (exit, exit_group, a successful execve). */
  noReturn?: boolean;
  /** Set when it wrote to fd 1 or 2 but that fd was not the recording's stdout/stderr (a pipe
   * between recorded processes, say): replay does not echo it. */
  notOurOutput?: boolean;
  /** Set when it wrote to fd 1 or 2 and that fd was the recording's other output (2>&1): the fd
   * replay echoes to. */
  echoFd?: 1 | 2;
}

/** An rdtsc or rdtscp that trapped during recording; replay returns the same value. */
export interface RdtscEvent extends EventBase {
  kind: 'rdtsc';
  rip: number;
  /** 'rdtsc' or 'rdtscp'. */
  insn: 'rdtsc' | 'rdtscp';
  /** The 64-bit counter value (edx:eax). */
  value: bigint;
  /** rdtscp's TSC_AUX (ecx). */
  aux?: number;
}

/** A signal delivered to a thread. */
export interface SignalEvent extends EventBase {
  kind: 'signal';
  signo: number;
  /** si_code. */
  code: number;
  /** Synchronous (raised by an instruction: fault address in `addr`) or asynchronous. */
  synchronous: boolean;
  addr?: number;
  /** Registers when the signal was delivered. */
  regs: Uint8Array;
  /** True when the signal ended the process (default action), false when a handler ran. */
  fatal: boolean;
  /** Memory written for delivery (the signal frame), when a handler ran. */
  writes: MemoryWrite[];
  /** Registers at the handler's first instruction, when a handler ran. */
  handlerRegs?: Uint8Array;
  /** Asynchronous, held back (no PMU) and delivered just before the thread's next syscall: `regs`
   * are at its SYSCALL instruction (rax the syscall number), which runs after the handler returns.
   * Otherwise an asynchronous signal is delivered where the previous event left the thread (a
   * syscall's exit, a handler's entry). */
  beforeSyscall?: boolean;
  /** Asynchronous, without a handler (so `fatal`), delivered where it arrived in user code: without
   * hardware ticks replay cannot find that point, but nothing of the process runs after it. */
  inUserCode?: boolean;
  /** Asynchronous, delivered where it arrived in user code: replay runs the thread to this point
   * (where `regs` were recorded) and delivers it there. */
  point?: ExecutionPoint;
}

/** A new process or thread created by fork/vfork/clone. */
export interface CloneEvent extends EventBase {
  kind: 'clone';
  childPid: number;
  childTid: number;
  /** clone flags (CLONE_VM, CLONE_THREAD...); fork is SIGCHLD only. */
  flags: number;
  /** Child's registers at its first instruction. */
  regs: Uint8Array;
  fpregs: Uint8Array;
  /** What the kernel wrote into the child's memory before its first instruction (CLONE_CHILD_SETTID). */
  writes?: MemoryWrite[];
}

/** The scheduler moving from one thread to another (recorded total order of user execution). */
export interface SwitchEvent extends EventBase {
  kind: 'switch';
  /** Registers of the thread switched to, at the point it resumes. */
  regs?: Uint8Array;
  /** Where the thread of this process that ran before was preempted in user code; absent when it
   * stopped at a syscall (it runs to that syscall's instruction). */
  preempted?: ExecutionPoint;
}

/** A thread or process ended. */
export interface ExitEvent extends EventBase {
  kind: 'exit';
  /** Exit code when it exited, null when a signal killed it. */
  code: number | null;
  /** The signal that killed it, null otherwise. */
  signal: number | null;
  /** True when this was the last thread of the process. */
  processExit: boolean;
}

export type TraceEvent = ExecEvent | SyscallEvent | RdtscEvent | SignalEvent | CloneEvent | SwitchEvent | ExitEvent;
export type EventKind = TraceEvent['kind'];
