// The ptrace loop. One tracee thread for now; per-thread state lives in `struct thread`, every
// record carries pid and tid, so following fork/clone children (PTRACE_O_TRACECLONE, one runnable
// thread at a time) adds a thread table and a scheduler, not a new design.
//
// No-PMU mode: events happen only at syscalls. An asynchronous signal that arrives while the
// tracee runs user code is held back and re-injected at the exit of the tracee's next syscall, so
// replay can deliver it right after that syscall event.
#include "ra.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/perf_event.h>

struct thread {
  pid_t tid, pid;
  int memfd;
  int pmu_fd;
  bool execed;            // the first execve happened (before it, nothing is recorded)
  bool exec_pending;      // PTRACE_EVENT_EXEC seen, the execve's syscall-exit stop comes next
  bool in_recorded_syscall;
  bool skip_syscall;      // entry was turned into a no-op (rseq): report -ENOSYS
  bool at_boundary;       // the last stop was a syscall exit and the tracee has not run since
  struct user_regs_struct exit_regs;
  int held_signal;        // async signal held back until the next syscall exit
  struct sc_ctx sc;
};

static const struct tracer_opts *opts;
static uint64_t nevents;
static struct buf rec, writes;

static void ev_prefix(struct thread *t) {
  buf_u32(&rec, (uint32_t)t->pid);
  buf_u32(&rec, (uint32_t)t->tid);
  if (t->pmu_fd >= 0) { buf_u32(&rec, 1); buf_u64(&rec, pmu_read(t->pmu_fd)); }
  else { buf_u32(&rec, 0); buf_u64(&rec, 0); }
}

static void emit(uint32_t type) { stream_record(type, &rec); nevents++; }

static void record_write(struct sc_ctx *c, uint64_t addr, uint64_t len) {
  if (len > (1ull << 31)) len = 1ull << 31;
  buf_u64(c->writes, addr);
  buf_u64(c->writes, len);
  mem_read_zero(c->memfd, addr, buf_grow(c->writes, len), len);
  c->nwrites++;
}

static void put_mapping(struct thread *t, uint64_t start, uint64_t end, uint32_t prot, uint32_t flags,
                        uint64_t offset, const char *name, bool with_data) {
  buf_u64(&rec, start); buf_u64(&rec, end);
  buf_u32(&rec, prot); buf_u32(&rec, flags);
  buf_u64(&rec, offset);
  buf_str(&rec, name);
  buf_u32(&rec, with_data);
  if (with_data) {
    buf_u64(&rec, end - start);
    mem_read_zero(t->memfd, start, buf_grow(&rec, end - start), end - start);
  }
}

static void read_file(const char *path, struct buf *out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  for (;;) {
    buf_reserve(out, 4096);
    ssize_t r = read(fd, out->p + out->len, out->cap - out->len);
    if (r <= 0) break;
    out->len += (size_t)r;
  }
  close(fd);
}

// Fail the recording: tell the reader why, kill the tracee, end.
static int stop_recording(pid_t pid, const char *fmt, const char *what) {
  char msg[512];
  snprintf(msg, sizeof msg, fmt, what);
  stream_message(REC_STOPPED, "%s: recording stopped at event %llu", msg, (unsigned long long)nevents);
  kill(pid, SIGKILL);
  int st;
  while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {}
  return 1;
}

static int record_exec(struct thread *t) {
  char err[256] = "";
  if (t->memfd >= 0) close(t->memfd);
  t->memfd = mem_open(t->tid);
  t->sc.memfd = t->memfd;
  if (t->memfd < 0) { stream_message(REC_ERROR, "cannot open /proc/%d/mem: %s", t->tid, strerror(errno)); return -1; }
  if (vdso_patch(t->tid, t->memfd, err, sizeof err) < 0) { stream_message(REC_ERROR, "vDSO patch failed: %s", err); return -1; }
  if (t->pmu_fd >= 0) ioctl(t->pmu_fd, PERF_EVENT_IOC_RESET, 0);

  struct user_regs_struct regs;
  struct user_fpregs_struct fpregs;
  if (ptrace(PTRACE_GETREGS, t->tid, 0, &regs) < 0 || ptrace(PTRACE_GETFPREGS, t->tid, 0, &fpregs) < 0) {
    stream_message(REC_ERROR, "cannot read registers after exec: %s", strerror(errno));
    return -1;
  }
  char path[4096], link[64];
  snprintf(link, sizeof link, "/proc/%d/exe", t->tid);
  ssize_t n = readlink(link, path, sizeof path - 1);
  path[n > 0 ? n : 0] = 0;

  ev_prefix(t);
  buf_str(&rec, path);
  struct buf tmp = {0};
  snprintf(link, sizeof link, "/proc/%d/cmdline", t->tid);
  read_file(link, &tmp);
  uint32_t argc = 0;
  for (size_t k = 0; k < tmp.len; k++) if (tmp.p[k] == 0) argc++;
  buf_u32(&rec, argc);
  for (size_t k = 0; k < tmp.len;) {
    size_t len = strnlen((char *)tmp.p + k, tmp.len - k);
    buf_bytes(&rec, tmp.p + k, len);
    k += len + 1;
  }
  buf_bytes(&rec, &regs, sizeof regs);
  buf_bytes(&rec, &fpregs, sizeof fpregs);
  tmp.len = 0;
  snprintf(link, sizeof link, "/proc/%d/auxv", t->tid);
  read_file(link, &tmp);
  buf_bytes(&rec, tmp.p, tmp.len);
  // start_brk is field 47 of /proc/PID/stat; right after exec the break is there.
  tmp.len = 0;
  snprintf(link, sizeof link, "/proc/%d/stat", t->tid);
  read_file(link, &tmp);
  buf_u32(&tmp, 0);
  uint64_t brk = 0;
  char *p = strrchr((char *)tmp.p, ')');
  for (int field = 2; p && field < 47; field++) p = strchr(p + 1, ' ');
  if (p) brk = strtoull(p + 1, NULL, 10);
  buf_u64(&rec, brk);
  free(tmp.p);

  struct map_entry *maps;
  int nmaps = maps_read(t->tid, &maps);
  if (nmaps < 0) { stream_message(REC_ERROR, "cannot read /proc/%d/maps", t->tid); return -1; }
  uint32_t kept = 0;
  size_t count_at = rec.len;
  buf_u32(&rec, 0);
  for (int k = 0; k < nmaps; k++) {
    struct map_entry *m = &maps[k];
    if (strcmp(m->name, "[vsyscall]") == 0) continue;
    bool data = m->prot != 0 && strncmp(m->name, "[vvar", 5) != 0;
    put_mapping(t, m->start, m->end, m->prot, m->flags, m->offset, m->name, data);
    kept++;
  }
  memcpy(rec.p + count_at, &kept, 4);
  free(maps);
  emit(REC_EXEC);
  t->execed = true;
  return 0;
}

static void emit_syscall(struct thread *t, bool no_return) {
  struct sc_ctx *c = &t->sc;
  ev_prefix(t);
  buf_u64(&rec, c->entry.orig_rax);
  buf_bytes(&rec, &c->entry, sizeof c->entry);
  buf_u64(&rec, (uint64_t)c->result);
  buf_u32(&rec, no_return);
  buf_u32(&rec, c->nwrites);
  buf_raw(&rec, writes.p, writes.len);
  // mmap of a file: the mapped contents become a mapping of the event.
  long nr = (long)c->entry.orig_rax;
  bool file_map = nr == SYS_mmap && (uint64_t)c->result < (uint64_t)-4096 && !(c->entry.r10 & MAP_ANONYMOUS);
  if (file_map) {
    char link[64], name[4096];
    snprintf(link, sizeof link, "/proc/%d/fd/%d", t->tid, (int)c->entry.r8);
    ssize_t n = readlink(link, name, sizeof name - 1);
    name[n > 0 ? n : 0] = 0;
    uint64_t start = (uint64_t)c->result, len = (c->entry.rsi + 4095) & ~4095ull;
    uint32_t flags = (c->entry.r10 & MAP_TYPE) == MAP_PRIVATE ? MAP_PRIVATE : MAP_SHARED;
    buf_u32(&rec, 1);
    put_mapping(t, start, start + len, (uint32_t)c->entry.rdx & 7, flags, c->entry.r9, name, true);
  } else {
    buf_u32(&rec, 0);
  }
  buf_u32(&rec, c->has_output && !no_return);
  if (c->has_output && !no_return) buf_bytes(&rec, c->output.p, c->output.len);
  emit(REC_SYSCALL);
  writes.len = 0;
  c->nwrites = 0;
}

static bool may_block(long nr) {
  switch (nr) {
  case SYS_read: case SYS_readv: case SYS_pread64: case SYS_preadv: case SYS_write: case SYS_writev:
  case SYS_wait4: case SYS_waitid: case SYS_poll: case SYS_ppoll: case SYS_select: case SYS_pselect6:
  case SYS_epoll_wait: case SYS_epoll_pwait: case SYS_nanosleep: case SYS_clock_nanosleep: case SYS_futex:
  case SYS_accept: case SYS_accept4: case SYS_connect: case SYS_recvfrom: case SYS_recvmsg: case SYS_sendto:
  case SYS_sendmsg: case SYS_pause: case SYS_rt_sigsuspend: case SYS_rt_sigtimedwait: case SYS_flock:
  case SYS_fcntl: case SYS_ioctl: case SYS_open: case SYS_openat: case SYS_execve: case SYS_exit_group:
  case SYS_exit:
    return true;
  default:
    return false;
  }
}

static bool sig_in_mask(pid_t pid, const char *field, int sig) {
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

static bool is_sync(int sig, const siginfo_t *si) {
  return (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP || sig == SIGSYS) && si->si_code > 0;
}

// Deliver `sig` now. Returns 0 to go on, 1 when the recording is over, with *resume_sig set.
static int deliver_signal(struct thread *t, int sig, const siginfo_t *si, struct user_regs_struct *regs, int *resume_sig) {
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
    // of the alternate stack when the handler runs there (uc_stack.ss_flags & SS_ONSTACK).
    uint64_t end = regs->rsp - 128;
    uint64_t ss[3] = {0};  // ss_sp, ss_flags, ss_size at frame+24
    mem_read(t->memfd, h.rsp + 24, ss, sizeof ss);
    if ((ss[1] & SS_ONSTACK) && h.rsp >= ss[0] && h.rsp < ss[0] + ss[2]) end = ss[0] + ss[2];
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
    emit(REC_SIGNAL);
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
  emit(REC_SIGNAL);
  *resume_sig = sig;
  return 0;
}

int tracer_run(pid_t child, int errpipe, const struct tracer_opts *o) {
  opts = o;
  struct thread th = { .tid = child, .pid = child, .memfd = -1, .pmu_fd = -1 };
  struct thread *t = &th;
  t->sc.pid = child;
  t->sc.write = record_write;
  t->sc.writes = &writes;
  int st;
  while (waitpid(child, &st, __WALL) < 0) if (errno != EINTR) { stream_message(REC_ERROR, "waitpid: %s", strerror(errno)); return 1; }
  if (!WIFSTOPPED(st)) {
    stream_message(REC_ERROR, "the program did not start (ptrace set-up failed)");
    return 1;
  }
  long options = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL;
  if (ptrace(PTRACE_SETOPTIONS, child, 0, options) < 0) {
    stream_message(REC_ERROR, "PTRACE_SETOPTIONS: %s", strerror(errno));
    kill(child, SIGKILL);
    return 1;
  }
  if (o->pmu) {
    t->pmu_fd = pmu_attach(child, o->pmu_config);
    if (t->pmu_fd < 0) { stream_message(REC_ERROR, "perf_event_open for the tracee: %s", strerror(errno)); kill(child, SIGKILL); return 1; }
  }
  int resume = PTRACE_CONT, resume_sig = 0;
  for (;;) {
    if (t->at_boundary && t->held_signal) {  // re-inject a held-back signal at this syscall exit
      resume_sig = t->held_signal;
      t->held_signal = 0;
    }
    if (stream_should_flush()) stream_flush();
    if (ptrace(resume, t->tid, 0, resume_sig) < 0 && errno != ESRCH) {
      stream_message(REC_ERROR, "ptrace resume: %s", strerror(errno));
      kill(child, SIGKILL);
      return 1;
    }
    resume_sig = 0;
    pid_t w;
    while ((w = waitpid(-1, &st, __WALL)) < 0) {
      if (errno == EINTR && ra_interrupted) {
        stream_message(REC_STOPPED, "recording interrupted by %s at event %llu", strsignal(ra_interrupted), (unsigned long long)nevents);
        kill(child, SIGKILL);
        while (waitpid(child, &st, __WALL) < 0 && errno == EINTR) {}
        return 1;
      }
      if (errno != EINTR) { stream_message(REC_ERROR, "waitpid: %s", strerror(errno)); return 1; }
    }
    if (w != t->tid) continue;
    bool was_boundary = t->at_boundary;
    t->at_boundary = false;
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
      ev_prefix(t);
      buf_u32(&rec, WIFSIGNALED(st));
      buf_u32(&rec, WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
      buf_u32(&rec, 1);
      emit(REC_EXIT);
      struct buf b = {0};
      stream_record(REC_END, &b);
      stream_flush();
      return 0;
    }
    if (!WIFSTOPPED(st)) continue;
    int sig = WSTOPSIG(st), event = st >> 16;
    resume = t->execed ? PTRACE_SYSCALL : PTRACE_CONT;
    if (event == PTRACE_EVENT_EXEC) {
      t->exec_pending = true;
      resume = PTRACE_SYSCALL;
      continue;
    }
    if (event != 0) continue;  // other ptrace events are not enabled yet
    if (sig == (SIGTRAP | 0x80)) {
      struct __ptrace_syscall_info info;
      if (ptrace(PTRACE_GET_SYSCALL_INFO, t->tid, sizeof info, &info) <= 0) {
        stream_message(REC_ERROR, "PTRACE_GET_SYSCALL_INFO: %s", strerror(errno));
        kill(child, SIGKILL);
        return 1;
      }
      resume = PTRACE_SYSCALL;
      if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
        struct sc_ctx *c = &t->sc;
        ptrace(PTRACE_GETREGS, t->tid, 0, &c->entry);
        long nr = (long)c->entry.orig_rax;
        if (nr == SYS_fork || nr == SYS_vfork || nr == SYS_clone || nr == SYS_clone3)
          return stop_recording(child, "fork/clone not supported yet (%s)", syscall_name(nr));
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
        }
        if (nr == SYS_exit || nr == SYS_exit_group) {
          c->result = 0;
          emit_syscall(t, true);
          t->in_recorded_syscall = false;
        }
        // A syscall that may block: what is recorded so far goes out now, so a recorder killed
        // while the program waits loses nothing. Otherwise batch (flushed every 20 ms or 64 KiB).
        if (may_block(nr) || stream_should_flush()) stream_flush();
        continue;
      }
      // Syscall exit.
      struct user_regs_struct regs;
      ptrace(PTRACE_GETREGS, t->tid, 0, &regs);
      if (t->skip_syscall) {
        regs.rax = (uint64_t)-ENOSYS;
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
        if (record_exec(t) < 0) { kill(child, SIGKILL); return 1; }
        ptrace(PTRACE_GETREGS, t->tid, 0, &t->exit_regs);
        t->at_boundary = true;
        continue;
      }
      if (!t->in_recorded_syscall) continue;
      t->in_recorded_syscall = false;
      t->sc.result = (int64_t)regs.rax;
      sc_exit(&t->sc);
      if (t->sc.unsupported[0]) return stop_recording(child, "%s", t->sc.unsupported);
      emit_syscall(t, false);
      t->exit_regs = regs;
      t->at_boundary = true;
      continue;
    }
    // A signal-delivery-stop (group-stops do not happen: stop signals end the recording first).
    if (!t->execed) { resume_sig = sig == SIGSTOP ? 0 : sig; continue; }
    siginfo_t si;
    if (ptrace(PTRACE_GETSIGINFO, t->tid, 0, &si) < 0) continue;
    struct user_regs_struct regs;
    ptrace(PTRACE_GETREGS, t->tid, 0, &regs);
    if (sig == SIGSEGV && si.si_code == SI_KERNEL) {
      ev_prefix(t);
      if (rdtsc_try_emulate(t->tid, t->memfd, &regs, &rec)) { emit(REC_RDTSC); continue; }
      rec.len = 0;
    }
    if (!is_sync(sig, &si) && !(was_boundary && memcmp(&regs, &t->exit_regs, sizeof regs) == 0)) {
      // Asynchronous, in the middle of user code: without ticks replay could not place it. Hold it
      // back until the next syscall exit.
      if (t->held_signal && t->held_signal != sig)
        return stop_recording(child, "two asynchronous signals pending at once (%s): not supported yet", strsignal(sig));
      t->held_signal = sig;
      continue;
    }
    int r = deliver_signal(t, sig, &si, &regs, &resume_sig);
    if (r < 0) { stream_message(REC_ERROR, "signal delivery: %s", strerror(errno)); kill(child, SIGKILL); return 1; }
    if (r > 0) return 1;
  }
}
