// What the GDB remote server needs from a replay it can move through, forwards and backwards.
// The server (src/debugger/gdb/) speaks the protocol; the session (src/debugger/session.ts)
// implements this over the replayer, checkpoints and re-execution.

export type WatchKind = 'write' | 'read' | 'access';

export type StopCause =
  /** Stopped before executing an instruction at a breakpoint address. */
  | { kind: 'breakpoint'; address: number }
  /** Forward: stopped just after the instruction that accessed watched memory. Backward: just
   * before it (the access is the last thing undone). */
  | { kind: 'watchpoint'; watch: WatchKind; address: number }
  /** A single step (one instruction of the stepped thread) is done. */
  | { kind: 'step' }
  /** The recorded process received a signal here (a handler runs next, or the process dies). */
  | { kind: 'signal'; signo: number }
  /** Reverse execution reached the start of the recording (gdb: replaylog begin). */
  | { kind: 'replay-start' }
  /** Forward execution reached the end of the trace while the process was still alive (trace cut short). */
  | { kind: 'replay-end' }
  /** The process exited here (its last event in the trace). */
  | { kind: 'exited'; code: number | null; signal: number | null }
  /** interrupt() was called while resume() ran. */
  | { kind: 'interrupted' };

export interface Stop {
  /** The thread the stop is reported for. */
  tid: number;
  cause: StopCause;
}

export interface ResumeRequest {
  direction: 'forward' | 'backward';
  /** One instruction of `tid` (stepi / reverse-stepi); otherwise run until a stop. */
  step: boolean;
  tid: number;
}

export interface DebugTarget {
  /** The recorded process being debugged. */
  readonly pid: number;
  /** The executable's path as recorded (what qXfer:exec-file reports). */
  readonly execPath: string;
  /** Live threads of the process at the current position, first (main) thread first. */
  threads(): number[];
  /** Registers of a live thread at the current position: user_regs_struct (216 bytes, Linux
   * order, orig_rax included) and the FXSAVE area (512 bytes: x87, MXCSR, XMM0-15). */
  registers(tid: number): { regs: Uint8Array; fxsave: Uint8Array };
  /** Bytes at addr; shorter (possibly empty) where the memory is not mapped. */
  readMemory(addr: number, length: number): Uint8Array;
  /** The process's auxiliary vector as recorded (bytes of /proc/PID/auxv). */
  auxv(): Uint8Array;
  /** Contents of a file the process mapped (its executable, its libraries), from the trace. */
  file(path: string): Uint8Array | undefined;
  setBreakpoint(address: number): void;
  removeBreakpoint(address: number): void;
  setWatchpoint(address: number, length: number, kind: WatchKind): void;
  removeWatchpoint(address: number, length: number, kind: WatchKind): void;
  /** Moves through the replay until a stop. Yields to the event loop now and then, so that
   * interrupt() (gdb's Ctrl-C) can be called while it runs. */
  resume(request: ResumeRequest): Promise<Stop>;
  interrupt(): void;
  /** Frees the emulator state (engines, checkpoints). */
  close(): void;
}
