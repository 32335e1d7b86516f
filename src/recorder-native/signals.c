// Signal delivery as recorded: handlers stepped into to see the kernel's frame, fatal default
// actions, and asynchronous signals held back to a place replay knows (no-PMU mode).
#include "tracer.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>

bool sig_in_mask(pid_t pid, const char *field, int sig) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  FILE *f = fopen(path, "re");
  if (!f) return false;
  bool r = false;
  size_t flen = strlen(field);
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
      unsigned long long mask = strtoull(line + flen + 1, NULL, 16);
      r = (mask >> (sig - 1)) & 1;
      break;
    }
  }
  fclose(f);
  return r;
}

// Hold back an asynchronous signal that arrived in user code. False when too many are held.
bool hold_signal(struct thread *t, int sig, const siginfo_t *si) {
  if (t->nheld == MAX_HELD) return false;
  if (t->nheld == 0) {
    mono_now(&t->held_since);
    t->held_warned = false;
    start_spin_timer();
  }
  t->held[t->nheld].sig = sig;
  t->held[t->nheld].si = *si;
  t->nheld++;
  return true;
}

// Re-send the held signals to the thread (stopped at a syscall entry or exit): they are delivered
// when it returns to user mode. A standard signal already re-sent and still pending would merge
// with a second one: that one waits for the next boundary, as two arrivals are two deliveries.
void resend_held(struct thread *t) {
  int kept = 0;
  for (int k = 0; k < t->nheld; k++) {
    struct held_sig *h = &t->held[k];
    bool pending = false;
    for (int j = 0; j < t->nsent && h->sig < SIGRTMIN; j++) pending |= t->sent[j].sig == h->sig;
    if (pending || t->nsent == MAX_HELD) { t->held[kept++] = *h; continue; }
    syscall(SYS_tgkill, t->pid, t->tid, h->sig);
    t->sent[t->nsent++] = *h;
  }
  t->nheld = kept;
}

// At the delivery-stop of a signal the recorder re-sent: the siginfo the kernel first gave it.
void restore_siginfo(struct thread *t, int sig, siginfo_t *si) {
  if (si->si_code != SI_TKILL || si->si_pid != getpid()) return;
  for (int k = 0; k < t->nsent; k++) {
    if (t->sent[k].sig != sig) continue;
    *si = t->sent[k].si;
    ptrace(PTRACE_SETSIGINFO, t->tid, 0, si);
    memmove(&t->sent[k], &t->sent[k + 1], sizeof *t->sent * (size_t)(t->nsent - k - 1));
    t->nsent--;
    return;
  }
}

bool is_sync(int sig, const siginfo_t *si) {
  return (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP || sig == SIGSYS) && si->si_code > 0;
}

// Deliver `sig` now. Returns 0 to go on, 1 when the recording is over, with *resume_sig set.
// `placement`: where replay delivers it (PLACE_*), for the event.
int deliver_signal(struct thread *t, int sig, const siginfo_t *si, struct user_regs_struct *regs, uint32_t placement, int *resume_sig) {
  bool sync = is_sync(sig, si);
  uint64_t addr = sync ? (uint64_t)si->si_addr : 0;
  *resume_sig = 0;
  if (sig_in_mask(t->tid, "SigCgt", sig)) {
    // A handler runs: step into it to see the frame the kernel wrote and the handler's registers.
    int st;
    if (ptrace(PTRACE_SINGLESTEP, t->tid, 0, sig) < 0) return -1;
    while (waitpid(t->tid, &st, __WALL) < 0) if (errno != EINTR) return -1;
    if (!WIFSTOPPED(st) || WSTOPSIG(st) != SIGTRAP)
      return stop_recording(t->tid, "signal %s: its handler could not be entered", strsignal(sig));
    struct user_regs_struct h;
    ptrace(PTRACE_GETREGS, t->tid, 0, &h);
    // The frame: rt_sigframe at the new rsp, up to the old rsp minus the red zone, or to the top
    // of the alternate stack when the kernel switched to it (the handler's rsp is in it, the
    // interrupted one was not). uc_stack.ss_flags cannot tell: it says where the interrupted code ran.
    uint64_t end = regs->rsp - 128;
    uint64_t ss[3] = {0};  // ss_sp, ss_flags, ss_size at frame+24
    mem_read(t->memfd, h.rsp + 24, ss, sizeof ss);
    bool in_alt = h.rsp >= ss[0] && h.rsp < ss[0] + ss[2];
    bool was_alt = regs->rsp > ss[0] && regs->rsp <= ss[0] + ss[2];
    if (!((uint32_t)ss[1] & SS_DISABLE) && in_alt && !was_alt) end = ss[0] + ss[2];
    if (end <= h.rsp || end - h.rsp > (1u << 20))
      return stop_recording(t->tid, "signal %s: cannot locate its frame", strsignal(sig));
    // PTRACE_SINGLESTEP set TF; make sure the saved flags (frame+184) do not keep it.
    uint64_t fl;
    if (mem_read(t->memfd, h.rsp + 184, &fl, 8) == 8 && (fl & 0x100) && !(regs->eflags & 0x100)) {
      fl &= ~0x100ull;
      mem_write(t->memfd, h.rsp + 184, &fl, 8);
    }
    ev_prefix(t);
    buf_u32(&rec, sig); buf_u32(&rec, (uint32_t)si->si_code); buf_u32(&rec, sync); buf_u64(&rec, addr);
    buf_bytes(&rec, regs, sizeof *regs);
    buf_u32(&rec, 0);
    buf_u32(&rec, 1);
    buf_u64(&rec, h.rsp);
    buf_u64(&rec, end - h.rsp);
    mem_read_zero(t->memfd, h.rsp, buf_grow(&rec, end - h.rsp), end - h.rsp);
    buf_u32(&rec, 1);
    buf_bytes(&rec, &h, sizeof h);
    buf_u32(&rec, placement);
    emit(REC_SIGNAL);
    // The handler's entry is a point replay knows (right after this event): another signal
    // pending there (several re-sent at one syscall) is delivered at once, nested, as the kernel
    // would before the handler's first instruction.
    t->exit_regs = h;
    t->at_boundary = true;
    return 0;
  }
  if (sig_in_mask(t->tid, "SigIgn", sig) || sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH || sig == SIGCONT)
    return 0;  // ignored (explicitly or by default): suppressing it is what the kernel would do
  if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
    return stop_recording(t->tid, "stop signal %s is not supported by the recorder yet", strsignal(sig));
  // Default action: the process dies.
  ev_prefix(t);
  buf_u32(&rec, sig); buf_u32(&rec, (uint32_t)si->si_code); buf_u32(&rec, sync); buf_u64(&rec, addr);
  buf_bytes(&rec, regs, sizeof *regs);
  buf_u32(&rec, 1);
  buf_u32(&rec, 0);
  buf_u32(&rec, 0);
  buf_u32(&rec, placement);
  emit(REC_SIGNAL);
  *resume_sig = sig;
  return 0;
}
