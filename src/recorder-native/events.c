// Building the records of the event stream (stream.c frames them): the common prefix, kernel
// writes, mappings and the syscall record.
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
#include <sys/stat.h>

const struct tracer_opts *opts;

uint64_t held_counter;

uint64_t nevents;

struct buf rec;

struct buf writes;

void ev_prefix(struct thread *t) {
  buf_u32(&rec, (uint32_t)t->pid);
  buf_u32(&rec, (uint32_t)t->tid);
  if (t->pmu_fd >= 0) { buf_u32(&rec, 1); buf_u64(&rec, pmu_read(t->pmu_fd)); }
  else { buf_u32(&rec, 0); buf_u64(&rec, 0); }
}

void emit(uint32_t type) { stream_record(type, &rec); nevents++; }

void record_write(struct sc_ctx *c, uint64_t addr, uint64_t len) {
  if (len > (1ull << 31)) len = 1ull << 31;
  buf_u64(c->writes, addr);
  buf_u64(c->writes, len);
  mem_read_zero(c->memfd, addr, buf_grow(c->writes, len), len);
  c->nwrites++;
}

void put_mapping(struct thread *t, uint64_t start, uint64_t end, uint32_t prot, uint32_t flags,
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

// Fail the recording: tell the reader why, kill the tracee, end.
int stop_recording(pid_t pid, const char *fmt, const char *what) {
  char msg[512];
  snprintf(msg, sizeof msg, fmt, what);
  stream_message(REC_STOPPED, "%s: recording stopped at event %llu", msg, (unsigned long long)nevents);
  (void)pid;
  kill_all();
  return 1;
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

void emit_syscall(struct thread *t, bool no_return) {
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

bool may_block(long nr) {
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
