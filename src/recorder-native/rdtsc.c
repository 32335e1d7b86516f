// RDTSC/RDTSCP trapping: the tracee runs with PR_SET_TSC = PR_TSC_SIGSEGV, so each rdtsc(p)
// raises SIGSEGV at the instruction (or, where that has no effect, hits an int3 the recorder put
// on it: patch_sites.c). The helper executes it, hands the value to the tracee, steps over the
// instruction and records an RdtscEvent.
#include "ra.h"
#include <signal.h>
#include <unistd.h>
#include <x86intrin.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>

int rdtsc_try_emulate(pid_t pid, int memfd, struct user_regs_struct *regs, struct buf *rec) {
  uint8_t insn[3];
  if (mem_read(memfd, regs->rip, insn, 3) != 3) return 0;
  bool is_rdtscp;
  if (insn[0] == 0x0f && insn[1] == 0x31) is_rdtscp = false;
  else if (insn[0] == 0x0f && insn[1] == 0x01 && insn[2] == 0xf9) is_rdtscp = true;
  else return 0;
  return rdtsc_emulate(pid, regs, is_rdtscp, rec);
}

int rdtsc_emulate(pid_t pid, struct user_regs_struct *regs, bool is_rdtscp, struct buf *rec) {
  unsigned aux = 0;
  // The helper runs with the same TSC trap as its tracees (main.c): lift it around our own read.
  prctl(PR_SET_TSC, PR_TSC_ENABLE, 0, 0, 0);
  uint64_t value = is_rdtscp ? __rdtscp(&aux) : __rdtsc();
  prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0);
  uint64_t rip = regs->rip;
  regs->rax = (uint32_t)value;
  regs->rdx = value >> 32;
  if (is_rdtscp) regs->rcx = aux;
  regs->rip += is_rdtscp ? 3 : 2;
  if (ptrace(PTRACE_SETREGS, pid, 0, regs) < 0) return 0;
  buf_u64(rec, rip);
  buf_u32(rec, is_rdtscp);
  buf_u64(rec, value);
  buf_u32(rec, aux);
  return 1;
}

// A child that asks for PR_TSC_SIGSEGV and runs rdtsc: killed by SIGSEGV where the setting works.
// (Under some hypervisors the prctl succeeds and rdtsc still runs.)
bool rdtsc_traps(void) {
  pid_t child = fork();
  if (child < 0) return false;
  if (child == 0) {
    signal(SIGSEGV, SIG_DFL);
    if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) < 0) _exit(1);
    volatile uint64_t t = __rdtsc();
    (void)t;
    _exit(0);
  }
  int st;
  while (waitpid(child, &st, 0) < 0) {}
  return WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
}
