// The hook a debugger puts into a replay: it sees each engine run before it starts and each
// stop the replay does not consume itself, and pauses the replay by throwing Paused.
import type { StopReason } from '../emulator/machine.ts';
import type { SignalEvent } from '../trace/schema.ts';
import type { ReplayThread } from './replayer.ts';

export interface RunLimits {
  /** Stop at the first block boundary after this many more instructions. */
  instructionBudget?: number;
  /** Stop exactly when the engine's instruction counter reaches this value. */
  instructionTarget?: number;
}

export interface ExecutionControl {
  /** Before the engine runs `thread`: may throw Paused; returns the limits of this run. */
  beforeRun(thread: ReplayThread): RunLimits;
  /** A stop that is not a replay event (budget, instruction target, breakpoint, watchpoint...):
   * true when the control consumed it and the run goes on; may throw Paused. */
  onStop(thread: ReplayThread, stop: StopReason): boolean;
  /** A recorded signal is about to be delivered to `thread` (a synchronous one with the thread at
   * the faulting instruction); may throw Paused. */
  onSignal(thread: ReplayThread, event: SignalEvent): void;
}

/** Thrown through the replayer to pause it; the event being applied is applied again to resume. */
export class Paused extends Error {
  constructor(readonly why: string) {
    super(`replay paused: ${why}`);
  }
}
