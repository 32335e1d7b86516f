// A replay one can move through in both directions, for the GDB server. Forward is the replay
// itself, paused by an execution control (breakpoints, watchpoints, instruction targets).
// Backward is exact re-execution: restore the latest checkpoint before the goal and replay
// forward to it, counting instructions (each thread's count says where it is in its own
// instruction stream; the replay's clock orders all threads and processes).
import type { Machine, StopReason, Watchpoint } from '../emulator/machine.ts';
import { Paused, type ExecutionControl, type RunLimits } from '../replay/control.ts';
import { Replayer, type ReplayerSnapshot, type ReplayThread } from '../replay/replayer.ts';
import { PROGRAM_FILES_EXTRA } from '../recorder/program-files.ts';
import type { TraceReader } from '../trace/reader.ts';
import { getReg } from '../replay/registers.ts';
import type { Bytes, ExecEvent, Mapping, SignalEvent, TraceEvent } from '../trace/schema.ts';
import type { DebugTarget, ResumeRequest, Stop, StopCause, WatchKind } from './target.ts';

/** Fewest instructions between checkpoints. The interval grows so that taking checkpoints (copying
 * the changed memory) costs at most 1/CHECKPOINT_COST_SHARE of the replay time. */
const MIN_CHECKPOINT_INTERVAL = 4_000_000;
const CHECKPOINT_COST_SHARE = 10;
/** Past this many checkpoints, the closest pair loses one (older history gets sparser). */
const MAX_CHECKPOINTS = 200;
/** Instructions per engine run while debugging: how often the session can yield, checkpoint or be interrupted. */
const SLICE = 2_000_000;
/** Milliseconds of replay between yields to the event loop (gdb's Ctrl-C reaches us then). */
const YIELD_MS = 50;

/** The latest moment before thread `tid` executes its instruction number count + 1. */
interface Position {
  tid: number;
  count: number;
  /** The replay's clock there (orders positions and checkpoints). */
  clock: number;
}

interface Hit extends Position {
  cause: StopCause;
  /** A collected watch hit whose instruction within its block the engine could only guess. */
  ambiguous?: boolean;
}

/** Most instructions QEMU puts in one translated block: a guessed hit lies within this distance. */
const MAX_BLOCK_INSTRUCTIONS = 512;

interface Checkpoint {
  snap: ReplayerSnapshot;
  /** Instructions retired by each live thread. */
  counts: Map<number, number>;
}

type Goal =
  | { kind: 'thread'; tid: number; count: number }
  | { kind: 'clock'; clock: number }
  /** The first time a thread of the process is about to run, from event `fromEvent` on. */
  | { kind: 'process'; fromEvent: number };

interface Mode {
  goal?: Goal;
  breakpoints: boolean;
  watchpoints: boolean;
  /** Pause before a recorded signal reaches the process. */
  signals: boolean;
  /** Record breakpoint and watchpoint hits and go on (a backward search) instead of pausing. */
  collect?: Hit[];
}

/** What a run of the session ended with. */
type DriveEnd = { kind: 'paused'; cause?: StopCause } | { kind: 'exited' } | { kind: 'trace-end' };

export interface DebugSessionOptions {
  /** The process to debug (default: the first one recorded). */
  pid?: number;
  /** Start at this event (default: the process's first instruction). */
  gotoEvent?: number;
}

export class DebugSessionError extends Error {}

export async function openDebugSession(reader: TraceReader, opts: DebugSessionOptions = {}): Promise<DebugSession> {
  const pid = opts.pid ?? firstPid(reader);
  const session = new DebugSession(reader, pid);
  try {
    await session.start(opts.gotoEvent ?? 0);
  } catch (err) {
    session.close();
    throw err;
  }
  return session;
}

function firstPid(reader: TraceReader): number {
  if (reader.eventCount === 0) throw new DebugSessionError('the trace has no events');
  return reader.event(0).pid;
}

export class DebugSession implements DebugTarget {
  private readonly replayer: Replayer;
  private events: Iterator<TraceEvent>;
  /** The event being applied when the replay paused inside it; applied again to go on. */
  private pending: TraceEvent | undefined;
  private readonly checkpoints: Checkpoint[] = [];
  /** Where the replay is paused; undefined once the process has exited. */
  private here: Position | undefined;
  /** The process's first moment: backward moves stop there. */
  private startPosition: Position | undefined;
  private mode: Mode = { breakpoints: false, watchpoints: false, signals: false };
  private readonly breakpoints = new Set<number>();
  private readonly watches = new Map<string, Watchpoint>();
  /** Bumped when breakpoints or watchpoints change: engines are updated before they next run. */
  private debugStateVersion = 0;
  private readonly engineVersion = new WeakMap<Machine, number>();
  private interruptRequested = false;
  /** Set when an interrupt turned the current drive into "stop when the process next runs". */
  private interruptCause = false;
  private lastYield = 0;
  /** Signal events already reported (by event number), so resuming delivers them. */
  private readonly reportedSignals = new Set<number>();
  /** The exec image of each process seen (a forked child has its parent's). */
  private readonly images = new Map<number, ExecEvent>();
  private exitStatus: { code: number | null; signal: number | null } | undefined;
  private closed = false;

  constructor(
    private readonly reader: TraceReader,
    readonly pid: number,
  ) {
    this.replayer = new Replayer(reader, {});
    this.replayer.control = this.control();
    this.events = reader.events(0);
    this.checkpoints.push(this.checkpoint());
  }

  /** The executable's path as the file index knows it (the path it was mapped from). */
  get execPath(): string {
    const img = this.image();
    if (this.keptFiles()[img.path]) return img.path;
    return img.mappings.find((m) => m.name.startsWith('/'))?.name ?? img.path;
  }

  /** Runs to the process's first instruction, then to the first moment of it at or after event `gotoEvent`. */
  async start(gotoEvent: number): Promise<void> {
    if (!Number.isInteger(gotoEvent) || gotoEvent < 0 || gotoEvent >= Math.max(1, this.reader.eventCount)) {
      throw new DebugSessionError(`--goto ${gotoEvent}: the trace has events 0 to ${this.reader.eventCount - 1}`);
    }
    const end = await this.drive({ goal: { kind: 'process', fromEvent: 0 }, breakpoints: false, watchpoints: false, signals: false });
    if (end.kind !== 'paused') throw new DebugSessionError(`process ${this.pid} never runs in this trace (see \`replay-anywhere info\` for its processes)`);
    this.startPosition = this.here;
    if (gotoEvent > this.replayer.eventNumber) {
      const to = await this.drive({ goal: { kind: 'process', fromEvent: gotoEvent }, breakpoints: false, watchpoints: false, signals: false });
      if (to.kind !== 'paused') throw new DebugSessionError(`process ${this.pid} does not run at or after event ${gotoEvent}`);
    }
  }

  // ---- DebugTarget: state at the current position ----

  threads(): number[] {
    if (!this.here) return [];
    return this.replayer.threadsOf(this.pid).map((t) => t.tid);
  }

  registers(tid: number): { regs: Uint8Array; fxsave: Uint8Array } {
    if (!this.here || !this.threads().includes(tid)) throw new DebugSessionError(`no thread ${tid} in process ${this.pid} here`);
    return this.replayer.registersOf(tid);
  }

  readMemory(addr: number, length: number): Uint8Array {
    const m = this.here && this.replayer.machineOf(this.pid);
    if (!m || length <= 0) return new Uint8Array(0);
    const parts: Uint8Array[] = [];
    let at = addr;
    const end = addr + length;
    for (const r of m.regions()) {
      if (r.end <= at) continue;
      if (r.start > at || at >= end) break;
      const upto = Math.min(end, r.end);
      parts.push(m.read(at, upto - at));
      at = upto;
    }
    return Buffer.concat(parts);
  }

  auxv(): Uint8Array {
    return this.image().auxv;
  }

  /** A kept file by path; gdb may name a library by another path to the same file (the dynamic
   * loader's /lib/... where the mapping said /usr/lib/..., a soname symlink), so a unique base
   * name matches too, then a unique versioned one. */
  file(path: string): Uint8Array | undefined {
    const proc = /^\/proc\/(\d+)(?:\/task\/\d+)?\/maps$/.exec(path);
    if (proc) return Number(proc[1]) === this.pid && this.here ? Buffer.from(this.procMaps()) : undefined;
    const files = this.keptFiles();
    let bytes = Object.hasOwn(files, path) ? files[path] : undefined;
    if (bytes === undefined) {
      // libfoo.so.0 (the soname the loader opened) names the file libfoo.so.0.11.2 it links to.
      const base = path.slice(path.lastIndexOf('/') + 1);
      for (const named of [(p: string) => p.endsWith(`/${base}`), (p: string) => p.slice(p.lastIndexOf('/') + 1).startsWith(`${base}.`)]) {
        const same = Object.keys(files).filter(named);
        if (same.length === 1) {
          bytes = files[same[0]];
          break;
        }
      }
    }
    return bytes === undefined ? undefined : this.reader.bytes(bytes);
  }

  private keptFiles(): Record<string, Bytes> {
    const files = this.reader.extras[PROGRAM_FILES_EXTRA];
    return typeof files === 'object' && files !== null ? (files as Record<string, Bytes>) : {};
  }

  setBreakpoint(address: number): void {
    this.breakpoints.add(address);
    this.debugStateVersion++;
  }

  removeBreakpoint(address: number): void {
    this.breakpoints.delete(address);
    this.debugStateVersion++;
  }

  setWatchpoint(address: number, length: number, kind: WatchKind): void {
    this.watches.set(`${address}:${length}:${kind}`, { address, length, kind });
    this.debugStateVersion++;
  }

  removeWatchpoint(address: number, length: number, kind: WatchKind): void {
    this.watches.delete(`${address}:${length}:${kind}`);
    this.debugStateVersion++;
  }

  interrupt(): void {
    this.interruptRequested = true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.replayer.closeAll();
    this.checkpoints.length = 0;
  }

  /** Memory the checkpoints hold (bytes of distinct chunks) and how many there are. */
  checkpointStats(): { count: number; bytes: number } {
    return { count: this.checkpoints.length, bytes: this.checkpoints.reduce((n, c) => n + c.snap.ownBytes, 0) };
  }

  /** The replay's clock at the current position (instructions replayed so far, all processes). */
  get clock(): number {
    return this.replayer.clock;
  }

  // ---- Moving ----

  async resume(req: ResumeRequest): Promise<Stop> {
    this.interruptRequested = false;
    if (!this.here) return { tid: this.pid, cause: this.exitCause() };
    const tid = this.threads().includes(req.tid) ? req.tid : this.here.tid;
    if (req.direction === 'forward') return req.step ? this.stepForward(tid) : this.continueForward();
    return req.step ? this.stepBackward(tid) : this.continueBackward();
  }

  private async stepForward(tid: number): Promise<Stop> {
    const count = this.replayer.instructionsOf(tid)!;
    const end = await this.drive({ goal: { kind: 'thread', tid, count: count + 1 }, breakpoints: false, watchpoints: false, signals: false });
    return this.stopFor(end, { kind: 'step' });
  }

  private async continueForward(): Promise<Stop> {
    const here = this.here!;
    // Leave a breakpoint we are stopped at before looking for the next one.
    const rip = Number(getReg(this.replayer.registersOf(here.tid).regs, 'rip'));
    if (this.breakpoints.has(rip)) {
      const end = await this.drive({ goal: { kind: 'thread', tid: here.tid, count: here.count + 1 }, breakpoints: false, watchpoints: true, signals: true });
      if (end.kind !== 'paused' || end.cause) return this.stopFor(end, { kind: 'step' });
    }
    const end = await this.drive({ breakpoints: true, watchpoints: true, signals: true });
    return this.stopFor(end, { kind: 'interrupted' });
  }

  private async stepBackward(tid: number): Promise<Stop> {
    const count = this.replayer.instructionsOf(tid)!;
    const start = this.startPosition!;
    if (count === 0 || (tid === start.tid && count <= start.count)) return this.backToStart();
    await this.goTo({ tid, count: count - 1 }, this.here!.clock);
    return { tid, cause: { kind: 'step' } };
  }

  /** Searches backward, one checkpoint interval at a time, for the last breakpoint or watchpoint hit. */
  private async continueBackward(): Promise<Stop> {
    let endClock = this.here!.clock;
    const startClock = this.startPosition!.clock;
    while (endClock > startClock) {
      if (this.interruptRequested) return { tid: this.here!.tid, cause: { kind: 'interrupted' } };
      const cp = this.latestCheckpoint((c) => c.snap.clock < endClock);
      this.restore(cp);
      const hits: Hit[] = [];
      await this.drive({ goal: { kind: 'clock', clock: endClock }, breakpoints: true, watchpoints: true, signals: false, collect: hits });
      // A breakpoint at the end has not been executed yet; an access that ended there has, and
      // going backward undoes it first.
      const before = hits.filter((h) => (h.clock < endClock || (h.clock === endClock && h.cause.kind === 'watchpoint')) && h.clock >= startClock);
      let last = before.at(-1);
      if (last?.ambiguous) last = await this.refineWatchHit(last, endClock);
      if (last) {
        // Backward, a watchpoint stops before the accessing instruction (as gdb's record-full and
        // rr do): gdb then reads the value from before the write and shows the line that made it.
        if (last.cause.kind === 'watchpoint') await this.goTo({ tid: last.tid, count: last.count - 1 }, last.clock);
        else await this.goTo(last, last.clock);
        return { tid: last.tid, cause: last.cause };
      }
      endClock = cp.snap.clock;
    }
    return this.backToStart();
  }

  /** A collected watch hit the engine placed by a guess: replay its neighbourhood with precise
   * watchpoints and take the last hit there, at or before `endClock`. */
  private async refineWatchHit(guess: Hit, endClock: number): Promise<Hit> {
    await this.goTo({ tid: guess.tid, count: Math.max(0, guess.count - MAX_BLOCK_INSTRUCTIONS) }, guess.clock);
    const limit = Math.min(endClock, guess.clock + MAX_BLOCK_INSTRUCTIONS);
    let last = guess;
    for (;;) {
      const end = await this.drive({ goal: { kind: 'clock', clock: limit }, breakpoints: false, watchpoints: true, signals: false });
      if (end.kind !== 'paused' || end.cause?.kind !== 'watchpoint') return last;
      last = { ...this.here!, cause: end.cause };
    }
  }

  private async backToStart(): Promise<Stop> {
    await this.goTo(this.startPosition!, this.startPosition!.clock);
    return { tid: this.startPosition!.tid, cause: { kind: 'replay-start' } };
  }

  /** Re-executes from the latest checkpoint before `pos` to exactly `pos`, which lies at or
   * before `clock` (exactly there when `pos` has a clock). */
  private async goTo(pos: { tid: number; count: number; clock?: number }, clock: number): Promise<void> {
    const cp = this.latestCheckpoint((c) => c.snap.clock <= clock && (c.counts.get(pos.tid) ?? 0) <= pos.count);
    this.restore(cp);
    const end = await this.drive({ goal: { kind: 'thread', tid: pos.tid, count: pos.count }, breakpoints: false, watchpoints: false, signals: false });
    const reached = end.kind === 'paused' && this.here!.clock <= clock && (pos.clock === undefined || this.here!.clock === pos.clock);
    if (!reached) throw new Error(`re-execution missed thread ${pos.tid} at instruction ${pos.count} (clock ${pos.clock ?? `<= ${clock}`}, reached ${end.kind === 'paused' ? this.here!.clock : end.kind})`);
  }

  private stopFor(end: DriveEnd, otherwise: StopCause): Stop {
    if (end.kind === 'exited') return { tid: this.pid, cause: this.exitCause() };
    if (end.kind === 'trace-end') return { tid: this.here?.tid ?? this.pid, cause: { kind: 'replay-end' } };
    return { tid: this.here!.tid, cause: end.cause ?? otherwise };
  }

  private exitCause(): StopCause {
    return { kind: 'exited', code: this.exitStatus?.code ?? null, signal: this.exitStatus?.signal ?? null };
  }

  // ---- The replay loop ----

  /** Applies events under `mode` until the control pauses the replay, the process exits or the trace ends. */
  private async drive(mode: Mode): Promise<DriveEnd> {
    if (this.driving) return this.driveLoop(mode);
    this.driving = true;
    const executed = this.replayer.executed;
    const started = performance.now();
    try {
      return await this.driveLoop(mode);
    } finally {
      this.driving = false;
      this.replayedInstructions += this.replayer.executed - executed;
      this.replayMs += performance.now() - started;
    }
  }

  private async driveLoop(mode: Mode): Promise<DriveEnd> {
    this.mode = mode;
    this.lastYield = performance.now();
    for (;;) {
      if (!this.pending) {
        const next = this.events.next();
        if (next.done) {
          // A trace cut short: the process is still alive where the recording stopped.
          const th = this.replayer.threadsOf(this.pid)[0];
          this.here = th && { tid: th.tid, count: this.replayer.instructionsOf(th.tid)!, clock: this.replayer.clock };
          return { kind: 'trace-end' };
        }
        this.pending = next.value;
      }
      const ev = this.pending;
      try {
        this.replayer.apply(ev);
      } catch (err) {
        if (!(err instanceof DrivePause)) throw err;
        if (err.why !== 'yield') return { kind: 'paused', cause: err.stopCause };
        this.maybeCheckpoint();
        await new Promise((resolve) => setImmediate(resolve));
        this.lastYield = performance.now();
        if (this.interruptRequested && !mode.collect) {
          // Stop at the next moment the debugged process runs.
          mode = this.mode = { ...mode, goal: { kind: 'process', fromEvent: 0 } };
          this.interruptCause = true;
        }
        continue;
      }
      this.replayer.eventNumber++;
      this.pending = undefined;
      this.noteEvent(ev);
      if (ev.kind === 'exit' && ev.pid === this.pid && ev.processExit) {
        this.exitStatus = { code: ev.code, signal: ev.signal };
        this.here = undefined;
        return { kind: 'exited' };
      }
      this.maybeCheckpoint();
    }
  }

  private noteEvent(ev: TraceEvent): void {
    if (ev.kind === 'exec') {
      this.images.set(ev.pid, ev);
      this.mappingNames.set(ev.pid, new Map(ev.mappings.map((m) => [m.start, m])));
    } else if (ev.kind === 'clone' && ev.childPid !== ev.pid) {
      const parent = this.images.get(ev.pid);
      if (parent) this.images.set(ev.childPid, parent);
      this.mappingNames.set(ev.childPid, new Map(this.mappingNames.get(ev.pid)));
    } else if (ev.kind === 'syscall' && ev.mappings) {
      const names = this.mappingNames.get(ev.pid);
      for (const m of ev.mappings) names?.set(m.start, m);
    }
  }

  /** Name and file offset of the mappings by start address (exec image, then mmaps of files). */
  private readonly mappingNames = new Map<number, Map<number, Mapping>>();

  /** /proc/PID/maps of the process here, from the engine's regions and the recorded names. */
  private procMaps(): string {
    const m = this.replayer.machineOf(this.pid);
    if (!m) return '';
    const names = this.mappingNames.get(this.pid);
    const hex = (n: number) => n.toString(16).padStart(8, '0');
    return m.regions().map((r) => {
      const named = names?.get(r.start);
      const prot = `${r.prot & 1 ? 'r' : '-'}${r.prot & 2 ? 'w' : '-'}${r.prot & 4 ? 'x' : '-'}p`;
      return `${hex(r.start)}-${hex(r.end)} ${prot} ${hex(named?.fileOffset ?? 0)} 00:00 0${named?.name ? ` ${named.name}` : ''}\n`;
    }).join('');
  }

  private image(): ExecEvent {
    const img = this.images.get(this.pid);
    if (!img) throw new DebugSessionError(`process ${this.pid} has no image here`);
    return img;
  }

  private control(): ExecutionControl {
    return {
      beforeRun: (th) => this.beforeRun(th),
      onStop: (th, stop) => this.onStop(th, stop),
      onSignal: (th, ev) => this.onSignal(th, ev),
    };
  }

  private beforeRun(th: ReplayThread): RunLimits {
    const m = th.space.machine;
    this.syncEngine(th);
    const goal = this.mode.goal;
    const count = m.instructions;
    const limits: RunLimits = { instructionBudget: SLICE };
    if (goal?.kind === 'thread' && th.tid === goal.tid) {
      if (count === goal.count) this.pause(th, 'goal');
      if (count > goal.count) throw new Error(`replay passed thread ${goal.tid}'s instruction ${goal.count} (at ${count})`);
      limits.instructionTarget = goal.count;
    } else if (goal?.kind === 'clock') {
      const clock = this.replayer.clock;
      if (clock >= goal.clock) this.pause(th, 'goal');
      limits.instructionTarget = count + (goal.clock - clock);
    } else if (goal?.kind === 'process' && th.pid === this.pid && this.replayer.eventNumber >= goal.fromEvent) {
      this.pause(th, this.interruptCause ? 'interrupted' : 'goal', this.interruptCause ? { kind: 'interrupted' } : undefined);
    }
    if (performance.now() - this.lastYield > YIELD_MS) throw new DrivePause('yield');
    return limits;
  }

  private onStop(th: ReplayThread, stop: StopReason): boolean {
    const m = th.space.machine;
    const goal = this.mode.goal;
    if (this.mode.collect && this.mode.watchpoints && th.pid === this.pid) {
      // Collect mode: the engine counted hits without stopping; the run's last one is what counts.
      const last = m.takeWatchHits().last;
      if (last) this.hit(th, last.instructions, this.watchCause(last.address, last.size, last.access), last.ambiguous === true);
    }
    const kind: string = stop.kind;
    if (kind === 'breakpoint' && th.pid === this.pid && this.mode.breakpoints) {
      const address = (stop as { rip: number }).rip;
      return this.hit(th, m.instructions, { kind: 'breakpoint', address });
    }
    if (kind === 'watchpoint' && th.pid === this.pid && this.mode.watchpoints) {
      const w = stop as Extract<StopReason, { kind: 'watchpoint' }>;
      return this.hit(th, w.instructions, this.watchCause(w.address, w.size, w.access));
    }
    if (kind === 'breakpoint' || kind === 'watchpoint') return true;
    if (kind === 'budget' || kind === 'instruction-target') {
      if (goal?.kind === 'thread' && th.tid === goal.tid && m.instructions === goal.count) this.pause(th, 'goal');
      if (goal?.kind === 'clock' && this.replayer.clock === goal.clock) this.pause(th, 'goal');
      return true;
    }
    return false;
  }

  private onSignal(th: ReplayThread, ev: SignalEvent): void {
    if (!this.mode.signals || th.pid !== this.pid || this.reportedSignals.has(this.replayer.eventNumber)) return;
    this.reportedSignals.add(this.replayer.eventNumber);
    this.pause(th, 'signal', { kind: 'signal', signo: ev.signo });
  }

  /** A breakpoint or watchpoint hit at `count` instructions of `th` (the engine may be past it). */
  private hit(th: ReplayThread, count: number, cause: StopCause, ambiguous = false): boolean {
    const m = th.space.machine;
    if (this.mode.collect) {
      // The engine may be past a collected watch hit (the run went on to its end).
      this.mode.collect.push({ tid: th.tid, count, clock: this.replayer.clock - (m.instructions - count), cause, ambiguous });
      return true;
    }
    // Breakpoints and precise watchpoints stop the engine exactly there.
    if (count !== m.instructions) throw new Error(`a hit at instruction ${count} stopped the engine at ${m.instructions}`);
    this.pause(th, 'hit', cause);
  }

  private pause(th: ReplayThread, why: string, cause?: StopCause): never {
    this.here = { tid: th.tid, count: th.space.machine.instructions, clock: this.replayer.clock };
    this.interruptCause = false;
    throw new DrivePause(why, cause);
  }

  /** The watchpoint an access hit, and the address to report: inside the watched range (gdb
   * finds its watchpoint by that address; an access may start below the range). */
  private watchCause(address: number, size: number, access: 'read' | 'write'): StopCause {
    for (const w of this.watches.values()) {
      if (address < w.address + w.length && w.address < address + size && (w.kind === 'access' || w.kind === access)) {
        return { kind: 'watchpoint', watch: w.kind, address: Math.max(address, w.address) };
      }
    }
    return { kind: 'watchpoint', watch: access, address };
  }

  /** Puts the session's breakpoints and watchpoints into the engine a thread runs in. */
  private syncEngine(th: ReplayThread): void {
    const m = th.space.machine;
    const ours = th.pid === this.pid;
    const collect = this.mode.collect !== undefined;
    const version = ours ? this.debugStateVersion * 8 + (collect ? 4 : 0) + (this.mode.breakpoints ? 2 : 0) + (this.mode.watchpoints ? 1 : 0) : -1;
    if (this.engineVersion.get(m) === version) return;
    this.engineVersion.set(m, version);
    m.setBreakpoints(ours && this.mode.breakpoints ? [...this.breakpoints] : []);
    // A backward search only needs each run's last hit: collect mode, at nearly full speed.
    m.setWatchpoints(ours && this.mode.watchpoints ? [...this.watches.values()] : [], { collect });
    if (collect) m.takeWatchHits();
  }

  // ---- Checkpoints ----

  private checkpoint(previous?: Checkpoint): Checkpoint {
    const snap = this.replayer.snapshot(previous?.snap);
    const counts = new Map<number, number>();
    for (const t of snap.threads) counts.set(t.tid, this.replayer.instructionsOf(t.tid) ?? 0);
    return { snap, counts };
  }

  private maybeCheckpoint(): void {
    const clock = this.replayer.clock;
    const before = this.latestCheckpoint((c) => c.snap.clock <= clock);
    if (clock - before.snap.clock < this.checkpointInterval) return;
    const started = performance.now();
    const cp = this.checkpoint(before);
    const at = this.checkpoints.findIndex((c) => c.snap.clock > clock);
    this.checkpoints.splice(at < 0 ? this.checkpoints.length : at, 0, cp);
    if (this.checkpoints.length > MAX_CHECKPOINTS) this.thinCheckpoints();
    // The replay's speed so far says how many instructions the time of this copy is worth.
    const took = performance.now() - started;
    const perMs = this.replayedInstructions / Math.max(1, this.replayMs);
    this.checkpointInterval = Math.max(MIN_CHECKPOINT_INTERVAL, Math.round(took * CHECKPOINT_COST_SHARE * perMs));
  }

  private checkpointInterval = MIN_CHECKPOINT_INTERVAL;
  /** Instructions replayed and milliseconds spent replaying them, over the session. */
  private replayedInstructions = 0;
  private replayMs = 0;
  private driving = false;

  /** Drops the checkpoint whose neighbours are closest together (never the first). */
  private thinCheckpoints(): void {
    const cps = this.checkpoints;
    let best = 1;
    for (let i = 2; i < cps.length - 1; i++) {
      if (cps[i + 1].snap.clock - cps[i - 1].snap.clock < cps[best + 1].snap.clock - cps[best - 1].snap.clock) best = i;
    }
    cps.splice(best, 1);
  }

  private latestCheckpoint(ok: (c: Checkpoint) => boolean): Checkpoint {
    for (let i = this.checkpoints.length - 1; i >= 0; i--) if (ok(this.checkpoints[i])) return this.checkpoints[i];
    return this.checkpoints[0];
  }

  private restore(cp: Checkpoint): void {
    this.replayer.restore(cp.snap);
    this.pending = undefined;
    this.events = this.reader.events(cp.snap.eventNumber);
  }
}

/** The session's pause, carrying what to report. */
class DrivePause extends Paused {
  constructor(
    why: string,
    readonly stopCause?: StopCause,
  ) {
    super(why);
  }
}
