// Stop replies: what the server answers to `?` and to every resume, from the target's Stop.
//   T05thread:<tid>;<expedited registers>;swbreak:;   a breakpoint (hwbreak: for a Z1 one)
//   T05...;watch:<addr>; (rwatch:, awatch:)           a watchpoint
//   T05...;replaylog:begin; / replaylog:end;           the start (or the cut-short end) of the recording
//   T<sig>...                                          a recorded signal; T02 for an interrupt
//   W<code> / X<sig>                                   the process exited / was killed by a signal
import type { Stop, WatchKind } from '../target.ts';
import { gdbRegNumber, readRegister, toHex, type RegisterState } from './registers.ts';
import { GDB_SIGNAL_INT, GDB_SIGNAL_TRAP, gdbSignal } from './signals.ts';

const WATCH_REASON: Record<WatchKind, string> = { write: 'watch', read: 'rwatch', access: 'awatch' };

/** Registers sent with every T reply so gdb needs no round trip to show where it stopped. */
const EXPEDITED = ['rbp', 'rsp', 'rip'].map(gdbRegNumber);

export interface StopReplyContext {
  /** Whether gdb announced swbreak+/hwbreak+ (only then may the replies carry those reasons). */
  swbreak: boolean;
  hwbreak: boolean;
  /** Whether the breakpoint at this address was inserted as a hardware one (Z1). */
  isHardwareBreakpoint(address: number): boolean;
  /** Registers of the stopped thread, for the expedited ones (omitted when unavailable). */
  registers(tid: number): RegisterState | undefined;
  /** A thread id as the connection writes them (`tid`, or `p<pid>.<tid>` in multiprocess mode). */
  threadId(tid: number): string;
  /** What follows W/X: `;process:<pid>` in multiprocess mode, else nothing. */
  exitSuffix: string;
}

const hex2 = (n: number) => (n & 0xff).toString(16).padStart(2, '0');

export function stopReply(stop: Stop, ctx: StopReplyContext): string {
  const cause = stop.cause;
  if (cause.kind === 'exited') {
    if (cause.code === null && cause.signal !== null) return `X${hex2(gdbSignal(cause.signal))}${ctx.exitSuffix}`;
    return `W${hex2(cause.code ?? 0)}${ctx.exitSuffix}`;
  }
  let signal = GDB_SIGNAL_TRAP;
  let reason = '';
  switch (cause.kind) {
    case 'breakpoint': {
      const hw = ctx.isHardwareBreakpoint(cause.address);
      if (hw && ctx.hwbreak) reason = 'hwbreak:;';
      else if (ctx.swbreak) reason = 'swbreak:;';
      break;
    }
    case 'watchpoint':
      reason = `${WATCH_REASON[cause.watch]}:${cause.address.toString(16)};`;
      break;
    case 'replay-start':
      reason = 'replaylog:begin;';
      break;
    case 'replay-end':
      reason = 'replaylog:end;';
      break;
    case 'signal':
      signal = gdbSignal(cause.signo);
      break;
    case 'interrupted':
      signal = GDB_SIGNAL_INT;
      break;
    case 'step':
      break;
  }
  let regs = '';
  const state = ctx.registers(stop.tid);
  if (state) for (const n of EXPEDITED) regs += `${n.toString(16)}:${toHex(readRegister(state, n))};`;
  return `T${hex2(signal)}thread:${ctx.threadId(stop.tid)};${regs}${reason}`;
}
