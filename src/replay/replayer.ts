// Replays a trace on emulator Machines: runs each process image until its next recorded event,
// checks that the emulator reached the same state, then applies what the kernel did.
// No host syscall is ever made on the trace's behalf: output comes from the emulator's memory.
import type { Machine, StopReason, ThreadContext } from '../emulator/machine.ts';
import { TraceFormatError } from '../trace/errors.ts';
import type { TraceReader } from '../trace/reader.ts';
import type { CloneEvent, ExecEvent, ExitEvent, RdtscEvent, SignalEvent, SwitchEvent, SyscallEvent, TraceEvent, UserRegName } from '../trace/schema.ts';
import { syscallName } from '../trace/syscall-names.ts';
import { AddressSpace, type SpaceImage } from './address-space.ts';
import type { ExecutionControl } from './control.ts';
import { CpuidTable } from './cpuid.ts';
import { Divergence, lastBlocks, registersSideBySide } from './divergence.ts';
import { getReg, hex, sameReg, setReg, syscallArgs } from './registers.ts';
import { COMPARED_AT_SIGNAL, signalStateMismatch } from './signals.ts';

export interface ReplayOptions {
  /** Receives what the program wrote to its stdout (1) and stderr (2) while recorded. */
  output?: (fd: 1 | 2, data: Uint8Array) => void;
  /** Called now and then with the number of events replayed so far. */
  onProgress?: (eventsDone: number, eventCount: number) => void;
}

export interface ReplayResult {
  verified: boolean;
  /** The recorded exit status of the first process (128+N when signal N killed it); null if the trace ends before it exits. */
  exitStatus: number | null;
  instructions: number;
  ticks: number;
  events: number;
  seconds: number;
  divergence: null | { event: number; reason: string; report: string };
}

/** Registers compared at each syscall entry. Flags are left out: x86 leaves some flags undefined
 * after many instructions and QEMU computes those differently from hardware. rax is compared with
 * orig_rax (the syscall number); rcx/r11 are what SYSCALL itself set. */
const COMPARED_AT_SYSCALL: readonly UserRegName[] = [
  'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r10', 'r9', 'r8', 'rcx', 'rdx', 'rsi', 'rdi', 'rip', 'rsp', 'fs_base',
];
const SYS_WRITE = 1, SYS_WRITEV = 20, SYS_SENDFILE = 40, SYS_ARCH_PRCTL = 158;
const ARCH_SET_GS = 0x1001, ARCH_SET_FS = 0x1002;
const SYS_RT_SIGRETURN = 15;
/** Offsets in the rt_sigframe the kernel builds (pretcode, then the ucontext): uc_mcontext is at
 * frame + 48; its u64 registers in sigcontext order, then cs, and the fpstate pointer at +184. */
const MCONTEXT = 48;
const SIGCONTEXT_REGS: readonly UserRegName[] = ['r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rdi', 'rsi', 'rbp', 'rbx', 'rdx', 'rax', 'rcx', 'rsp', 'rip', 'eflags'];
const SYS_CLONE = 56, SYS_FORK = 57, SYS_VFORK = 58, SYS_CLONE3 = 435;
/** Results a syscall interrupted by a signal ends with internally. With no handler to run (the
 * signal ignored, or only seen by the tracer) the kernel restarts it: rip back onto the SYSCALL
 * instruction, rax the syscall number again, or restart_syscall for ERESTART_RESTARTBLOCK. A
 * handler's frame and registers come from the trace's signal event instead. */
const ERESTARTSYS = -512, ERESTARTNOINTR = -513, ERESTARTNOHAND = -514, ERESTART_RESTARTBLOCK = -516;
const RESTARTED = new Set([ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK]);
const SYS_RESTART_SYSCALL = 219;
const CLONE_VM = 0x100, CLONE_VFORK = 0x4000, CLONE_THREAD = 0x10000;
/** Instructions per native run slice between progress reports. */
const SLICE = 200_000_000;

export function replayTrace(reader: TraceReader, opts: ReplayOptions = {}): ReplayResult {
  return new Replayer(reader, opts).run();
}

/** Everything a replay is at one moment (between events, or paused inside one): the memory of
 * every live process and the state of every live thread. Restoring it and applying the same
 * events again replays exactly the same instructions. */
export interface ReplayerSnapshot {
  spaces: { image: SpaceImage; loadedTid: number | undefined }[];
  threads: { pid: number; tid: number; space: number; ctx?: ThreadContext; start?: ThreadState['start']; parked: boolean; tickBase: number; ticks: number; instructions: number }[];
  vforkChildren: [space: number, tid: number][];
  active: [pid: number, tid: number][];
  currentTid: number | undefined;
  instructionsBefore: number;
  ticksBefore: number;
  firstPid: number | undefined;
  exitStatus: number | null;
  eventNumber: number;
  clock: number;
  /** Memory bytes this snapshot holds that the one it was captured after does not. */
  ownBytes: number;
}

/** A live thread as the execution control and the debugger see it. */
export interface ReplayThread {
  readonly pid: number;
  readonly tid: number;
  /** Its process's memory; `space.machine` is the engine it runs in. */
  readonly space: { readonly machine: Machine };
}

/** One replayed thread: its address space and, while another thread of that space is loaded in
 * the engine, its saved context. Threads are created by exec (a new image) and clone events. */
interface ThreadState {
  pid: number;
  tid: number;
  space: AddressSpace;
  /** Saved registers and counters while not loaded; undefined while loaded or before it first runs. */
  ctx?: ThreadContext;
  /** Registers and FPU state it starts with (a clone child not yet loaded). */
  start?: { regs: Uint8Array; fpregs: Uint8Array };
  /** Stopped at a syscall whose event comes later (a fork parent, a vfork child waiting for the parent). */
  parked: boolean;
  /** Ticks at its start (the exec event's), subtracted in the summary. */
  tickBase: number;
  /** Counters when it was last unloaded. */
  ticks: number;
  instructions: number;
}

export class Replayer {
  /** Live threads by tid. Processes each have their own AddressSpace; a vfork child shares its parent's. */
  private readonly threads = new Map<number, ThreadState>();
  /** The thread whose context is in each space's engine. */
  private readonly loaded = new Map<AddressSpace, ThreadState>();
  /** The vfork child running in a space (its parent waits until it execs or exits). */
  private readonly vforkChild = new Map<AddressSpace, ThreadState>();
  /** The thread of each process (by pid) whose user code ran last in the recording: threads of a
   * process ran one at a time, and a switch event names the next one. */
  private readonly active = new Map<number, ThreadState>();
  /** The thread of the event being applied. */
  private current: ThreadState | undefined;
  private readonly cpuid: CpuidTable;
  private readonly pmuTicks: boolean;
  private instructionsBefore = 0;
  private ticksBefore = 0;
  private firstPid: number | undefined;
  private exitStatus: number | null = null;
  /** The next event to apply (the one being applied while paused inside it). */
  eventNumber = 0;
  /** Instructions executed by the replay so far, all threads and processes together: one engine
   * runs at a time, so this orders every moment of the replay. */
  clock = 0;
  /** Instructions executed by this replayer over its life, re-executions after restore() included. */
  executed = 0;
  /** Set by a debugger: sees every engine run and may pause the replay (by throwing Paused). */
  control: ExecutionControl | undefined;

  constructor(
    private readonly reader: TraceReader,
    private readonly opts: ReplayOptions,
  ) {
    this.cpuid = new CpuidTable(reader.header.cpuid);
    this.pmuTicks = reader.header.tickMode.kind === 'pmu';
  }

  run(): ReplayResult {
    const started = performance.now();
    let divergence: ReplayResult['divergence'] = null;
    const count = this.reader.eventCount;
    try {
      for (const ev of this.reader.events(0)) {
        this.apply(ev);
        this.eventNumber++;
        if (this.opts.onProgress && (this.eventNumber & 1023) === 0) this.opts.onProgress(this.eventNumber, count);
      }
    } catch (err) {
      if (!(err instanceof Divergence)) throw err;
      divergence = { event: err.event, reason: err.reason, report: err.report };
    } finally {
      for (const th of [...this.threads.values()]) this.retireThread(th);
    }
    this.opts.onProgress?.(this.eventNumber, count);
    return {
      verified: divergence === null,
      exitStatus: this.exitStatus,
      instructions: this.instructionsBefore,
      ticks: this.ticksBefore,
      events: this.eventNumber,
      seconds: (performance.now() - started) / 1000,
      divergence,
    };
  }

  /** Live threads of a process, in creation order. */
  threadsOf(pid: number): ReplayThread[] {
    return [...this.threads.values()].filter((t) => t.pid === pid);
  }

  /** Instructions a live thread has retired (its position in its own instruction stream). */
  instructionsOf(tid: number): number | undefined {
    const th = this.threads.get(tid);
    if (!th) return undefined;
    if (this.loaded.get(th.space) === th) return th.space.machine.instructions;
    return th.ctx ? th.instructions : 0;
  }

  /** Registers of a live thread: its context is loaded in its engine to read them (applying an
   * event loads the event's thread again, so this never disturbs the replay). */
  registersOf(tid: number): { regs: Uint8Array; fxsave: Uint8Array } {
    const th = this.threads.get(tid);
    if (!th) throw new Error(`no live thread ${tid}`);
    const current = this.current;
    this.load(th);
    this.current = current;
    return { regs: th.space.machine.getUserRegs(), fxsave: th.space.machine.getFxsave() };
  }

  /** The engine holding a process's memory, if the process is alive. */
  machineOf(pid: number): Machine | undefined {
    for (const t of this.threads.values()) if (t.pid === pid) return t.space.machine;
    return undefined;
  }

  /** Freezes the whole replay state. `previous` (an earlier snapshot) lets unchanged memory be shared. */
  snapshot(previous?: ReplayerSnapshot): ReplayerSnapshot {
    const spaces = [...new Set([...this.threads.values()].map((t) => t.space))];
    const prevImage = new Map<number, SpaceImage>();
    previous?.threads.forEach((t) => prevImage.has(t.pid) || prevImage.set(t.pid, previous.spaces[t.space].image));
    const owner = (sp: AddressSpace) => [...this.threads.values()].find((t) => t.space === sp)!.pid;
    const images = spaces.map((sp) => ({ image: sp.capture(prevImage.get(owner(sp))), loadedTid: this.loaded.get(sp)?.tid }));
    const threads = [...this.threads.values()].map((t) => {
      const isLoaded = this.loaded.get(t.space) === t;
      return {
        pid: t.pid, tid: t.tid, space: spaces.indexOf(t.space),
        ctx: isLoaded ? t.space.machine.saveContext() : t.ctx,
        start: t.start, parked: t.parked, tickBase: t.tickBase, ticks: t.ticks, instructions: t.instructions,
      };
    });
    return {
      spaces: images,
      threads,
      vforkChildren: [...this.vforkChild].map(([sp, t]) => [spaces.indexOf(sp), t.tid]),
      active: [...this.active].filter(([, t]) => this.threads.get(t.tid) === t).map(([pid, t]) => [pid, t.tid]),
      currentTid: this.current?.tid,
      instructionsBefore: this.instructionsBefore,
      ticksBefore: this.ticksBefore,
      firstPid: this.firstPid,
      exitStatus: this.exitStatus,
      eventNumber: this.eventNumber,
      clock: this.clock,
      ownBytes: images.reduce((n, i) => n + i.image.ownBytes, 0),
    };
  }

  /** Puts the replay back to a snapshot (fresh engines; the snapshot stays reusable). */
  restore(snap: ReplayerSnapshot): void {
    this.closeAll();
    const spaces = snap.spaces.map((s) => new AddressSpace({ image: s.image }));
    for (const t of snap.threads) {
      const space = spaces[t.space];
      const th: ThreadState = { pid: t.pid, tid: t.tid, space, start: t.start, parked: t.parked, tickBase: t.tickBase, ticks: t.ticks, instructions: t.instructions };
      if (snap.spaces[t.space].loadedTid === t.tid) {
        if (t.ctx) space.machine.restoreContext(t.ctx);
        this.loaded.set(space, th);
      } else {
        th.ctx = t.ctx;
      }
      this.threads.set(t.tid, th);
    }
    for (const [sp, tid] of snap.vforkChildren) this.vforkChild.set(spaces[sp], this.threads.get(tid)!);
    for (const [pid, tid] of snap.active) this.active.set(pid, this.threads.get(tid)!);
    this.current = snap.currentTid === undefined ? undefined : this.threads.get(snap.currentTid);
    this.instructionsBefore = snap.instructionsBefore;
    this.ticksBefore = snap.ticksBefore;
    this.firstPid = snap.firstPid;
    this.exitStatus = snap.exitStatus;
    this.eventNumber = snap.eventNumber;
    this.clock = snap.clock;
  }

  /** Frees every engine. */
  closeAll(): void {
    for (const sp of new Set([...this.threads.values()].map((t) => t.space))) sp.close();
    this.threads.clear();
    this.loaded.clear();
    this.vforkChild.clear();
    this.active.clear();
    this.current = undefined;
  }

  /** Applies one event. A Paused thrown by the control leaves the event half-applied; applying
   * the same event again later resumes it where it paused (every step before an engine run is
   * idempotent). */
  apply(ev: TraceEvent): void {
    switch (ev.kind) {
      case 'exec':
        return this.applyExec(ev);
      case 'syscall':
        this.enter(ev);
        return this.applySyscall(ev);
      case 'rdtsc':
        this.enter(ev);
        return this.applyRdtsc(ev);
      case 'signal':
        this.enter(ev);
        return this.applySignal(ev);
      case 'clone':
        this.enter(ev);
        return this.applyClone(ev);
      case 'exit':
        return this.applyExit(ev);
      case 'switch':
        return this.applySwitch(ev);
    }
  }

  private get machine(): Machine {
    if (!this.current) throw this.diverge('the trace has an event before any exec event');
    return this.current.space.machine;
  }

  private get space(): AddressSpace {
    if (!this.current) throw this.diverge('the trace has an event before any exec event');
    return this.current.space;
  }

  /** Make the event's thread current: its context loaded in its space's engine. A vfork child
   * sharing the space first runs to the syscall that ends its vfork (exec or exit): the parent
   * cannot run before that. */
  private enter(ev: { pid: number; tid: number }): void {
    const th = this.threads.get(ev.tid);
    if (!th) throw this.diverge(`event of thread ${ev.pid}/${ev.tid}, which the trace has not created (no exec or clone event for it)`);
    const child = this.vforkChild.get(th.space);
    if (child && child !== th && !child.parked) {
      this.load(child);
      const stop = this.runToNextStop();
      if (stop.kind !== 'syscall') throw this.unexpectedStop(stop, `the vfork child ${child.pid} to reach the syscall that ends its vfork (exec or exit)`);
      child.parked = true;
    }
    this.load(th);
  }

  private load(th: ThreadState): void {
    this.current = th;
    const m = th.space.machine;
    const cur = this.loaded.get(th.space);
    if (cur === th) return;
    if (cur) {
      cur.ticks = m.ticks;
      cur.instructions = m.instructions;
      cur.ctx = m.saveContext();
    }
    if (th.ctx) {
      m.restoreContext(th.ctx);
      th.ctx = undefined;
    } else if (th.start) {
      m.setUserRegs(th.start.regs);
      m.setFxsave(th.start.fpregs);
      m.setCounters(0, 0);
      th.start = undefined;
    }
    this.loaded.set(th.space, th);
  }

  /** A thread ends (exit, or exec replacing its image): count its work, free its space when unused. */
  private retireThread(th: ThreadState): void {
    const m = th.space.machine;
    const isLoaded = this.loaded.get(th.space) === th;
    const ticks = isLoaded ? m.ticks : th.ticks;
    const instructions = isLoaded ? m.instructions : th.instructions;
    this.instructionsBefore += instructions;
    this.ticksBefore += ticks - th.tickBase;
    this.threads.delete(th.tid);
    if (isLoaded) this.loaded.delete(th.space);
    if (this.vforkChild.get(th.space) === th) this.vforkChild.delete(th.space);
    if (this.current === th) this.current = undefined;
    if (![...this.threads.values()].some((x) => x.space === th.space)) {
      this.loaded.delete(th.space);
      this.vforkChild.delete(th.space);
      th.space.close();
    }
  }

  private applyExec(ev: ExecEvent): void {
    // The new image has one thread: every thread of the old one ends, the exec'ing one included
    // (an exec from a thread other than the leader takes the leader's tid; its own tid vanishes).
    const old = [...this.threads.values()].filter((t) => t.pid === ev.pid);
    const stackLimit = ev.stackLimit ?? (this.threads.get(ev.tid) ?? old[0])?.space.stackLimit;
    for (const th of old) this.retireThread(th);
    this.firstPid ??= ev.pid;
    let space: AddressSpace;
    try {
      space = new AddressSpace(ev, (b) => this.reader.bytes(b), stackLimit);
    } catch (err) {
      if (err instanceof TraceFormatError) throw err;
      throw this.diverge(`cannot build the address space of ${ev.path}: ${(err as Error).message}`);
    }
    const tickBase = ev.ticks ?? 0;
    space.machine.setCounters(tickBase, 0);
    const th: ThreadState = { pid: ev.pid, tid: ev.tid, space, parked: false, tickBase, ticks: tickBase, instructions: 0 };
    this.threads.set(ev.tid, th);
    this.loaded.set(space, th);
    this.active.set(ev.pid, th);
    this.current = th;
  }

  /** Another thread of a process runs from here on. The one that ran before let it run at a
   * syscall entry (futex wait, sched_yield...) whose event comes later, when it runs again: it
   * executes up to that syscall now, before any user code of the next thread, as it did while
   * recorded. */
  private applySwitch(ev: SwitchEvent): void {
    const th = this.threads.get(ev.tid);
    if (!th) throw this.diverge(`switch to thread ${ev.pid}/${ev.tid}, which the trace has not created`);
    const prev = this.active.get(ev.pid);
    if (prev && prev !== th && this.threads.get(prev.tid) === prev && !prev.parked) {
      this.load(prev);
      const stop = this.runToNextStop();
      if (stop.kind !== 'syscall') throw this.unexpectedStop(stop, `thread ${prev.tid} to reach the syscall at which thread ${th.tid} started running`);
      prev.parked = true;
    }
    this.active.set(ev.pid, th);
  }

  private applyExit(ev: ExitEvent): void {
    if (ev.processExit && ev.pid === this.firstPid) this.exitStatus = ev.code ?? 128 + (ev.signal ?? 0);
    const th = this.threads.get(ev.tid);
    if (th) {
      if (this.active.get(ev.pid) === th) this.active.delete(ev.pid);
      this.retireThread(th);
    }
  }

  /** fork, vfork, clone of a process: the parent runs to its creating syscall (whose own event, with
   * the child's pid as result, comes later) and the child starts from the recorded registers, in a
   * copy of the parent's memory (fork) or sharing it until it execs or exits (vfork). */
  private applyClone(ev: CloneEvent): void {
    const parent = this.current!;
    if (!parent.parked) {
      const stop = this.runToNextStop();
      if (stop.kind !== 'syscall') throw this.unexpectedStop(stop, 'the syscall creating a process (fork, vfork, clone)');
      const nr = Number(this.machine.getReg('rax'));
      if (![SYS_CLONE, SYS_FORK, SYS_VFORK, SYS_CLONE3].includes(nr)) {
        throw this.diverge(`expected a syscall creating process ${ev.childPid} (fork, vfork, clone, clone3), the program made ${syscallName(nr)} (${nr})`, `last blocks executed:\n${lastBlocks(this.machine)}`);
      }
      parent.parked = true;
    }
    if (this.threads.has(ev.childTid)) throw this.diverge(`clone event: thread ${ev.childTid} already exists`);
    const thread = (ev.flags & CLONE_THREAD) !== 0;
    if ((ev.flags & CLONE_VM) && !(ev.flags & CLONE_VFORK) && !thread) throw this.diverge('clone events of processes sharing memory without CLONE_THREAD are not replayed');
    const shared = (ev.flags & CLONE_VM) !== 0;
    const space = shared ? parent.space : new AddressSpace(parent.space);
    for (const w of ev.writes ?? []) space.machine.write(w.addr, this.reader.bytes(w.data));
    const child: ThreadState = {
      pid: ev.childPid, tid: ev.childTid, space, parked: false, tickBase: 0, ticks: 0, instructions: 0,
      start: { regs: ev.regs, fpregs: ev.fpregs },
    };
    this.threads.set(ev.childTid, child);
    if (thread) {
      // A thread of the same process: a context of its space, loaded when it first runs.
    } else {
      this.active.set(ev.childPid, child);
      if (shared) this.vforkChild.set(space, child);
      else this.load(child);
    }
    this.load(parent);
  }

  /** Run until something the trace must account for: a syscall, rdtsc, fault or other stop.
   * CPUID is answered from the trace and stack growth done on the way. */
  private runToNextStop(): StopReason {
    const m = this.machine;
    const th = this.current!;
    for (;;) {
      const limits = this.control?.beforeRun(th) ?? { instructionBudget: SLICE };
      const before = m.instructions;
      const stop = m.run(limits);
      this.clock += m.instructions - before;
      this.executed += m.instructions - before;
      if (this.control?.onStop(th, stop)) continue;
      switch (stop.kind) {
        case 'budget':
          this.opts.onProgress?.(this.eventNumber, this.reader.eventCount);
          continue;
        case 'cpuid': {
          const a = this.cpuid.answer(Number(m.getReg('rax') & 0xffffffffn), Number(m.getReg('rcx') & 0xffffffffn));
          m.setReg('rax', BigInt(a.eax >>> 0));
          m.setReg('rbx', BigInt(a.ebx >>> 0));
          m.setReg('rcx', BigInt(a.ecx >>> 0));
          m.setReg('rdx', BigInt(a.edx >>> 0));
          m.setReg('rip', BigInt(stop.rip + 2));
          continue;
        }
        case 'invalid-instruction':
          if (isXgetbv(stop.bytes) && this.answerXgetbv(stop.rip)) continue;
          return stop;
        case 'memory-fault':
          if (stop.cause === 'unmapped' && stop.access !== 'fetch' && this.space.growStack(stop.address)) continue;
          return stop;
        default:
          return stop;
      }
    }
  }

  /** XGETBV (the emulator lacks it) answers the recorded XCR0 for ECX = 0, as the CPU did. */
  private answerXgetbv(rip: number): boolean {
    const xcr0 = this.reader.header.xcr0;
    const m = this.machine;
    if (xcr0 === undefined || (m.getReg('rcx') & 0xffffffffn) !== 0n) return false;
    m.setReg('rax', BigInt(xcr0) & 0xffffffffn);
    m.setReg('rdx', BigInt(xcr0) >> 32n);
    m.setReg('rip', BigInt(rip + 3));
    return true;
  }

  private applySyscall(ev: SyscallEvent): void {
    const th = this.current!;
    const stop: StopReason = th.parked ? { kind: 'syscall' } : this.runToNextStop();
    th.parked = false;
    const m = this.machine;
    if (stop.kind !== 'syscall') throw this.unexpectedStop(stop, `syscall ${syscallName(ev.number)}`);
    const actual = m.getUserRegs();
    const mismatch = this.compareSyscallEntry(ev, actual);
    if (mismatch) {
      throw this.diverge(mismatch, `${registersSideBySide(ev.regs, withOrigRax(actual), new Set([...COMPARED_AT_SYSCALL, 'orig_rax']))}\n\nlast blocks executed:\n${lastBlocks(m)}`);
    }
    if (this.pmuTicks && ev.ticks !== undefined && ev.ticks !== m.ticks) {
      throw this.diverge(`ticks differ at syscall ${syscallName(ev.number)}: recorded ${ev.ticks}, replayed ${m.ticks}`, `last blocks executed:\n${lastBlocks(m)}`);
    }
    if (ev.noReturn) {
      // A thread's exit carries the kernel's CLONE_CHILD_CLEARTID write; the thread runs no more.
      for (const w of ev.writes) m.write(w.addr, this.reader.bytes(w.data));
      th.parked = true;
      return;
    }
    this.echoOutput(ev);
    if (ev.number === SYS_RT_SIGRETURN) return this.sigreturn(ev);
    this.applyCpuEffects(ev);
    this.space.applySyscall(ev, (b) => this.reader.bytes(b));
    for (const w of ev.writes) m.write(w.addr, this.reader.bytes(w.data));
    if (RESTARTED.has(ev.result)) {
      m.setReg('rax', BigInt(ev.result === ERESTART_RESTARTBLOCK ? SYS_RESTART_SYSCALL : ev.number));
      m.setReg('rip', m.getReg('rip') - 2n);
      return;
    }
    m.setReg('rax', BigInt.asUintN(64, BigInt(ev.result)));
  }

  /** rt_sigreturn: the registers and FPU state come back from the signal frame, as the kernel does
   * (the handler returned into the restorer with rsp just past the frame's return address). */
  private sigreturn(ev: SyscallEvent): void {
    const m = this.machine;
    const frame = Number(m.getReg('rsp')) - 8;
    const sc = m.read(frame + MCONTEXT, 192);
    const dv = new DataView(sc.buffer, sc.byteOffset, sc.byteLength);
    const regs = m.getUserRegs();
    SIGCONTEXT_REGS.forEach((name, i) => setReg(regs, name, dv.getBigUint64(i * 8, true)));
    m.setUserRegs(regs);
    const fpstate = Number(dv.getBigUint64(184, true));
    if (fpstate !== 0) m.setFxsave(m.read(fpstate, 512));
    const rax = m.getReg('rax');
    if (rax !== BigInt.asUintN(64, BigInt(ev.result))) {
      throw this.diverge(`rt_sigreturn restored rax ${hex(rax)} from the signal frame, the recording returned ${hex(BigInt.asUintN(64, BigInt(ev.result)))}`);
    }
  }

  private compareSyscallEntry(ev: SyscallEvent, actual: Uint8Array): string | null {
    const nr = getReg(actual, 'rax');
    if (nr !== BigInt(ev.number)) return `expected syscall ${syscallName(ev.number)} (${ev.number}), the program made ${syscallName(Number(nr))} (${nr})`;
    const differing = COMPARED_AT_SYSCALL.filter((r) => !sameReg(actual, ev.regs, r));
    if (differing.length === 0) return null;
    const first = differing[0];
    return `registers differ at syscall ${syscallName(ev.number)}: ${differing.join(', ')} (${first} recorded ${hex(getReg(ev.regs, first))}, replayed ${hex(getReg(actual, first))})`;
  }

  /** Syscalls that change CPU state rather than memory. */
  private applyCpuEffects(ev: SyscallEvent): void {
    if (ev.number !== SYS_ARCH_PRCTL || ev.result !== 0) return;
    const [code, addr] = syscallArgs(ev.regs);
    if (code === ARCH_SET_FS) this.machine.setReg('fs_base', BigInt(addr));
    if (code === ARCH_SET_GS) this.machine.setReg('gs_base', BigInt(addr));
  }

  /** What the program wrote to stdout/stderr, read from the emulator's memory (never from the host). */
  private echoOutput(ev: SyscallEvent): void {
    const out = this.opts.output;
    if (!out || ev.result <= 0 || ev.notOurOutput) return;
    if (ev.output) {
      // Copied by the kernel from a file (copy_file_range, sendfile, splice): the out fd is the
      // first argument of sendfile, the third of the others.
      const [a0, , a2] = syscallArgs(ev.regs);
      const outFd = ev.number === SYS_SENDFILE ? a0 : a2;
      if (outFd === 1 || outFd === 2) out(ev.echoFd ?? outFd, this.reader.bytes(ev.output));
      return;
    }
    const [writtenFd, buf, count] = syscallArgs(ev.regs);
    if (writtenFd !== 1 && writtenFd !== 2) return;
    const fd = ev.echoFd ?? writtenFd;
    const m = this.machine;
    if (ev.number === SYS_WRITE) {
      out(fd, m.read(buf, Math.min(ev.result, count)));
    } else if (ev.number === SYS_WRITEV) {
      let left = ev.result;
      const iov = new DataView(m.read(buf, count * 16).buffer);
      for (let i = 0; i < count && left > 0; i++) {
        const base = Number(iov.getBigUint64(i * 16, true));
        const len = Math.min(Number(iov.getBigUint64(i * 16 + 8, true)), left);
        if (len > 0) out(fd, m.read(base, len));
        left -= len;
      }
    }
  }

  private applyRdtsc(ev: RdtscEvent): void {
    if (this.current!.parked) throw this.diverge(`expected ${ev.insn} at 0x${ev.rip.toString(16)}, but the thread is stopped at a syscall`);
    const stop = this.runToNextStop();
    if (stop.kind !== 'rdtsc' || stop.rip !== ev.rip) throw this.unexpectedStop(stop, `${ev.insn} at 0x${ev.rip.toString(16)}`);
    const m = this.machine;
    m.setReg('rax', ev.value & 0xffffffffn);
    m.setReg('rdx', ev.value >> 32n);
    if (ev.insn === 'rdtscp') m.setReg('rcx', BigInt(ev.aux ?? 0));
    m.setReg('rip', BigInt(ev.rip + (ev.insn === 'rdtscp' ? 3 : 2)));
  }

  private applySignal(ev: SignalEvent): void {
    const m = this.machine;
    if (this.current!.parked) throw this.diverge(`signal ${ev.signo} for a thread stopped at a syscall whose event has not come`);
    if (ev.synchronous) {
      const stop = this.runToNextStop();
      const rip = Number(getReg(ev.regs, 'rip'));
      const raised = stop.kind === 'memory-fault' || stop.kind === 'invalid-instruction' || stop.kind === 'interrupt';
      if (!raised || stop.rip !== rip) throw this.unexpectedStop(stop, `signal ${ev.signo} raised at 0x${rip.toString(16)}`);
      if (stop.kind === 'memory-fault' && ev.addr !== undefined && stop.address !== ev.addr) {
        throw this.diverge(`signal ${ev.signo} at 0x${rip.toString(16)}: recorded fault address 0x${ev.addr.toString(16)}, replayed 0x${stop.address.toString(16)}`);
      }
      // At the faulting instruction, which has not retired: pausing here and applying the event
      // again raises the same fault again.
      this.control?.onSignal(this.current!, ev);
    }
    if (ev.inUserCode) {
      // Where it arrived in user code: no place replay can find without ticks, none needed.
      this.control?.onSignal(this.current!, ev);
      if (!ev.fatal) throw this.diverge(`signal ${ev.signo} ran a handler from a point in user code the replay cannot find without hardware ticks`);
      return;
    }
    // An asynchronous signal without hardware ticks was delivered at a point replay knows (a
    // syscall's exit, a handler's entry, the SYSCALL instruction of the next syscall): the replay
    // delivers it there too, in the same state.
    // Already there when applied again after a pause below (or back on it after a handler's
    // rt_sigreturn): running would execute the SYSCALL once more.
    if (ev.beforeSyscall && signalStateMismatch(ev.regs, m.getUserRegs()) !== null) {
      const stop = this.runToNextStop();
      if (stop.kind !== 'syscall') throw this.unexpectedStop(stop, `the syscall before which signal ${ev.signo} was delivered`);
      m.setReg('rip', m.getReg('rip') - 2n);  // rax is still the number: the syscall runs after the handler
    }
    if (!ev.synchronous) this.control?.onSignal(this.current!, ev);
    const mismatch = signalStateMismatch(ev.regs, m.getUserRegs());
    if (mismatch) {
      throw this.diverge(`registers differ at signal ${ev.signo}: ${mismatch}`, `${registersSideBySide(ev.regs, m.getUserRegs(), new Set(COMPARED_AT_SIGNAL))}\n\nlast blocks executed:\n${lastBlocks(m)}`);
    }
    if (ev.fatal) return;
    for (const w of ev.writes) m.write(w.addr, this.reader.bytes(w.data));
    if (!ev.handlerRegs) throw this.diverge(`signal ${ev.signo} ran a handler but the trace has no handler registers`);
    m.setUserRegs(ev.handlerRegs);
  }

  private unexpectedStop(stop: StopReason, expected: string): Divergence {
    const m = this.machine;
    let what: string;
    switch (stop.kind) {
      case 'invalid-instruction':
        return this.diverge(
          `the replay CPU cannot execute ${stop.text} (bytes ${Buffer.from(stop.bytes).toString('hex')}) at 0x${stop.rip.toString(16)}; expected ${expected}`,
          `${lastBlocks(m)}\n\nhint: the recorded program used an instruction the emulator lacks (AVX, FMA, XSAVE, RDRAND, SHA...). ` +
            'Record again on this build of replay-anywhere so its CPU-feature mask applies; programs that probe CPUID themselves need CPUID faulting (Intel) or an option of their own (e.g. OPENSSL_ia32cap).',
        );
      case 'memory-fault':
        what = `a ${stop.access} fault at 0x${stop.address.toString(16)} (${stop.cause}) at rip 0x${stop.rip.toString(16)}`;
        break;
      case 'syscall':
        what = `syscall ${syscallName(Number(m.getReg('rax')))} at rip 0x${(Number(m.getReg('rip')) - 2).toString(16)}`;
        break;
      case 'rdtsc':
        if (this.reader.header.patchedInstructions?.includes(stop.insn)) {
          return this.diverge(
            `expected ${expected}, the replay reached ${stop.insn} at 0x${stop.rip.toString(16)}, which the recording did not trap`,
            `${lastBlocks(m)}\n\nhint: this trace was recorded where the CPU could not trap ${stop.insn} (a hypervisor that ignores PR_SET_TSC), so the recorder ` +
              'patched the instructions it found in the functions of the program\'s files; this one (JIT code, or assembly without unwind tables) ran untrapped and its value is not in the trace.',
          );
        }
        what = `${stop.insn} at 0x${stop.rip.toString(16)}`;
        break;
      case 'interrupt':
      case 'breakpoint':
        what = `${stop.kind} at 0x${stop.rip.toString(16)}${stop.kind === 'interrupt' ? ` (vector ${stop.vector})` : ''}`;
        break;
      default:
        what = stop.kind;
    }
    return this.diverge(`expected ${expected}, the replay reached ${what}`, `last blocks executed:\n${lastBlocks(m)}`);
  }

  private diverge(reason: string, report = ''): Divergence {
    return new Divergence(this.eventNumber, reason, report);
  }
}

const isXgetbv = (b: Uint8Array) => b.length >= 3 && b[0] === 0x0f && b[1] === 0x01 && b[2] === 0xd0;

/** The emulator has no orig_rax: show the syscall number there so the columns line up. */
function withOrigRax(regs: Uint8Array): Uint8Array {
  const copy = Uint8Array.from(regs);
  setReg(copy, 'orig_rax', getReg(regs, 'rax'));
  return copy;
}
