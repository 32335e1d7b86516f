// Checks at a signal event: the emulator must be in the state the recorded thread was in when the
// kernel took the signal (the frame and the handler's registers then come from the trace). An
// asynchronous signal is taken at a point replay knows: a syscall's exit, a handler's entry (one
// signal nested in another) or an exec; a synchronous one at the faulting instruction.
import type { UserRegName } from '../trace/schema.ts';
import { getReg, hex, sameReg } from './registers.ts';

/** r11 and eflags are left out: they hold flags, some of which QEMU computes differently. */
export const COMPARED_AT_SIGNAL: readonly UserRegName[] = [
  'r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi', 'rip', 'rsp', 'fs_base',
];
const SYS_RESTART_SYSCALL = 219n;

/** -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK as the u64 in rax. */
function isRestartCode(rax: bigint): boolean {
  const v = BigInt.asIntN(64, rax);
  return v <= -512n && v >= -516n && v !== -515n;
}

/** null when `actual` (the emulator) matches `recorded` (the registers at the signal's delivery),
 * else what differs. A syscall interrupted with a restart code was recorded before the kernel's
 * restart decision (which the handler's frame holds): the replay has already moved rip back onto
 * the SYSCALL and rax to the syscall number, which counts as the same state. */
export function signalStateMismatch(recorded: Uint8Array, actual: Uint8Array): string | null {
  let compared = COMPARED_AT_SIGNAL;
  const rax = getReg(recorded, 'rax');
  if (isRestartCode(rax) && getReg(actual, 'rip') + 2n === getReg(recorded, 'rip')) {
    const again = getReg(actual, 'rax');
    if (again === getReg(recorded, 'orig_rax') || again === SYS_RESTART_SYSCALL) compared = compared.filter((r) => r !== 'rax' && r !== 'rip');
  }
  const differing = compared.filter((r) => !sameReg(recorded, actual, r));
  if (differing.length === 0) return null;
  const first = differing[0];
  return `${differing.join(', ')} (${first} recorded ${hex(getReg(recorded, first))}, replayed ${hex(getReg(actual, first))})`;
}
