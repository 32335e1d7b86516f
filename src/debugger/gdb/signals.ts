// Signal numbers on the wire are gdb's own (include/gdb/signals.def), not Linux's: they agree
// for 1-15 except SIGBUS, SIGUSR1, SIGUSR2, and differ above. This converts a recorded Linux
// signal number to what stop replies (T, X) carry.

/** gdb's number for a Linux x86-64 signal. */
const LINUX_TO_GDB: Record<number, number> = {
  1: 1, // SIGHUP
  2: 2, // SIGINT
  3: 3, // SIGQUIT
  4: 4, // SIGILL
  5: 5, // SIGTRAP
  6: 6, // SIGABRT
  7: 10, // SIGBUS
  8: 8, // SIGFPE
  9: 9, // SIGKILL
  10: 30, // SIGUSR1
  11: 11, // SIGSEGV
  12: 31, // SIGUSR2
  13: 13, // SIGPIPE
  14: 14, // SIGALRM
  15: 15, // SIGTERM
  // 16 SIGSTKFLT has no gdb number
  17: 20, // SIGCHLD
  18: 19, // SIGCONT
  19: 17, // SIGSTOP
  20: 18, // SIGTSTP
  21: 21, // SIGTTIN
  22: 22, // SIGTTOU
  23: 16, // SIGURG
  24: 24, // SIGXCPU
  25: 25, // SIGXFSZ
  26: 26, // SIGVTALRM
  27: 27, // SIGPROF
  28: 28, // SIGWINCH
  29: 23, // SIGIO (SIGPOLL)
  30: 32, // SIGPWR
  31: 12, // SIGSYS
};

export const GDB_SIGNAL_TRAP = 5;
export const GDB_SIGNAL_INT = 2;
const GDB_SIGNAL_UNKNOWN = 143;
const GDB_SIGNAL_REALTIME_32 = 77;
const GDB_SIGNAL_REALTIME_33 = 45;
const GDB_SIGNAL_REALTIME_64 = 78;

export function gdbSignal(linux: number): number {
  const direct = LINUX_TO_GDB[linux];
  if (direct !== undefined) return direct;
  if (linux === 32) return GDB_SIGNAL_REALTIME_32;
  if (linux >= 33 && linux <= 63) return GDB_SIGNAL_REALTIME_33 + (linux - 33);
  if (linux === 64) return GDB_SIGNAL_REALTIME_64;
  return GDB_SIGNAL_UNKNOWN;
}
