// The ptrace loop. Every process of the tree is traced (PTRACE_O_TRACEFORK/VFORK/CLONE); per-thread
// state lives in `struct thread`, keyed by tid, and every record carries pid and tid. Processes run
// concurrently (each has its own memory, so their events only need to be in an order the recorder
// observed); the trace's order is that order. A new process appears as a clone record, written
// before any event of the child.
//
// Threads (no-PMU mode, rr's scheme): within a process, one thread at a time runs user code, so the
// trace has one total order of user-mode execution. A thread is RUNNING (resumed by us), HELD
// (stopped, waiting for its turn, maybe with a stop not handled yet) or BLOCKED (let run inside a
// syscall while another thread runs). Switch points are the entries of syscalls that may block and
// write nothing into memory (futex wait/wake, sched_yield, nanosleep without a remainder): such a
// syscall proceeds in the kernel while another HELD thread runs. A BLOCKED thread whose syscall
// returns stays HELD until the running thread reaches a switch point; its exit event is written
// when it runs again, after a switch record. Other syscalls (read, poll, wait4... with outputs) run
// while the other threads of the process stay stopped, so their writes cannot land in the middle of
// another thread's run (a sibling they wait for cannot run meanwhile: the spin detector below ends
// such a recording with an explanation). A thread's exit (SYS_exit) is waited for before another
// thread runs, and the kernel's CLONE_CHILD_CLEARTID / set_tid_address write is recorded in the exit
// syscall's event. Without a PMU nothing can preempt a thread that loops in user code: when the
// running thread makes no syscall for SPIN_SECONDS while a sibling waits to run, the recording stops.
//
// No-PMU mode: events happen only at syscalls. An asynchronous signal that arrives while the
// tracee runs user code is held back until the tracee's next syscall entry. That syscall is backed
// out (skipped, then rip put back onto its SYSCALL instruction and rax to its number), the held
// signals are re-sent (tgkill) and delivered there, before it, as if they had arrived just before
// the SYSCALL instruction; the syscall runs when the handlers return. Replay runs to that syscall
// instruction and delivers them there (the event says beforeSyscall). At a signal's delivery-stop
// the original siginfo is put back (the program sees the kernel's si_code, si_pid..., not the
// recorder's tgkill). Any number of them can be held.
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
#include <sys/mman.h>
#include <sched.h>
#include <linux/sched.h>
#include <linux/futex.h>

// After a memory-map syscall succeeded: patch the trap sites of new executable file mappings
// (their contents are in the event already), forget the sites of what went away.
static void update_patched_sites(struct thread *t) {
  const struct user_regs_struct *e = &t->sc.entry;
  int64_t r = t->sc.result;
  if (!sites_kinds() || (r < 0 && r > -4096)) return;
  uint64_t len = (e->rsi + 4095) & ~4095ull;
  switch ((long)e->orig_rax) {
  case SYS_mmap:
    sites_unmapped(t->pid, (uint64_t)r, len);
    if ((e->rdx & PROT_EXEC) && !(e->r10 & MAP_ANONYMOUS)) sites_patch_range(t->pid, t->memfd, (uint64_t)r, (uint64_t)r + len);
    break;
  case SYS_munmap: sites_unmapped(t->pid, e->rdi, len); break;
  case SYS_mprotect:
    if (e->rdx & PROT_EXEC) sites_patch_range(t->pid, t->memfd, e->rdi, e->rdi + len);
    break;
  case SYS_mremap:
    if ((uint64_t)r != e->rdi) sites_moved(t->pid, e->rdi, len, (uint64_t)r);
    break;
  default: break;
  }
}

int resume_thread(struct thread *t, int how, int sig) {
  if (t->at_boundary && t->nheld) resend_held(t);  // at a syscall exit (or handler entry): a place replay knows
  if (ptrace(how, t->tid, 0, sig) < 0 && errno != ESRCH) {
    stream_message(REC_ERROR, "ptrace resume: %s", strerror(errno));
    return -1;
  }
  return 0;
}

// One stop of a known tracee. Sets *how and *sig for its resumption (GO_ON).
int handle_stop(struct thread *t, int st, int *how, int *sig) {
  bool was_boundary = t->at_boundary, was_before_syscall = t->before_syscall;
  t->at_boundary = false;
  t->before_syscall = false;
  t->entry_stop = false;
  int signo = WSTOPSIG(st), event = st >> 16;
  *how = t->execed ? PTRACE_SYSCALL : PTRACE_CONT;
  *sig = 0;
  if (event == PTRACE_EVENT_EXEC) {
    t->exec_pending = true;
    *how = PTRACE_SYSCALL;
    return GO_ON;
  }
  if (event == PTRACE_EVENT_FORK || event == PTRACE_EVENT_VFORK || event == PTRACE_EVENT_CLONE) {
    unsigned long child = 0;
    if (ptrace(PTRACE_GETEVENTMSG, t->tid, 0, &child) < 0) { stream_message(REC_ERROR, "PTRACE_GETEVENTMSG: %s", strerror(errno)); return FAILED; }
    if (on_new_child(t, (pid_t)child) < 0) return FAILED;
    return GO_ON;
  }
  if (event != 0) return GO_ON;  // other ptrace events are not enabled
  if (signo == (SIGTRAP | 0x80)) {
    struct __ptrace_syscall_info info;
    if (ptrace(PTRACE_GET_SYSCALL_INFO, t->tid, sizeof info, &info) <= 0) {
      stream_message(REC_ERROR, "PTRACE_GET_SYSCALL_INFO: %s", strerror(errno));
      return FAILED;
    }
    *how = PTRACE_SYSCALL;
    if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
      struct sc_ctx *c = &t->sc;
      ptrace(PTRACE_GETREGS, t->tid, 0, &c->entry);
      if (t->nheld) {
        // Held-back signals go first: skip the syscall now; its exit stop puts it back.
        t->backout_regs = c->entry;
        mono_now(&t->held_since);
        struct user_regs_struct r = c->entry;
        r.orig_rax = (uint64_t)-1;
        ptrace(PTRACE_SETREGS, t->tid, 0, &r);
        t->backing_out = true;
        return GO_ON;
      }
      long nr = (long)c->entry.orig_rax;
      if (nr == SYS_clone || nr == SYS_clone3) {
        uint64_t ctid, flags = creation_flags(t, &c->entry, &ctid);
        if ((flags & CLONE_VM) && !(flags & CLONE_VFORK) && !(flags & CLONE_THREAD)) {
          char what[64];
          snprintf(what, sizeof what, "%s with flags 0x%llx", syscall_name(nr), (unsigned long long)flags);
          stop_recording(t->tid, "processes sharing memory without CLONE_THREAD are not supported yet (%s)", what);
          return STOPPED;
        }
      }
      if (nr == SYS_set_tid_address) t->clear_tid = c->entry.rdi;
      c->nwrites = 0;
      writes.len = 0;
      sc_entry(c);
      t->in_recorded_syscall = true;
      if (nr == SYS_rseq) {
        // rseq lets the kernel write the rseq area at any preemption, behind the recorder's back:
        // the registration fails with ENOSYS instead (glibc then runs without it).
        struct user_regs_struct r = c->entry;
        r.orig_rax = (uint64_t)-1;
        ptrace(PTRACE_SETREGS, t->tid, 0, &r);
        t->skip_syscall = true;
        t->skip_result = -ENOSYS;
      }
      if (nr == SYS_arch_prctl && c->entry.rdi == 0x1012 /* ARCH_SET_CPUID */ && opts->cpuid_faulting) {
        // The program switching CPUID faulting itself: it stays on (replay answers every CPUID from
        // the table, so the program must see that table here too); the call reports success.
        struct user_regs_struct r = c->entry;
        r.orig_rax = (uint64_t)-1;
        ptrace(PTRACE_SETREGS, t->tid, 0, &r);
        t->skip_syscall = true;
        t->skip_result = 0;
      }
      if (nr == SYS_exit || nr == SYS_exit_group) {
        c->result = 0;
        if (nr == SYS_exit && t->clear_tid && process_threads(t->pid) > 1) {
          // The kernel zeroes the tid word (and futex-wakes it) as the thread ends: part of this
          // event, applied by replay when the thread reaches it.
          uint32_t zero = 0;
          buf_u64(&writes, t->clear_tid);
          buf_bytes(&writes, &zero, 4);
          c->nwrites++;
        }
        emit_syscall(t, true);
        t->in_recorded_syscall = false;
      }
      // A syscall that may block: what is recorded so far goes out now, so a recorder killed
      // while the program waits loses nothing. Otherwise batch (flushed every 20 ms or 64 KiB).
      if (may_block(nr) || nr == SYS_vfork || stream_should_flush()) stream_flush();
      t->entry_stop = true;
      return GO_ON;
    }
    // Syscall exit.
    struct user_regs_struct regs;
    ptrace(PTRACE_GETREGS, t->tid, 0, &regs);
    if (t->backing_out) {
      // Back onto the SYSCALL instruction, rax the number again, not in a syscall (no restart
      // logic): the held signals are re-sent as it resumes (resume_thread) and delivered here.
      t->backing_out = false;
      regs = t->backout_regs;
      regs.rax = regs.orig_rax;
      regs.orig_rax = (uint64_t)-1;
      regs.rip -= 2;
      ptrace(PTRACE_SETREGS, t->tid, 0, &regs);
      ptrace(PTRACE_GETREGS, t->tid, 0, &t->exit_regs);
      t->at_boundary = true;
      t->before_syscall = true;
      return GO_ON;
    }
    if (t->skip_syscall) {
      regs.rax = (uint64_t)t->skip_result;
      ptrace(PTRACE_SETREGS, t->tid, 0, &regs);
      t->skip_syscall = false;
    }
    if (t->exec_pending) {
      t->exec_pending = false;
      if (t->execed && t->in_recorded_syscall) {
        t->sc.result = 0;
        emit_syscall(t, true);
      }
      t->in_recorded_syscall = false;
      uint64_t syscall_at = 0;
      if (record_exec(t, &syscall_at) < 0) return FAILED;
      if (opts->cpuid_faulting && enable_cpuid_faulting(t, syscall_at) < 0) return FAILED;
      ptrace(PTRACE_GETREGS, t->tid, 0, &t->exit_regs);
      t->at_boundary = true;
      return GO_ON;
    }
    if (!t->in_recorded_syscall) return GO_ON;
    t->in_recorded_syscall = false;
    t->sc.result = (int64_t)regs.rax;
    sc_exit(&t->sc);
    if (t->sc.unsupported[0]) { stop_recording(t->tid, "%s", t->sc.unsupported); return STOPPED; }
    emit_syscall(t, false);
    update_patched_sites(t);
    t->exit_regs = regs;
    t->at_boundary = true;
    return GO_ON;
  }
  // A signal-delivery-stop (group-stops do not happen: stop signals end the recording first).
  if (!t->execed) { *sig = signo == SIGSTOP ? 0 : signo; return GO_ON; }
  siginfo_t si;
  if (ptrace(PTRACE_GETSIGINFO, t->tid, 0, &si) < 0) return GO_ON;
  restore_siginfo(t, signo, &si);
  struct user_regs_struct regs;
  ptrace(PTRACE_GETREGS, t->tid, 0, &regs);
  if (signo == SIGTRAP && si.si_code == SI_KERNEL && sites_kinds()) {
    // An int3 the recorder put on an rdtsc(p) or cpuid (patch_sites.c): answer it, go on after it.
    int kind = sites_at(t->pid, t->memfd, regs.rip - 1);
    if (kind == SITE_CPUID) {
      regs.rip -= 1;
      if (cpuid_emulate(t->tid, &regs)) return GO_ON;
      stream_message(REC_ERROR, "cannot answer the cpuid at 0x%llx: %s", (unsigned long long)regs.rip, strerror(errno));
      return FAILED;
    }
    if (kind) {
      regs.rip -= 1;
      ev_prefix(t);
      if (rdtsc_emulate(t->tid, &regs, kind == SITE_RDTSCP, &rec)) { emit(REC_RDTSC); return GO_ON; }
      rec.len = 0;
      stream_message(REC_ERROR, "cannot answer the rdtsc at 0x%llx: %s", (unsigned long long)regs.rip, strerror(errno));
      return FAILED;
    }
  }
  if (signo == SIGSEGV && si.si_code == SI_KERNEL) {
    // A trapped CPUID (faulting on): answered from the masked table, no event (replay answers
    // from the same table in the header).
    if (opts->cpuid_faulting && cpuid_try_emulate(t->tid, t->memfd, &regs)) return GO_ON;
    ev_prefix(t);
    if (rdtsc_try_emulate(t->tid, t->memfd, &regs, &rec)) { emit(REC_RDTSC); return GO_ON; }
    rec.len = 0;
  }
  if (!is_sync(signo, &si) && !(was_boundary && memcmp(&regs, &t->exit_regs, sizeof regs) == 0)) {
    // Asynchronous, in the middle of user code: without ticks replay could not place it. Without
    // a handler it is ignored, or the process dies (or a stop signal ends the recording): nothing
    // of the thread runs after it, so it needs no place in replay and goes at once. A handler's
    // is held back until the next syscall.
    if (!sig_in_mask(t->tid, "SigCgt", signo)) {
      int r = deliver_signal(t, signo, &si, &regs, PLACE_USER_CODE, sig);
      if (r < 0) { stream_message(REC_ERROR, "signal delivery: %s", strerror(errno)); return FAILED; }
      return r > 0 ? STOPPED : GO_ON;
    }
    if (!hold_signal(t, signo, &si)) {
      stop_recording(t->tid, "more than %s asynchronous signals held back at once (the program makes no syscall)", "64");
      return STOPPED;
    }
    return GO_ON;
  }
  int r = deliver_signal(t, signo, &si, &regs, was_before_syscall ? PLACE_BEFORE_SYSCALL : PLACE_BOUNDARY, sig);
  if (r < 0) { stream_message(REC_ERROR, "signal delivery: %s", strerror(errno)); return FAILED; }
  if (r > 0) return STOPPED;
  return GO_ON;
}

// ---- Threads: one thread of a process runs user code at a time (see the top of this file) ----

int tracer_run(pid_t child, int errpipe, int go, const struct tracer_opts *o) {
  opts = o;
  struct thread *first = add_thread(child, child);
  int st;
  // PTRACE_SEIZE (not TRACEME): PTRACE_INTERRUPT works, and group-stops are reported as such. The
  // child runs until its exec, the first stop (PTRACE_EVENT_EXEC); its children are seized too and
  // start with a PTRACE_EVENT_STOP.
  long options = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL |
                 PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE;
  if (ptrace(PTRACE_SEIZE, child, 0, options) < 0) {
    stream_message(REC_ERROR, "PTRACE_SEIZE of the program: %s", strerror(errno));
    kill(child, SIGKILL);
    return 1;
  }
  if (o->pmu) {
    first->pmu_fd = pmu_attach(child, o->pmu_config);
    if (first->pmu_fd < 0) { stream_message(REC_ERROR, "perf_event_open for the tracee: %s", strerror(errno)); kill(child, SIGKILL); return 1; }
  }
  if (write(go, "g", 1) != 1) { stream_message(REC_ERROR, "cannot start the program: %s", strerror(errno)); kill(child, SIGKILL); return 1; }
  close(go);
  for (;;) {
    if (stream_should_flush()) stream_flush();
    pid_t w;
    while ((w = waitpid(-1, &st, __WALL)) < 0) {
      if (errno == EINTR && ra_tick) {
        ra_tick = 0;
        struct thread *sp = find_spinner();
        if (sp && sp->entry_stop && sp->in_recorded_syscall) {
          // Not spinning: waiting in a syscall that writes memory, which only runs alone.
          long nr = (long)sp->sc.entry.orig_rax;
          char call[96];
          if (nr == SYS_futex) snprintf(call, sizeof call, "futex (op %llu%s)", (unsigned long long)(sp->sc.entry.rsi & 127), (sp->sc.entry.rsi & 127) == 6 ? ", FUTEX_LOCK_PI: a contended priority-inheritance mutex" : "");
          else snprintf(call, sizeof call, "%s", syscall_name(nr));
          char what[256];
          snprintf(what, sizeof what, "thread %d of process %d has waited %.0f s in %s while another thread waited to run", sp->tid, sp->pid, spin_seconds, call);
          stop_recording(sp->tid, "%s: without a PMU the recorder runs one thread at a time and lets only syscalls that write no memory wait while a sibling runs (futex waits, sleeps, yields); this one writes memory and waits for a sibling, so it cannot be recorded yet", what);
          return 1;
        }
        if (sp) {
          char what[160];
          snprintf(what, sizeof what, "thread %d of process %d ran %.0f s without a syscall while another thread waited to run", sp->tid, sp->pid, spin_seconds);
          stop_recording(sp->tid, "%s: without a PMU the recorder runs one thread at a time and switches only at syscalls, so a thread that spins in user code (or waits in a syscall the recorder does not let run concurrently, such as a read from a pipe a sibling thread writes) cannot be preempted; this program needs a PMU (hardware performance counters) to record", what);
          return 1;
        }
        if ((sp = find_signal_waiter())) {
          sp->held_warned = true;
          stream_message(REC_WARNING, "thread %d of process %d has run %.0f s in user code without a syscall while signal %d (%s) waits for one: without a PMU the recorder delivers a signal to a handler only at a syscall, so a program that busy-waits for what its handler does waits forever (Ctrl-C ends the recording); this program needs a PMU (hardware performance counters) to record", sp->tid, sp->pid, spin_seconds, sp->held[0].sig, strsignal(sp->held[0].sig));
          stream_flush();
        }
        continue;
      }
      if (errno == EINTR && ra_interrupted) {
        stream_message(REC_STOPPED, "recording interrupted by %s at event %llu", strsignal(ra_interrupted), (unsigned long long)nevents);
        kill_all();
        return 1;
      }
      if (errno != EINTR) { stream_message(REC_ERROR, "waitpid: %s", strerror(errno)); kill_all(); return 1; }
    }
    struct thread *t = find_thread(w);
    if (!t) {
      // A new tracee stopping before its parent's fork event was seen: wait for that event.
      if (WIFSTOPPED(st)) add_thread(w, w)->fresh = true;
      continue;
    }
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      if (!t->execed) {
        int e = 0;
        if (read(errpipe, &e, sizeof e) != sizeof e) e = 0;
        struct buf b = {0};
        buf_u32(&b, (uint32_t)e);
        buf_str(&b, e ? strerror(e) : "the program ended before exec");
        stream_record(REC_EXEC_FAILED, &b);
        free(b.p);
        stream_flush();
        return 1;
      }
      pid_t epid = t->pid;
      if (!t->fresh) {
        ev_prefix(t);
        buf_u32(&rec, WIFSIGNALED(st));
        buf_u32(&rec, WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        buf_u32(&rec, process_threads(t->pid) <= 1);
        emit(REC_EXIT);
      }
      remove_thread(t);
      if (process_threads(epid) == 0) {
        last_ran_forget(epid);
        sites_forget(epid);
      }
      if (nthreads > 0) {
        int r = schedule(epid);
        if (r == STOPPED) return 1;
        if (r == FAILED) { kill_all(); return 1; }
      }
      if (nthreads == 0) {
        struct buf b = {0};
        stream_record(REC_END, &b);
        stream_flush();
        return 0;
      }
      stream_flush();
      continue;
    }
    if (!WIFSTOPPED(st) || t->fresh) continue;
    if ((st >> 16) == PTRACE_EVENT_EXEC) {
      // An exec from a thread other than the leader is reported on the leader's tid, which the
      // exec'ing thread has taken: it goes on from here as that thread.
      unsigned long former = 0;
      if (ptrace(PTRACE_GETEVENTMSG, w, 0, &former) == 0 && (pid_t)former != w) {
        struct thread *x = find_thread((pid_t)former);
        if (x) { exec_takes_leader(x, t); t = x; }
      }
    }
    int r;
    if (t->state == T_BLOCKED || t->state == T_HELD) {
      // Back from a syscall it waited in while a sibling ran: its turn comes at the next switch.
      t->state = T_HELD;
      t->has_pending = true;
      t->pending_status = st;
      t->held_seq = ++held_counter;
      r = schedule(t->pid);
    } else {
      mono_now(&t->last_stop);
      int how, sig;
      r = handle_stop(t, st, &how, &sig);
      r = after_stop(t, r, how, sig);
    }
    if (r == STOPPED) return 1;
    if (r == FAILED) { kill_all(); return 1; }
  }
}
