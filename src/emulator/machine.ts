// The emulator facade: a Machine is one Unicorn x86-64 engine (one address space) driven by our
// native addon. One native call per run; no JavaScript runs per instruction or per block.
// This layer depends on nothing else of ours.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The CLI bundle (scripts/setup.mjs) defines RA_SOURCE_DIR, since import.meta.url is then the bundle's.
declare const RA_SOURCE_DIR: string | undefined;
const here = typeof RA_SOURCE_DIR === 'string' ? join(RA_SOURCE_DIR, 'emulator') : dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

interface NativeStop {
  kind: string;
  rip: number;
  insn?: 'rdtsc' | 'rdtscp';
  address?: number;
  access?: 'read' | 'write' | 'fetch';
  cause?: 'unmapped' | 'protection';
  vector?: number;
  size?: number;
  instructions?: number;
}
interface NativeInsn { address: number; bytes: Buffer; text: string }
interface NativeMachine {
  map(addr: number, size: number, prot: number): void;
  unmap(addr: number, size: number): void;
  protect(addr: number, size: number, prot: number): void;
  read(addr: number, size: number): Buffer;
  write(addr: number, data: Uint8Array): void;
  regions(): Region[];
  getUserRegs(): Buffer;
  setUserRegs(regs: Uint8Array): void;
  getFxsave(): Buffer;
  setFxsave(area: Uint8Array): void;
  getReg(name: string): bigint;
  setReg(name: string, value: bigint): void;
  counters(): [number, number, number];
  setCounters(ticks: number, instructions: number, rep?: number): void;
  run(tickTarget: number | undefined, budget: number | undefined, step: boolean, instructionTarget?: number): NativeStop;
  setBreakpoints(addrs: number[]): void;
  setWatchpoints(list: Watchpoint[], collect?: boolean): void;
  takeWatchHits(): WatchHits;
  recentBlocks(): { address: number; size: number }[];
  disassemble(addr: number, count: number): NativeInsn[];
  close(): void;
}
interface Addon {
  NativeMachine: new (counting: boolean) => NativeMachine;
  disassembleBytes(bytes: Uint8Array, address: number): NativeInsn[];
}

let addon: Addon | undefined;
function native(): Addon {
  if (!addon) {
    const path = join(here, 'native', 'build', 'Release', 'emulator.node');
    try {
      addon = require(path) as Addon;
    } catch (e) {
      throw new Error(`cannot load the emulator addon ${path}: ${(e as Error).message}. Run: node scripts/setup.mjs --build-only`);
    }
  }
  return addon;
}

export const PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;

/**
 * Linux struct user_regs_struct order, 27 u64 = 216 bytes. Duplicated from src/trace/schema.ts
 * (USER_REGS) on purpose: the emulator depends on nothing else of ours.
 */
export const USER_REGS = [
  'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi',
  'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs',
] as const;
export const USER_REGS_SIZE = 216;
export const FXSAVE_SIZE = 512;

export type StopReason =
  | { kind: 'syscall' }
  | { kind: 'cpuid'; rip: number }
  | { kind: 'rdtsc'; rip: number; insn: 'rdtsc' | 'rdtscp' }
  | { kind: 'invalid-instruction'; rip: number; bytes: Uint8Array; text: string }
  | { kind: 'memory-fault'; rip: number; address: number; access: 'read' | 'write' | 'fetch'; cause: 'unmapped' | 'protection' }
  | { kind: 'interrupt'; rip: number; vector: number }
  | { kind: 'tick-target' }
  | { kind: 'breakpoint'; rip: number }
  | { kind: 'budget' }
  /** instructions === the run's instructionTarget (see Machine.run). */
  | { kind: 'instruction-target' }
  /**
   * Just after the guest instruction at `rip` read or wrote [address, address + size), which
   * overlaps a watchpoint of that kind. `instructions` is the counter once that instruction
   * retired: the machine is stopped exactly there (the next instruction has not run), except
   * inside a rep string instruction, which stops after the iteration that made the access (RIP
   * still at it when iterations remain; the rep is already counted). See Machine.setWatchpoints.
   */
  | { kind: 'watchpoint'; rip: number; address: number; size: number; access: 'read' | 'write'; instructions: number };

/** A watched range: run() stops after a guest instruction whose access of that kind overlaps it. */
export interface Watchpoint { address: number; length: number; kind: 'write' | 'read' | 'access' }

/**
 * Hits collected in collect mode (Machine.setWatchpoints(list, { collect: true })) since the last
 * takeWatchHits(). `count`: how many the precise mode would have stopped for (one per instruction
 * execution whose access overlaps a watch of its kind; one per iteration of a rep string
 * instruction). `last`: the latest, as the precise mode's stop would report it: `instructions`
 * is the counter once that instruction retired (the precise stop's `instructions`).
 */
export interface WatchHits {
  count: number;
  last?: {
    rip: number;
    address: number;
    size: number;
    access: 'read' | 'write';
    instructions: number;
    /**
     * Present (true) when more than one instruction of the block could have made the access and
     * the one reported is a guess (SSE/x87/LOCK/helper accesses, for which Unicorn 2.0.1 does not
     * store RIP, whose address registers change in between; see docs/emulator.md). Use the
     * precise mode over that stretch then.
     */
    ambiguous?: true;
  };
  /** How many of the hits (counted or merged as the same instruction) were such guesses; absent when none. */
  ambiguous?: number;
}

export interface Region { start: number; end: number; prot: number }
export interface Instruction { address: number; bytes: Uint8Array; text: string }

/** Opaque saved thread state: registers, x87/SSE, fs/gs base, orig_rax and both counters. */
export interface ThreadContext {
  readonly __threadContext: true;
}
interface ContextData extends ThreadContext {
  regs: Buffer;
  fx: Buffer;
  ticks: number;
  instructions: number;
  /** A rep string instruction already counted and still iterating (its address), or -1. */
  rep: number;
}

export interface MachineOptions {
  /**
   * Count ticks and instructions (the block hook). Default true. False gives plain Unicorn speed
   * for measurement only: counters stay 0, tick targets and rdtsc stops do not work.
   */
  counting?: boolean;
}

export class Machine {
  #n: NativeMachine | undefined;

  constructor(options: MachineOptions = {}) {
    this.#n = new (native().NativeMachine)(options.counting ?? true);
  }

  get #m(): NativeMachine {
    if (!this.#n) throw new Error('Machine is closed');
    return this.#n;
  }

  map(addr: number, size: number, prot: number): void { this.#m.map(addr, size, prot); }
  unmap(addr: number, size: number): void { this.#m.unmap(addr, size); }
  protect(addr: number, size: number, prot: number): void { this.#m.protect(addr, size, prot); }
  read(addr: number, size: number): Buffer { return this.#m.read(addr, size); }
  /** Writes ignoring page protection (the kernel or the replayer writing). */
  write(addr: number, data: Uint8Array): void { this.#m.write(addr, data); }
  regions(): Region[] { return this.#m.regions(); }

  getUserRegs(): Buffer { return this.#m.getUserRegs(); }
  setUserRegs(regs: Uint8Array): void { this.#m.setUserRegs(regs); }
  getFxsave(): Buffer { return this.#m.getFxsave(); }
  setFxsave(area: Uint8Array): void { this.#m.setFxsave(area); }
  getReg(name: string): bigint { return this.#m.getReg(name); }
  setReg(name: string, value: bigint): void { this.#m.setReg(name, value); }

  saveContext(): ThreadContext {
    const m = this.#m;
    const [ticks, instructions, rep] = m.counters();
    const ctx: ContextData = { __threadContext: true, regs: m.getUserRegs(), fx: m.getFxsave(), ticks, instructions, rep };
    return ctx;
  }

  restoreContext(ctx: ThreadContext): void {
    const c = ctx as ContextData;
    if (!c || c.__threadContext !== true || !(c.regs instanceof Uint8Array) || !(c.fx instanceof Uint8Array)) {
      throw new Error('restoreContext: not a ThreadContext from saveContext()');
    }
    const m = this.#m;
    m.setUserRegs(c.regs);
    m.setFxsave(c.fx);
    m.setCounters(c.ticks, c.instructions, c.rep ?? -1);
  }

  /** Retired conditional branches (Jcc) since creation or setCounters. */
  get ticks(): number { return this.#m.counters()[0]; }
  /** Retired instructions. */
  get instructions(): number { return this.#m.counters()[1]; }
  setCounters(ticks: number, instructions: number): void { this.#m.setCounters(ticks, instructions); }

  /**
   * Runs until a stop. tickTarget: stop at the first block boundary where ticks >= target (each
   * block retires at most one tick, so starting below the target this lands on ticks == target).
   * instructionBudget: stop at the first block boundary after at least that many more instructions
   * (relative to the counter now).
   * instructionTarget: stop with { kind: 'instruction-target' } exactly when `instructions` ===
   * target, also in the middle of a block: the state is then exactly the one after that many
   * retired instructions. A rep string instruction counts as one instruction, when its first
   * iteration starts: a target stop lands before it (not started) or after its last iteration,
   * never in between. A stop that comes first (syscall, fault, breakpoint, watchpoint, budget,
   * tick target...) is returned as usual; a watchpoint hit by the instruction that reaches the
   * target is reported as the watchpoint (instructions === target then too); at the target point a
   * breakpoint on the next instruction is not reported (the next run stops there at once). A target
   * at or below the counter returns { kind: 'instruction-target' } at once without running
   * (compare `instructions` with the target to tell "reached" from "already past").
   */
  run(limits: { tickTarget?: number; instructionBudget?: number; instructionTarget?: number } = {}): StopReason {
    return this.#convert(this.#m.run(limits.tickTarget, limits.instructionBudget, false, limits.instructionTarget));
  }

  /** Executes exactly one instruction ({ kind: 'budget' }) unless it stops first. Ignores breakpoints. */
  step(): StopReason {
    return this.#convert(this.#m.run(undefined, undefined, true));
  }

  /**
   * Reaches the execution point (ticks, rip): the first moment ticks == T and rip == X. Returns
   * { kind: 'breakpoint', rip } there; otherwise the stop that came first ({ kind: 'tick-target' }
   * when ticks went past T without reaching X, or when ticks were already past T).
   */
  runToExecutionPoint(ticks: number, rip: number): StopReason {
    const m = this.#m;
    if (this.ticks > ticks) return { kind: 'tick-target' };
    if (this.ticks < ticks) {
      const s = this.run({ tickTarget: ticks });
      if (s.kind !== 'tick-target') return s;
    }
    if (Number(m.getReg('rip')) === rip) return { kind: 'breakpoint', rip };
    // ticks == T now. Run to X with a temporary breakpoint; a retired Jcc first means we missed it.
    const saved = this.#breakpoints;
    m.setBreakpoints([...saved, rip]);
    try {
      for (;;) {
        const s = this.#convert(m.run(ticks + 1, undefined, false));
        if (s.kind === 'breakpoint' && s.rip !== rip) return s; // a user breakpoint came first
        return s;
      }
    } finally {
      m.setBreakpoints(saved);
    }
  }

  #breakpoints: number[] = [];
  /** run() stops before executing an instruction at any of these addresses; resuming from one does not stop there again at once. */
  setBreakpoints(addrs: number[]): void {
    this.#m.setBreakpoints(addrs);
    this.#breakpoints = [...addrs];
  }

  /**
   * Replaces the set of watchpoints (an empty list removes them all). run() (and step()) then stop
   * with { kind: 'watchpoint' } just after a guest instruction that reads ('read'), writes
   * ('write') or does either ('access') memory overlapping [address, address + length): the
   * state is exactly the one after that instruction (the next one has not run), resuming goes
   * on normally. Every access counts: unaligned ones straddling the range's edge, each iteration
   * of rep movs/stos/..., FXSAVE/FXRSTOR and other multi-byte instructions, POPCNT/MOVBE emulated
   * here. Writes through write() (the kernel's, the replayer's) never do. An instruction that
   * faults after touching a watched range is not reported (it did not retire; it runs again).
   * Cost while any watchpoint is set: about 7 ns per instruction (see docs/emulator.md).
   *
   * `{ collect: true }`: collect mode, for scans that only need the hits (reverse-continue). run()
   * and step() never stop for a hit; each one is counted and the latest kept, for takeWatchHits().
   * Same hits as the precise mode (same overlap rules, one per instruction execution, write() never,
   * not an instruction that faults or raises an exception: it did not retire), with no
   * per-instruction hook: the cost is the memory hooks' alone (see docs/emulator.md). All other
   * stops are as without watchpoints. The mode can change (or the list be emptied) between any
   * two runs; hits collected so far stay until takeWatchHits().
   */
  setWatchpoints(list: Watchpoint[], options: { collect?: boolean } = {}): void {
    this.#m.setWatchpoints(Array.isArray(list) ? list.map((w) => ({ address: w?.address, length: w?.length, kind: w?.kind })) : list, options?.collect === true);
  }

  /** Returns the hits collected in collect mode since the last call, and clears them. */
  takeWatchHits(): WatchHits {
    return this.#m.takeWatchHits();
  }

  /** The last (up to 16) blocks entered, oldest first. */
  recentBlocks(): { address: number; size: number }[] { return this.#m.recentBlocks(); }

  disassemble(addr: number, count: number): Instruction[] { return this.#m.disassemble(addr, count); }

  close(): void {
    if (this.#n) {
      this.#n.close();
      this.#n = undefined;
    }
  }

  #convert(s: NativeStop): StopReason {
    switch (s.kind) {
      case 'syscall': return { kind: 'syscall' };
      case 'cpuid': return { kind: 'cpuid', rip: s.rip };
      case 'rdtsc': return { kind: 'rdtsc', rip: s.rip, insn: s.insn! };
      case 'memory-fault': return { kind: 'memory-fault', rip: s.rip, address: s.address!, access: s.access!, cause: s.cause! };
      case 'interrupt': return { kind: 'interrupt', rip: s.rip, vector: s.vector! };
      case 'tick-target': return { kind: 'tick-target' };
      case 'breakpoint': return { kind: 'breakpoint', rip: s.rip };
      case 'budget': return { kind: 'budget' };
      case 'instruction-target': return { kind: 'instruction-target' };
      case 'watchpoint':
        return { kind: 'watchpoint', rip: s.rip, address: s.address!, size: s.size!, access: s.access as 'read' | 'write', instructions: s.instructions! };
      case 'invalid-instruction': {
        const bytes = this.#readUpTo(s.rip, 15);
        const d = bytes.length ? native().disassembleBytes(bytes, s.rip) : [];
        if (d.length && d[0].text !== '(undecodable)') return { kind: 'invalid-instruction', rip: s.rip, bytes: d[0].bytes, text: d[0].text };
        return { kind: 'invalid-instruction', rip: s.rip, bytes, text: '(undecodable)' };
      }
      default: throw new Error(`emulator: unexpected stop ${JSON.stringify(s)}`);
    }
  }

  #readUpTo(addr: number, n: number): Buffer {
    for (let k = n; k > 0; k--) {
      try {
        return this.#m.read(addr, k);
      } catch {
        // shorter
      }
    }
    return Buffer.alloc(0);
  }
}

export function disassembleBytes(bytes: Uint8Array, address: number): Instruction[] {
  return native().disassembleBytes(bytes, address);
}
