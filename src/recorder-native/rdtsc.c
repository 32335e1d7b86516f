// RDTSC/RDTSCP trapping: the tracee runs with PR_SET_TSC = PR_TSC_SIGSEGV, so each rdtsc(p)
// raises SIGSEGV at the instruction. The helper executes it, hands the value to the tracee,
// steps over the instruction and records an RdtscEvent.
#include "ra.h"
#include <x86intrin.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>

// Returns 1 when the stop was an rdtsc(p) (regs updated, record payload appended after EV), 0 otherwise.
int rdtsc_try_emulate(pid_t pid, int memfd, struct user_regs_struct *regs, struct buf *rec) {
  uint8_t insn[3];
  if (mem_read(memfd, regs->rip, insn, 3) != 3) return 0;
  int is_rdtscp;
  if (insn[0] == 0x0f && insn[1] == 0x31) is_rdtscp = 0;
  else if (insn[0] == 0x0f && insn[1] == 0x01 && insn[2] == 0xf9) is_rdtscp = 1;
  else return 0;
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
