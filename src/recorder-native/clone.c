// fork, vfork and clone: the child's clone record (before any event of the child) and its start.
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
#include <linux/sched.h>

// clone flags of the process-creating syscall the thread is in (read at its entry).
uint64_t creation_flags(struct thread *t, const struct user_regs_struct *entry, uint64_t *child_tid) {
  *child_tid = 0;
  switch ((long)entry->orig_rax) {
  case SYS_fork: return SIGCHLD;
  case SYS_vfork: return CLONE_VM | CLONE_VFORK | SIGCHLD;
  case SYS_clone: *child_tid = entry->r10; return entry->rdi;
  case SYS_clone3: {
    uint64_t args[3] = {0};  // flags, pidfd, child_tid
    if (mem_read(t->memfd, entry->rdi, args, sizeof args) != sizeof args) return 0;
    *child_tid = args[2];
    return args[0];
  }
  default: return 0;
  }
}

// A process-creation event-stop of `t`: take the child's initial stop, write the clone record
// (before any event of the child) and let the child run.
int on_new_child(struct thread *t, pid_t child) {
  struct thread *c = find_thread(child);
  int st;
  if (!c) {
    for (;;) {
      pid_t w = waitpid(child, &st, __WALL);
      if (w == child) break;
      if (w < 0 && errno != EINTR) { stream_message(REC_ERROR, "waitpid for the new process %d: %s", child, strerror(errno)); return -1; }
    }
    if (!WIFSTOPPED(st)) { stream_message(REC_ERROR, "the new process %d ended before its first instruction", child); return -1; }
    c = add_thread(child, child);
  }
  uint64_t ctid;
  uint64_t flags = creation_flags(t, &t->sc.entry, &ctid);
  bool thread = (flags & CLONE_THREAD) != 0;
  c->fresh = false;
  c->pid = thread ? t->pid : child;
  c->execed = true;
  if (flags & CLONE_CHILD_CLEARTID) c->clear_tid = ctid;
  c->memfd = mem_open(child);
  c->sc.memfd = c->memfd;
  if (c->memfd < 0) { stream_message(REC_ERROR, "cannot open /proc/%d/mem: %s", child, strerror(errno)); return -1; }
  if (opts->pmu) {
    c->pmu_fd = pmu_attach(child, opts->pmu_config);
    if (c->pmu_fd < 0) { stream_message(REC_ERROR, "perf_event_open for process %d: %s", child, strerror(errno)); return -1; }
  }
  struct user_regs_struct regs;
  struct user_fpregs_struct fpregs;
  if (ptrace(PTRACE_GETREGS, child, 0, &regs) < 0 || ptrace(PTRACE_GETFPREGS, child, 0, &fpregs) < 0) {
    stream_message(REC_ERROR, "cannot read the registers of the new process %d: %s", child, strerror(errno));
    return -1;
  }
  ev_prefix(t);
  buf_u32(&rec, (uint32_t)c->pid);
  buf_u32(&rec, (uint32_t)child);
  buf_u64(&rec, flags);
  buf_bytes(&rec, &regs, sizeof regs);
  buf_bytes(&rec, &fpregs, sizeof fpregs);
  // CLONE_CHILD_SETTID: the kernel wrote the child's tid into the child's memory (glibc's fork
  // does this to its thread descriptor). The child's memory is what replay must see.
  if ((flags & CLONE_CHILD_SETTID) && ctid) {
    buf_u32(&rec, 1);
    buf_u64(&rec, ctid);
    buf_u64(&rec, 4);
    mem_read_zero(c->memfd, ctid, buf_grow(&rec, 4), 4);
  } else {
    buf_u32(&rec, 0);
  }
  emit(REC_CLONE);
  if (thread) {
    start_spin_timer();
    // A thread waits for its turn (its parent keeps running); its initial stop is left behind
    // when it is first resumed.
    c->state = T_HELD;
    c->has_pending = false;
    c->held_seq = ++held_counter;
    return 0;
  }
  c->state = T_RUNNING;
  sites_fork(t->pid, child);  // its memory is a copy of the parent's, int3s included
  if (ptrace(PTRACE_SYSCALL, child, 0, 0) < 0 && errno != ESRCH) {  // leave its initial stop
    stream_message(REC_ERROR, "ptrace resume of the new process %d: %s", child, strerror(errno));
    return -1;
  }
  return 0;
}
