// ra-recorder: the ptrace helper of `replay-anywhere record`.
//   ra-recorder [--stream-fd N] [--no-pin] [--cpuid-mask L:S:REG:HEX,...] [--no-cpuid-faulting] [--patch-sites]
//               -- PROGRAM [ARGS...]
// Runs PROGRAM (PATH lookup, the helper's own environment) under ptrace and writes the event
// stream (format in stream.c) to fd N (default 3). The program inherits stdin/stdout/stderr,
// never the stream fd. Where the CPU has CPUID faulting (and --no-cpuid-faulting is not given),
// every tracee runs with it after each exec, and its CPUID is answered from the dump with the
// --cpuid-mask bits cleared; that masked table is what the CPUID record carries. Where the CPU
// cannot trap rdtsc (PR_SET_TSC without effect) or cpuid (no faulting), those instructions are
// patched with int3 in the program's code instead (patch_sites.c); --patch-sites does that even
// where the CPU could trap them (to exercise that path anywhere).
#include "ra.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <asm/prctl.h>

volatile int ra_interrupted;
static void on_signal(int sig) { ra_interrupted = sig; }

int main(int argc, char **argv) {
  int stream_fd = 3, pin = 1, faulting = 1, force_patch = 0, i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--stream-fd") == 0 && i + 1 < argc) stream_fd = atoi(argv[++i]);
    else if (strcmp(argv[i], "--no-pin") == 0) pin = 0;
    else if (strcmp(argv[i], "--no-cpuid-faulting") == 0) faulting = 0;
    else if (strcmp(argv[i], "--patch-sites") == 0) force_patch = 1;
    else if (strcmp(argv[i], "--cpuid-mask") == 0 && i + 1 < argc) {
      if (cpuid_parse_mask(argv[++i]) < 0) { fprintf(stderr, "ra-recorder: bad --cpuid-mask %s\n", argv[i]); return 2; }
    }
    else if (strcmp(argv[i], "--") == 0) { i++; break; }
    else { fprintf(stderr, "ra-recorder: unknown option %s\n", argv[i]); return 2; }
  }
  if (i >= argc) { fprintf(stderr, "usage: ra-recorder [--stream-fd N] [--no-pin] [--cpuid-mask L:S:REG:HEX,...] [--no-cpuid-faulting] [--patch-sites] -- PROGRAM [ARGS...]\n"); return 2; }
  if (fcntl(stream_fd, F_SETFD, FD_CLOEXEC) < 0) { fprintf(stderr, "ra-recorder: stream fd %d: %s\n", stream_fd, strerror(errno)); return 2; }
  stream_init(stream_fd);

  // Tracer and tracee on one CPU: a ptrace stop that wakes the other CPU costs ~7x more here.
  int cpu = -1;
  if (pin) {
    // Not the CPU we start on: that is where the Node process reading our stream runs, and
    // sharing it with the tracer and tracee made recording several times slower.
    cpu = sched_getcpu();
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0) {
      for (int c = CPU_SETSIZE - 1; c >= 0; c--)
        if (c != cpu && CPU_ISSET(c, &allowed)) { cpu = c; break; }
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (cpu < 0 || sched_setaffinity(0, sizeof set, &set) < 0) cpu = -1;
  }

  struct tracer_opts opts = {0};
  char pmu_desc[256];
  opts.pmu = pmu_detect(pmu_desc, sizeof pmu_desc, &opts.pmu_config);
  opts.cpuid_faulting = faulting && !force_patch && cpuid_faulting_available();
  opts.patched_sites = (force_patch || !rdtsc_traps() ? SITE_RDTSC | SITE_RDTSCP : 0) | (opts.cpuid_faulting ? 0 : SITE_CPUID);
  sites_init(opts.patched_sites);
  opts.patched_sites = sites_kinds();
  struct buf b = {0};
  buf_u32(&b, (uint32_t)opts.cpuid_faulting);
  buf_u32(&b, opts.pmu);
  buf_str(&b, pmu_desc);
  buf_u32(&b, (uint32_t)cpu);
  buf_u64(&b, xcr0_read());
  buf_u32(&b, (uint32_t)opts.patched_sites);
  stream_record(REC_INFO, &b);
  cpuid_dump(&b, opts.cpuid_faulting || (opts.patched_sites & SITE_CPUID));
  stream_record(REC_CPUID, &b);
  free(b.p);
  stream_flush();

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;  // no SA_RESTART: waitpid returns EINTR and the loop stops cleanly
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  // errpipe: the child's exec errno if exec fails. gopipe: the child waits on it until the helper
  // has attached (PTRACE_SEIZE cannot be asked for by the child itself, as PTRACE_TRACEME can).
  int errpipe[2], gopipe[2];
  if (pipe2(errpipe, O_CLOEXEC) < 0 || pipe2(gopipe, O_CLOEXEC) < 0) { stream_message(REC_ERROR, "pipe: %s", strerror(errno)); return 1; }
  pid_t child = fork();
  if (child < 0) { stream_message(REC_ERROR, "fork: %s", strerror(errno)); return 1; }
  if (child == 0) {
    close(errpipe[0]);
    close(gopipe[1]);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    int e = 0;
    char go;
    // rdtsc/rdtscp raise SIGSEGV from now on (the setting survives execve).
    if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) < 0) e = errno;
    else if (read(gopipe[0], &go, 1) != 1) e = ECHILD;  // the helper attached (or is gone)
    if (e == 0) {
      execvp(argv[i], argv + i);
      e = errno;
    }
    (void)!write(errpipe[1], &e, sizeof e);
    _exit(127);
  }
  close(errpipe[1]);
  close(gopipe[0]);
  // The same TSC and CPUID trapping for the helper as for its tracees: the kernel switches both
  // on every context switch between tasks that differ (a CR4 write and an MSR write, each a VM
  // exit under a hypervisor), and tracer and tracee switch twice per syscall. The helper runs no
  // CPUID from here on and reads the TSC only through rdtsc.c, which lifts the trap around it.
  prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0);
  if (opts.cpuid_faulting) syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
  int rc = tracer_run(child, errpipe[0], gopipe[1], &opts);
  stream_flush();
  return rc;
}
