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
#include <sys/stat.h>
#include <sched.h>
#include <time.h>
#include <sys/time.h>
#include <sys/resource.h>
#include <linux/sched.h>
#include <linux/perf_event.h>
#include <linux/futex.h>

#define MAX_HELD 64
struct held_sig { int sig; siginfo_t si; };

struct thread {
  pid_t tid, pid;
  int memfd;
  int pmu_fd;
  bool execed;            // the first execve happened (before it, nothing is recorded)
  bool exec_pending;      // PTRACE_EVENT_EXEC seen, the execve's syscall-exit stop comes next
  bool in_recorded_syscall;
  bool skip_syscall;      // entry was turned into a no-op (rseq, ARCH_SET_CPUID): report skip_result
  int64_t skip_result;
  bool at_boundary;       // the last stop was a syscall exit and the tracee has not run since
  bool backing_out;       // its syscall was skipped at entry to deliver held signals before it
  struct user_regs_struct backout_regs;  // the registers at that entry
  bool before_syscall;    // at_boundary is the backed-out syscall's instruction
  struct user_regs_struct exit_regs;
  struct held_sig *held;  // async signals held back (arrived in user code), oldest first
  int nheld;
  struct timespec held_since;  // when the oldest one was held (or its syscall last backed out)
  bool held_warned;            // the user was told it waits
  struct held_sig *sent;  // held ones re-sent with tgkill, not delivered yet
  int nsent;
  bool fresh;             // a new tracee whose initial stop came before its parent's fork event
  int state;              // T_RUNNING, T_HELD, T_BLOCKED, T_EXITING
  bool has_pending;       // HELD with a stop not handled yet (pending_status)
  int pending_status;
  uint64_t held_seq;      // when it became HELD (round robin)
  uint64_t clear_tid;     // CLONE_CHILD_CLEARTID / set_tid_address: zeroed by the kernel at exit
  struct timespec last_stop;
  bool entry_stop;        // the last handled stop was a syscall entry
  struct sc_ctx sc;
};

enum { T_RUNNING = 0, T_HELD = 1, T_BLOCKED = 2, T_EXITING = 3 };
static struct thread **threads;
static int nthreads, capthreads;

static struct thread *find_thread(pid_t tid) {
  for (int k = 0; k < nthreads; k++) if (threads[k]->tid == tid) return threads[k];
  return NULL;
}

static struct buf writes;
static int process_threads(pid_t pid);
static void mono_now(struct timespec *ts);
static void start_spin_timer(void);
static void last_ran_forget(pid_t pid);
static void record_write(struct sc_ctx *c, uint64_t addr, uint64_t len);

static struct thread *add_thread(pid_t tid, pid_t pid) {
  if (nthreads == capthreads) {
    capthreads = capthreads ? capthreads * 2 : 16;
    threads = realloc(threads, sizeof *threads * (size_t)capthreads);
    if (!threads) { fprintf(stderr, "ra-recorder: out of memory\n"); _exit(70); }
  }
  struct thread *t = calloc(1, sizeof *t);
  if (!t) { fprintf(stderr, "ra-recorder: out of memory\n"); _exit(70); }
  t->tid = tid; t->pid = pid; t->memfd = -1; t->pmu_fd = -1;
  t->sc.pid = tid; t->sc.memfd = -1;
  t->sc.write = record_write;
  t->sc.writes = &writes;
  t->held = calloc(MAX_HELD, sizeof *t->held);
  t->sent = calloc(MAX_HELD, sizeof *t->sent);
  if (!t->held || !t->sent) { fprintf(stderr, "ra-recorder: out of memory\n"); _exit(70); }
  threads[nthreads++] = t;
  return t;
}

static void remove_thread(struct thread *t) {
  for (int k = 0; k < nthreads; k++) {
    if (threads[k] != t) continue;
    threads[k] = threads[--nthreads];
    break;
  }
  if (t->memfd >= 0) close(t->memfd);
  if (t->pmu_fd >= 0) close(t->pmu_fd);
  free(t->sc.output.p);
  free(t->held);
  free(t->sent);
  free(t);
}

// Kill every tracee and reap them (EXITKILL would do it too when the helper exits).
static void kill_all(void) {
  for (int k = 0; k < nthreads; k++) kill(threads[k]->tid, SIGKILL);
  int st;
  for (;;) {
    pid_t w = waitpid(-1, &st, __WALL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) break;
  }
}

static const struct tracer_opts *opts;
static uint64_t held_counter;
static uint64_t nevents;
static struct buf rec;

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
  (void)pid;
  kill_all();
  return 1;
}

static int record_exec(struct thread *t, uint64_t *syscall_at) {
  char err[256] = "";
  if (t->memfd >= 0) close(t->memfd);
  t->memfd = mem_open(t->tid);
  t->sc.memfd = t->memfd;
  if (t->memfd < 0) { stream_message(REC_ERROR, "cannot open /proc/%d/mem: %s", t->tid, strerror(errno)); return -1; }
  if (vdso_patch(t->tid, t->memfd, syscall_at, err, sizeof err) < 0) { stream_message(REC_ERROR, "vDSO patch failed: %s", err); return -1; }
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
  // RLIMIT_STACK: how far replay lets the main stack grow before a fault is a SIGSEGV.
  struct rlimit rl = { RLIM_INFINITY, RLIM_INFINITY };
  prlimit(t->tid, RLIMIT_STACK, NULL, &rl);
  buf_u64(&rec, (uint64_t)rl.rlim_cur);
  emit(REC_EXEC);
  t->execed = true;
  // After the exec record took the original bytes: replay runs the program's own instructions.
  if (sites_kinds()) sites_exec(t->pid, t->memfd);
  return 0;
}

// Where the user saw what a syscall wrote to fd 1 or 2: 0 on that same fd of the recording (or not
// an output syscall), 1 or 2 on the recording's stdout/stderr through the other fd (2>&1), 3 not
// at all (a pipe between recorded processes: sh -c 'ls | sort'). Replay echoes accordingly.
static uint32_t output_target(struct thread *t, struct sc_ctx *c) {
  long nr = (long)c->entry.orig_rax;
  uint64_t fd;
  switch (nr) {
  case SYS_write: case SYS_writev: case SYS_pwrite64: case SYS_pwritev: case SYS_pwritev2: case SYS_sendfile:
    fd = c->entry.rdi; break;
  case SYS_copy_file_range: case SYS_splice: fd = c->entry.rdx; break;
  default: return 0;
  }
  if (fd != 1 && fd != 2) return 0;
  char link[64];
  struct stat a, b;
  snprintf(link, sizeof link, "/proc/%d/fd/%d", t->tid, (int)fd);
  if (stat(link, &a) < 0) return 3;
  if (fstat((int)fd, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) return 0;
  int other = fd == 1 ? 2 : 1;
  if (fstat(other, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) return (uint32_t)other;
  return 3;
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
  buf_u32(&rec, no_return ? 0 : output_target(t, c));
  emit(REC_SYSCALL);
  writes.len = 0;
  c->nwrites = 0;
}

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

// Hold back an asynchronous signal that arrived in user code. False when too many are held.
static bool hold_signal(struct thread *t, int sig, const siginfo_t *si) {
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
static void resend_held(struct thread *t) {
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
static void restore_siginfo(struct thread *t, int sig, siginfo_t *si) {
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

static bool is_sync(int sig, const siginfo_t *si) {
  return (sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP || sig == SIGSYS) && si->si_code > 0;
}

// Deliver `sig` now. Returns 0 to go on, 1 when the recording is over, with *resume_sig set.
// `placement`: where replay delivers it (PLACE_*), for the event.
enum { PLACE_BOUNDARY = 0, PLACE_BEFORE_SYSCALL = 1, PLACE_USER_CODE = 2 };
static int deliver_signal(struct thread *t, int sig, const siginfo_t *si, struct user_regs_struct *regs, uint32_t placement, int *resume_sig) {
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

// clone flags of the process-creating syscall the thread is in (read at its entry).
static uint64_t creation_flags(struct thread *t, const struct user_regs_struct *entry, uint64_t *child_tid) {
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
static int on_new_child(struct thread *t, pid_t child) {
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
    // A thread waits for its turn (its parent keeps running); its initial SIGSTOP is swallowed
    // when it is first resumed.
    c->state = T_HELD;
    c->has_pending = false;
    c->held_seq = ++held_counter;
    return 0;
  }
  c->state = T_RUNNING;
  sites_fork(t->pid, child);  // its memory is a copy of the parent's, int3s included
  if (ptrace(PTRACE_SYSCALL, child, 0, 0) < 0 && errno != ESRCH) {  // swallow its initial SIGSTOP
    stream_message(REC_ERROR, "ptrace resume of the new process %d: %s", child, strerror(errno));
    return -1;
  }
  return 0;
}

// execve switched CPUID faulting off: switch it on again by running arch_prctl(ARCH_SET_CPUID, 0)
// in the tracee, which is at the execve's syscall-exit stop. The injected syscall runs from
// `syscall_at` (the `syscall` of a patched vDSO stub) or, without a vDSO, from a `syscall` written
// over the two bytes at rip for the moment. Not recorded: it changes no memory and no register the
// program sees (they are restored). fork and clone children inherit the setting.
static int enable_cpuid_faulting(struct thread *t, uint64_t syscall_at) {
  struct user_regs_struct saved, r;
  if (ptrace(PTRACE_GETREGS, t->tid, 0, &saved) < 0) { stream_message(REC_ERROR, "CPUID faulting: cannot read registers: %s", strerror(errno)); return -1; }
  uint8_t old[2], code[2] = { 0x0f, 0x05 };
  bool patched = false;
  if (!syscall_at) {
    syscall_at = saved.rip;
    if (mem_read(t->memfd, syscall_at, old, 2) != 2 || mem_write(t->memfd, syscall_at, code, 2) < 0) {
      stream_message(REC_ERROR, "CPUID faulting: cannot place a syscall instruction at 0x%llx", (unsigned long long)syscall_at);
      return -1;
    }
    patched = true;
  }
  r = saved;
  r.rip = syscall_at;
  r.rax = SYS_arch_prctl;
  r.rdi = 0x1012;  // ARCH_SET_CPUID
  r.rsi = 0;
  int rc = -1;
  if (ptrace(PTRACE_SETREGS, t->tid, 0, &r) < 0) { stream_message(REC_ERROR, "CPUID faulting: cannot set registers: %s", strerror(errno)); goto out; }
  // Run to the syscall's entry, then to its exit. A signal arriving meanwhile is held back (and
  // re-injected at the next syscall boundary, as for any asynchronous signal).
  for (int stops = 0; stops < 2;) {
    if (ptrace(PTRACE_SYSCALL, t->tid, 0, 0) < 0) { stream_message(REC_ERROR, "CPUID faulting: ptrace resume: %s", strerror(errno)); goto out; }
    int st;
    pid_t w;
    while ((w = waitpid(t->tid, &st, __WALL)) < 0 && errno == EINTR) {}
    if (w < 0 || !WIFSTOPPED(st)) { stream_message(REC_ERROR, "CPUID faulting: process %d ended while switching it on", t->tid); goto out; }
    if (WSTOPSIG(st) == (SIGTRAP | 0x80)) { stops++; continue; }
    int sig = WSTOPSIG(st);
    if ((st >> 16) == 0 && sig != SIGSTOP && sig != SIGTRAP) {
      siginfo_t si;
      if (ptrace(PTRACE_GETSIGINFO, t->tid, 0, &si) < 0 || !hold_signal(t, sig, &si)) { stream_message(REC_ERROR, "CPUID faulting: cannot hold back %s", strsignal(sig)); goto out; }
    }
  }
  if (ptrace(PTRACE_GETREGS, t->tid, 0, &r) < 0) { stream_message(REC_ERROR, "CPUID faulting: cannot read the result: %s", strerror(errno)); goto out; }
  if ((int64_t)r.rax != 0) { stream_message(REC_ERROR, "CPUID faulting: arch_prctl(ARCH_SET_CPUID, 0) in process %d failed: %s", t->tid, strerror((int)-(int64_t)r.rax)); goto out; }
  rc = 0;
out:
  if (patched) mem_write(t->memfd, syscall_at, old, 2);
  if (ptrace(PTRACE_SETREGS, t->tid, 0, &saved) < 0 && rc == 0) { stream_message(REC_ERROR, "CPUID faulting: cannot restore registers: %s", strerror(errno)); rc = -1; }
  return rc;
}

static int resume_thread(struct thread *t, int how, int sig) {
  if (t->at_boundary && t->nheld) resend_held(t);  // at a syscall exit (or handler entry): a place replay knows
  if (ptrace(how, t->tid, 0, sig) < 0 && errno != ESRCH) {
    stream_message(REC_ERROR, "ptrace resume: %s", strerror(errno));
    return -1;
  }
  return 0;
}

enum { GO_ON = 0, NO_RESUME = 1, FAILED = -1, STOPPED = -2 };

// One stop of a known tracee. Sets *how and *sig for its resumption (GO_ON).
static int handle_stop(struct thread *t, int st, int *how, int *sig) {
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

static int process_threads(pid_t pid) {
  int n = 0;
  for (int k = 0; k < nthreads; k++) if (threads[k]->pid == pid && !threads[k]->fresh) n++;
  return n;
}

// The thread whose user code ran last in each process: a switch record is written when another
// thread of that process runs.
static struct { pid_t pid, tid; } *last_ran;
static int nlast, caplast;

static pid_t last_ran_get(pid_t pid) {
  for (int k = 0; k < nlast; k++) if (last_ran[k].pid == pid) return last_ran[k].tid;
  return pid;  // a process starts with its first thread
}

static void last_ran_forget(pid_t pid) {
  for (int k = 0; k < nlast; k++) if (last_ran[k].pid == pid) { last_ran[k] = last_ran[--nlast]; return; }
}

static void last_ran_set(pid_t pid, pid_t tid) {
  for (int k = 0; k < nlast; k++) if (last_ran[k].pid == pid) { last_ran[k].tid = tid; return; }
  if (nlast == caplast) {
    caplast = caplast ? caplast * 2 : 16;
    last_ran = realloc(last_ran, sizeof *last_ran * (size_t)caplast);
    if (!last_ran) { fprintf(stderr, "ra-recorder: out of memory\n"); _exit(70); }
  }
  last_ran[nlast].pid = pid;
  last_ran[nlast].tid = tid;
  nlast++;
}

// A syscall entry where the thread may wait in the kernel while a sibling runs: it blocks (or
// yields) and writes nothing into memory, so letting it proceed concurrently changes nothing the
// trace must place. (futex ops that write, the PI and WAKE_OP ones, are not.)
static bool switchable(const struct user_regs_struct *e) {
  switch ((long)e->orig_rax) {
  case SYS_futex:
    switch ((int)(e->rsi & FUTEX_CMD_MASK)) {
    case FUTEX_WAIT: case FUTEX_WAKE: case FUTEX_WAIT_BITSET: case FUTEX_WAKE_BITSET:
    case FUTEX_REQUEUE: case FUTEX_CMP_REQUEUE:
      return true;
    default: return false;
    }
  case SYS_sched_yield: return true;
  case SYS_nanosleep: return e->rsi == 0;
  case SYS_clock_nanosleep: return e->r10 == 0;
  default: return false;
  }
}

// The helper runs with the TSC trapped (as its tracees): only the coarse clock works in the vDSO.
static void mono_now(struct timespec *ts) { clock_gettime(CLOCK_MONOTONIC_COARSE, ts); }

static bool threads_started;
static volatile int ra_tick;
static void on_tick(int sig) { (void)sig; ra_tick = 1; }
static double spin_seconds = 10;

static void start_spin_timer(void) {
  if (threads_started) return;
  threads_started = true;
  const char *e = getenv("RA_SPIN_TIMEOUT");
  if (e && atof(e) > 0) spin_seconds = atof(e);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_tick;  // no SA_RESTART: waitpid returns EINTR
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = { { 0, 250000 }, { 0, 250000 } };
  setitimer(ITIMER_REAL, &it, NULL);
}

static double seconds_since(const struct timespec *a) {
  struct timespec now;
  mono_now(&now);
  return (double)(now.tv_sec - a->tv_sec) + (double)(now.tv_nsec - a->tv_nsec) / 1e9;
}

static int schedule(pid_t pid);

// After handling a stop of the running thread `t`: resume it, and when it entered a syscall that
// may block (and writes nothing), let it wait in the kernel while a sibling runs.
static int after_stop(struct thread *t, int r, int how, int sig) {
  if (r != GO_ON) return r;
  long nr = (long)t->sc.entry.orig_rax;
  bool entry = t->entry_stop && t->in_recorded_syscall;
  if (resume_thread(t, how, sig) < 0) return FAILED;
  if (t->entry_stop && (nr == SYS_exit || nr == SYS_exit_group)) {
    // The thread ends: wait for it (the kernel's clear-tid write and futex wake come first) before
    // a sibling runs. A thread group leader's end is not reported while siblings live: go on.
    bool leader = t->tid == t->pid && nr == SYS_exit && process_threads(t->pid) > 1;
    t->state = leader ? T_BLOCKED : T_EXITING;
    return leader ? schedule(t->pid) : GO_ON;
  }
  if (entry && switchable(&t->sc.entry) && process_threads(t->pid) > 1) {
    t->state = T_BLOCKED;
    return schedule(t->pid);
  }
  return GO_ON;
}

// Let `u` (HELD) run: a switch record when another thread ran last, then its pending stop.
static int run_thread(struct thread *u) {
  u->state = T_RUNNING;
  mono_now(&u->last_stop);
  if (last_ran_get(u->pid) != u->tid) {
    ev_prefix(u);
    emit(REC_SWITCH);
    last_ran_set(u->pid, u->tid);
  }
  if (!u->has_pending) return resume_thread(u, PTRACE_SYSCALL, 0) < 0 ? FAILED : GO_ON;
  u->has_pending = false;
  int how, sig;
  int r = handle_stop(u, u->pending_status, &how, &sig);
  return after_stop(u, r, how, sig);
}

// When no thread of the process runs, the HELD one that has waited longest runs.
static int schedule(pid_t pid) {
  struct thread *best = NULL;
  for (int k = 0; k < nthreads; k++) {
    struct thread *x = threads[k];
    if (x->pid != pid || x->fresh) continue;
    if (x->state == T_RUNNING || x->state == T_EXITING) return GO_ON;
    if (x->state == T_HELD && (!best || x->held_seq < best->held_seq)) best = x;
  }
  return best ? run_thread(best) : GO_ON;
}

// No PMU: a thread looping in user code cannot be preempted. Stop when the running thread has
// made no syscall for spin_seconds while a sibling waits for its turn.
static struct thread *find_spinner(void) {
  for (int k = 0; k < nthreads; k++) {
    struct thread *t = threads[k];
    if (t->state != T_RUNNING || t->fresh || seconds_since(&t->last_stop) < spin_seconds) continue;
    for (int j = 0; j < nthreads; j++)
      if (threads[j]->pid == t->pid && threads[j]->state == T_HELD && !threads[j]->fresh) return t;
  }
  return NULL;
}

// No PMU: a signal held back waits for a syscall. When one has waited spin_seconds, say so once:
// a program that busy-waits for what a handler does waits forever (a long computation is fine).
static struct thread *find_signal_waiter(void) {
  for (int k = 0; k < nthreads; k++) {
    struct thread *t = threads[k];
    if (t->nheld && !t->fresh && !t->held_warned && seconds_since(&t->held_since) >= spin_seconds) return t;
  }
  return NULL;
}

// execve from thread `x`, not the leader: the kernel killed the other threads (the non-leader ones
// report their end as an exit(0), recorded as it comes), and the leader's end is reported to no one;
// `x` takes the leader's tid and its old tid vanishes without a report. The execve event belongs to
// `x` (under its old tid), the leader's end is written here, and the exec event and everything after
// are the leader tid's: replay retires the old threads and starts the new image as the process's.
static void exec_takes_leader(struct thread *x, struct thread *leader) {
  pid_t pid = leader->tid;
  if (x->execed && x->in_recorded_syscall) {
    x->sc.result = 0;
    emit_syscall(x, true);
  }
  x->in_recorded_syscall = false;
  ev_prefix(leader);
  buf_u32(&rec, 0);  // not by a signal
  buf_u32(&rec, 0);  // status 0, as the kernel reports its non-leader threads killed by an exec
  buf_u32(&rec, 0);  // not the process's end
  emit(REC_EXIT);
  remove_thread(leader);
  x->tid = pid;
  x->sc.pid = pid;
  if (x->memfd >= 0) close(x->memfd);  // record_exec opens the new image's memory
  x->memfd = x->sc.memfd = -1;
  last_ran_set(pid, pid);
}

int tracer_run(pid_t child, int errpipe, const struct tracer_opts *o) {
  opts = o;
  struct thread *first = add_thread(child, child);
  int st;
  while (waitpid(child, &st, __WALL) < 0) if (errno != EINTR) { stream_message(REC_ERROR, "waitpid: %s", strerror(errno)); return 1; }
  if (!WIFSTOPPED(st)) {
    stream_message(REC_ERROR, "the program did not start (ptrace set-up failed)");
    return 1;
  }
  long options = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL |
                 PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE;
  if (ptrace(PTRACE_SETOPTIONS, child, 0, options) < 0) {
    stream_message(REC_ERROR, "PTRACE_SETOPTIONS: %s", strerror(errno));
    kill(child, SIGKILL);
    return 1;
  }
  if (o->pmu) {
    first->pmu_fd = pmu_attach(child, o->pmu_config);
    if (first->pmu_fd < 0) { stream_message(REC_ERROR, "perf_event_open for the tracee: %s", strerror(errno)); kill(child, SIGKILL); return 1; }
  }
  if (resume_thread(first, PTRACE_CONT, 0) < 0) { kill_all(); return 1; }
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
