// A new program image: the exec record (path, argv, registers, auxv, every mapping with its
// contents), an exec from a thread other than the leader, and CPUID faulting switched on again.
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
#include <sys/resource.h>
#include <linux/perf_event.h>
#include <sys/ioctl.h>

void read_file(const char *path, struct buf *out) {
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

int record_exec(struct thread *t, uint64_t *syscall_at) {
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

// execve from thread `x`, not the leader: the kernel killed the other threads (the non-leader ones
// report their end as an exit(0), recorded as it comes), and the leader's end is reported to no one;
// `x` takes the leader's tid and its old tid vanishes without a report. The execve event belongs to
// `x` (under its old tid), the leader's end is written here, and the exec event and everything after
// are the leader tid's: replay retires the old threads and starts the new image as the process's.
void exec_takes_leader(struct thread *x, struct thread *leader) {
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

// execve switched CPUID faulting off: switch it on again by running arch_prctl(ARCH_SET_CPUID, 0)
// in the tracee, which is at the execve's syscall-exit stop. The injected syscall runs from
// `syscall_at` (the `syscall` of a patched vDSO stub) or, without a vDSO, from a `syscall` written
// over the two bytes at rip for the moment. Not recorded: it changes no memory and no register the
// program sees (they are restored). fork and clone children inherit the setting.
int enable_cpuid_faulting(struct thread *t, uint64_t syscall_at) {
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
