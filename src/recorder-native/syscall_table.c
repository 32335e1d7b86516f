// What each x86-64 syscall writes into user memory (rr's syscalls.py is the model): at exit the
// recorder stores exactly those ranges, read back from the tracee. A syscall that is not in this
// table stops the recording with a message naming it: it is never dropped silently, and never
// recorded with guessed outputs. Syscalls with no user-memory output are listed explicitly too.
//
// Recording a range that the kernel did not in fact write (e.g. nanosleep's `rem` when it was not
// interrupted) is harmless: the bytes are what memory holds anyway. Missing one is not.
#include "ra.h"
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <sys/socket.h>
#include <termios.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <asm/prctl.h>
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x1000
#endif

static const char *const names[] = {
#include "syscall_names.h"
};

const char *syscall_name(long nr) {
  if (nr >= 0 && (size_t)nr < sizeof names / sizeof *names && names[nr]) return names[nr];
  return "?";
}

#define A0 (c->entry.rdi)
#define A1 (c->entry.rsi)
#define A2 (c->entry.rdx)
#define A3 (c->entry.r10)
#define A4 (c->entry.r8)
#define A5 (c->entry.r9)
#define W(addr, len) do { if ((addr) != 0 && (len) > 0) c->write(c, (addr), (len)); } while (0)

static uint32_t rd32(struct sc_ctx *c, uint64_t addr) {
  uint32_t v = 0;
  if (addr) mem_read(c->memfd, addr, &v, 4);
  return v;
}

// Spread `total` bytes over an iovec array in the tracee.
static void write_iovecs(struct sc_ctx *c, uint64_t iov, uint64_t iovcnt, uint64_t total) {
  for (uint64_t i = 0; i < iovcnt && total > 0; i++) {
    struct iovec v;
    if (mem_read(c->memfd, iov + i * sizeof v, &v, sizeof v) != sizeof v) break;
    uint64_t n = v.iov_len < total ? v.iov_len : total;
    W((uint64_t)v.iov_base, n);
    total -= n;
  }
}

static void unsupported(struct sc_ctx *c, const char *what) {
  long nr = (long)c->entry.orig_rax;
  snprintf(c->unsupported, sizeof c->unsupported, "syscall %ld (%s)%s%s is not supported by the recorder yet",
           nr, syscall_name(nr), what ? " " : "", what ? what : "");
}

void sc_entry(struct sc_ctx *c) {
  kernel_output_entry(c);
  switch (c->entry.orig_rax) {
  case SYS_accept: case SYS_accept4: case SYS_getsockname: case SYS_getpeername:
    c->saved[0] = rd32(c, A2); break;
  case SYS_getsockopt: c->saved[0] = rd32(c, A4); break;
  case SYS_recvfrom: c->saved[0] = rd32(c, A5); break;
  case SYS_recvmsg: c->saved[0] = rd32(c, A1 + 8); break;  // msg_namelen in
  default: break;
  }
}

void sc_exit(struct sc_ctx *c) {
  int64_t r = c->result;
  bool ok = r >= 0;
  c->unsupported[0] = 0;
  c->output.len = 0;
  c->has_output = kernel_output_exit(c, &c->output);
  switch (c->entry.orig_rax) {
  // ---- no user-memory output ----
  case SYS_write: case SYS_pwrite64: case SYS_writev: case SYS_pwritev: case SYS_pwritev2:
  case SYS_open: case SYS_openat: case SYS_openat2: case SYS_creat: case SYS_close: case SYS_close_range:
  case SYS_lseek: case SYS_mmap: case SYS_munmap: case SYS_mprotect: case SYS_mremap: case SYS_brk:
  case SYS_madvise: case SYS_msync: case SYS_mlock: case SYS_munlock: case SYS_mlockall: case SYS_munlockall:
  case SYS_access: case SYS_faccessat: case SYS_faccessat2: case SYS_dup: case SYS_dup2: case SYS_dup3:
  case SYS_getpid: case SYS_getppid: case SYS_gettid: case SYS_getuid: case SYS_geteuid: case SYS_getgid:
  case SYS_getegid: case SYS_getpgrp: case SYS_getpgid: case SYS_getsid: case SYS_setsid: case SYS_setpgid:
  case SYS_setuid: case SYS_setgid: case SYS_setreuid: case SYS_setregid: case SYS_setresuid: case SYS_setresgid:
  case SYS_setfsuid: case SYS_setfsgid: case SYS_setgroups: case SYS_umask:
  case SYS_socket: case SYS_connect: case SYS_bind: case SYS_listen: case SYS_shutdown: case SYS_setsockopt:
  case SYS_sendto: case SYS_sendmsg:
  case SYS_exit: case SYS_exit_group: case SYS_kill: case SYS_tkill: case SYS_tgkill:
  case SYS_fsync: case SYS_fdatasync: case SYS_sync: case SYS_syncfs: case SYS_truncate: case SYS_ftruncate:
  case SYS_fallocate: case SYS_fadvise64: case SYS_flock: case SYS_readahead:
  case SYS_chdir: case SYS_fchdir: case SYS_rename: case SYS_renameat: case SYS_renameat2:
  case SYS_mkdir: case SYS_mkdirat: case SYS_rmdir: case SYS_unlink: case SYS_unlinkat: case SYS_link:
  case SYS_linkat: case SYS_symlink: case SYS_symlinkat: case SYS_chmod: case SYS_fchmod: case SYS_fchmodat:
  case SYS_chown: case SYS_fchown: case SYS_lchown: case SYS_fchownat: case SYS_utime: case SYS_utimes:
  case SYS_utimensat: case SYS_futimesat: case SYS_mknod: case SYS_mknodat:
  case SYS_alarm: case SYS_pause: case SYS_sched_yield: case SYS_set_tid_address: case SYS_set_robust_list:
  case SYS_setrlimit: case SYS_sched_setaffinity: case SYS_sched_getscheduler: case SYS_sched_setscheduler:
  case SYS_sched_get_priority_max: case SYS_sched_get_priority_min: case SYS_getpriority: case SYS_setpriority:
  case SYS_eventfd: case SYS_eventfd2: case SYS_epoll_create: case SYS_epoll_create1: case SYS_epoll_ctl:
  case SYS_timerfd_create: case SYS_signalfd: case SYS_signalfd4: case SYS_inotify_init: case SYS_inotify_init1:
  case SYS_inotify_add_watch: case SYS_inotify_rm_watch: case SYS_memfd_create: case SYS_pidfd_open:
  case SYS_membarrier: case SYS_personality: case SYS_rt_sigreturn: case SYS_rt_sigsuspend:
  case SYS_restart_syscall: case SYS_tee: case SYS_rt_sigqueueinfo: case SYS_rt_tgsigqueueinfo:
  case SYS_ioprio_get: case SYS_ioprio_set: case SYS_sethostname: case SYS_setdomainname:
  case SYS_execve: case SYS_execveat: case SYS_rseq:
    break;

  // ---- buffers filled up to the result ----
  case SYS_read: case SYS_pread64: if (ok) W(A1, (uint64_t)r); break;
  case SYS_readv: case SYS_preadv: case SYS_preadv2: if (ok) write_iovecs(c, A1, A2, (uint64_t)r); break;
  case SYS_getdents: case SYS_getdents64: if (ok) W(A1, (uint64_t)r); break;
  case SYS_readlink: if (ok) W(A1, (uint64_t)r); break;
  case SYS_readlinkat: if (ok) W(A2, (uint64_t)r); break;
  case SYS_getcwd: if (ok) W(A0, (uint64_t)r); break;
  case SYS_getrandom: if (ok) W(A0, (uint64_t)r); break;
  case SYS_sched_getaffinity: if (ok) W(A2, (uint64_t)r); break;
  case SYS_getgroups: if (ok && A0 > 0) W(A1, (uint64_t)r * 4); break;
  case SYS_getxattr: case SYS_lgetxattr: case SYS_fgetxattr: if (ok && A3) W(A2, (uint64_t)r); break;
  case SYS_listxattr: case SYS_llistxattr: case SYS_flistxattr: if (ok && A2) W(A1, (uint64_t)r); break;

  // ---- fixed-size structures ----
  case SYS_stat: case SYS_fstat: case SYS_lstat: if (ok) W(A1, 144); break;
  case SYS_newfstatat: if (ok) W(A2, 144); break;
  case SYS_statx: if (ok) W(A4, 256); break;
  case SYS_statfs: case SYS_fstatfs: if (ok) W(A1, 120); break;
  case SYS_uname: if (ok) W(A0, 390); break;
  case SYS_sysinfo: if (ok) W(A0, 112); break;
  case SYS_times: if (ok) W(A0, 32); break;
  case SYS_getrusage: if (ok) W(A1, 144); break;
  case SYS_clock_gettime: case SYS_clock_getres: if (ok) W(A1, 16); break;
  case SYS_gettimeofday: if (ok) { W(A0, 16); W(A1, 8); } break;
  case SYS_time: if (ok) W(A0, 8); break;
  case SYS_getcpu: if (ok) { W(A0, 4); W(A1, 4); } break;
  case SYS_nanosleep: W(A1, 16); break;
  case SYS_clock_nanosleep: W(A3, 16); break;
  case SYS_pipe: case SYS_pipe2: if (ok) W(A0, 8); break;
  case SYS_socketpair: if (ok) W(A3, 8); break;
  case SYS_wait4: if (ok) { W(A1, 4); W(A3, 144); } break;
  case SYS_waitid: if (ok) { W(A2, 128); W(A4, 144); } break;
  case SYS_rt_sigaction: if (ok) W(A2, 32); break;
  case SYS_rt_sigprocmask: if (ok) W(A2, A3 <= 128 ? A3 : 128); break;
  case SYS_rt_sigpending: if (ok) W(A0, A1 <= 128 ? A1 : 128); break;
  case SYS_rt_sigtimedwait: if (ok) W(A1, 128); break;
  case SYS_sigaltstack: if (ok) W(A1, 24); break;
  case SYS_getrlimit: if (ok) W(A1, 16); break;
  case SYS_prlimit64: if (ok) W(A3, 16); break;
  case SYS_getresuid: case SYS_getresgid: if (ok) { W(A0, 4); W(A1, 4); W(A2, 4); } break;
  case SYS_getitimer: if (ok) W(A1, 32); break;
  case SYS_setitimer: if (ok) W(A2, 32); break;
  case SYS_timerfd_settime: if (ok) W(A3, 32); break;
  case SYS_timerfd_gettime: if (ok) W(A1, 32); break;
  case SYS_sched_getparam: if (ok) W(A1, 4); break;
  case SYS_sched_rr_get_interval: if (ok) W(A1, 16); break;
  case SYS_capget:
    W(A0, 8);  // the kernel writes the preferred version back on a version mismatch
    if (ok && A1) W(A1, rd32(c, A0) == _LINUX_CAPABILITY_VERSION_1 ? 12 : 24);
    break;
  case SYS_mincore: if (ok) W(A2, (A1 + 4095) / 4096); break;
  case SYS_sendfile: if (ok) W(A2, 8); break;
  case SYS_copy_file_range: if (ok) { W(A1, 8); W(A3, 8); } break;
  case SYS_splice: if (ok) { W(A1, 8); W(A3, 8); } break;

  // ---- in/out lengths ----
  case SYS_accept: case SYS_accept4: case SYS_getsockname: case SYS_getpeername:
    if (ok && A1 && A2) {
      uint32_t out = rd32(c, A2);
      W(A1, out < c->saved[0] ? out : c->saved[0]);
      W(A2, 4);
    }
    break;
  case SYS_getsockopt:
    if (ok && A3 && A4) {
      uint32_t out = rd32(c, A4);
      W(A3, out < c->saved[0] ? out : c->saved[0]);
      W(A4, 4);
    }
    break;
  case SYS_recvfrom:
    if (ok) {
      W(A1, (uint64_t)r);
      if (A4 && A5) {
        uint32_t out = rd32(c, A5);
        W(A4, out < c->saved[0] ? out : c->saved[0]);
        W(A5, 4);
      }
    }
    break;
  case SYS_recvmsg:
    if (ok) {
      struct msghdr m;
      if (mem_read(c->memfd, A1, &m, sizeof m) != sizeof m) { unsupported(c, "(unreadable msghdr)"); break; }
      W(A1, sizeof m);  // msg_namelen, msg_controllen, msg_flags are written
      if (m.msg_name) W((uint64_t)m.msg_name, m.msg_namelen < c->saved[0] ? m.msg_namelen : c->saved[0]);
      if (m.msg_control) W((uint64_t)m.msg_control, m.msg_controllen);
      write_iovecs(c, (uint64_t)m.msg_iov, m.msg_iovlen, (uint64_t)r);
    }
    break;

  // ---- event waits ----
  case SYS_poll: if (ok) W(A0, A1 * 8); break;
  case SYS_ppoll: if (ok || r == -EINTR) { W(A0, A1 * 8); W(A2, 16); } break;
  case SYS_select: case SYS_pselect6: {
    uint64_t setlen = ((A0 + 63) / 64) * 8;
    W(A1, setlen); W(A2, setlen); W(A3, setlen);
    W(A4, 16);
    break;
  }
  case SYS_epoll_wait: case SYS_epoll_pwait: if (r > 0) W(A1, (uint64_t)r * 12); break;

  // ---- multiplexed calls: per command ----
  case SYS_ioctl:
    switch (A1) {
    case TCGETS: if (ok) W(A2, 36); break;   // struct termios (kernel layout, 36 bytes)
    case TIOCGWINSZ: if (ok) W(A2, 8); break;
    case FIONREAD: case TIOCGPGRP: case TIOCGSID: case TIOCOUTQ: if (ok) W(A2, 4); break;
    case TCSETS: case TCSETSW: case TCSETSF: case TIOCSWINSZ: case TIOCSPGRP: case FIOCLEX: case FIONCLEX:
    case FIONBIO: case FIOASYNC: case TCFLSH: case TCXONC: case TCSBRK:
      break;
    default:
      if (r == -ENOTTY || r == -EINVAL || r == -EBADF) break;  // failed: wrote nothing
      { char w[64]; snprintf(w, sizeof w, "with request 0x%llx", (unsigned long long)A1); unsupported(c, w); }
    }
    break;
  case SYS_fcntl:
    switch (A1) {
    case F_GETLK: case F_OFD_GETLK: if (ok) W(A2, 32); break;  // struct flock
    case F_GETOWN_EX: if (ok) W(A2, 8); break;
    default: break;  // the others take and return integers
    }
    break;
  case SYS_arch_prctl:
    switch (A0) {
    case ARCH_GET_FS: case ARCH_GET_GS: if (ok) W(A1, 8); break;
    case ARCH_SET_FS: case ARCH_SET_GS: case ARCH_GET_CPUID: case ARCH_SET_CPUID: break;
    case 0x3001: if (ok) W(A1, 24); break;  // ARCH_CET_STATUS (glibc 2.36 asks; old kernels say EINVAL)
    default:
      if (r == -EINVAL) break;
      { char w[64]; snprintf(w, sizeof w, "with code 0x%llx", (unsigned long long)A0); unsupported(c, w); }
    }
    break;
  case SYS_prctl:
    switch (A0) {
    case PR_GET_NAME: if (ok) W(A1, 16); break;
    case PR_GET_PDEATHSIG: case PR_GET_TID_ADDRESS: if (ok) W(A1, A0 == PR_GET_TID_ADDRESS ? 8 : 4); break;
    case PR_SET_NAME: case PR_SET_PDEATHSIG: case PR_GET_DUMPABLE: case PR_SET_DUMPABLE: case PR_GET_KEEPCAPS:
    case PR_SET_KEEPCAPS: case PR_SET_NO_NEW_PRIVS: case PR_GET_NO_NEW_PRIVS: case PR_SET_VMA:
    case PR_CAPBSET_READ: case PR_GET_TIMERSLACK: case PR_SET_TIMERSLACK: case PR_SET_CHILD_SUBREAPER:
    case PR_GET_CHILD_SUBREAPER: case PR_CAP_AMBIENT: case PR_GET_SECUREBITS: case PR_GET_THP_DISABLE:
    case PR_SET_THP_DISABLE:
      break;
    case PR_SET_TSC: case PR_GET_TSC: case PR_SET_SECCOMP: case PR_SET_MM:
    default:
      if (r == -EINVAL) break;
      { char w[64]; snprintf(w, sizeof w, "with option %llu", (unsigned long long)A0); unsupported(c, w); }
    }
    break;
  // Process creation: the child and its first registers are a clone record of their own (tracer.c).
  case SYS_fork: case SYS_vfork: break;
  case SYS_clone:  // clone(flags, stack, parent_tid, child_tid, tls)
    if (ok && (A0 & (CLONE_PARENT_SETTID | CLONE_PIDFD))) W(A2, 4);
    break;
  case SYS_clone3:
    if (ok) {
      uint64_t args[4] = {0};  // flags, pidfd, child_tid, parent_tid
      if (A1 >= 32 && mem_read(c->memfd, A0, args, sizeof args) == sizeof args) {
        if (args[0] & CLONE_PIDFD) W(args[1], 4);
        if (args[0] & CLONE_PARENT_SETTID) W(args[3], 4);
      }
    }
    break;
  case SYS_futex: {
    int op = (int)(A1 & FUTEX_CMD_MASK);
    switch (op) {
    case FUTEX_WAIT: case FUTEX_WAKE: case FUTEX_WAIT_BITSET: case FUTEX_WAKE_BITSET: case FUTEX_REQUEUE:
    case FUTEX_CMP_REQUEUE:
      break;
    case FUTEX_WAKE_OP: if (ok) W(A4, 4); break;       // the kernel modifies *uaddr2
    case FUTEX_LOCK_PI: case FUTEX_UNLOCK_PI: case FUTEX_TRYLOCK_PI: case FUTEX_WAIT_REQUEUE_PI:
    case FUTEX_CMP_REQUEUE_PI: case FUTEX_LOCK_PI2:
      W(A0, 4); if (op == FUTEX_WAIT_REQUEUE_PI || op == FUTEX_CMP_REQUEUE_PI) W(A4, 4); break;
    default: unsupported(c, "(futex op)");
    }
    break;
  }

  default:
    unsupported(c, NULL);
  }
}
