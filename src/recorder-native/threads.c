// The thread table, and (no-PMU mode) one thread of a process running user code at a time: see
// the top of tracer.c.
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
#include <sys/time.h>
#include <linux/futex.h>

struct thread **threads;
int nthreads;
static int capthreads;

struct thread *find_thread(pid_t tid) {
  for (int k = 0; k < nthreads; k++) if (threads[k]->tid == tid) return threads[k];
  return NULL;
}

struct thread *add_thread(pid_t tid, pid_t pid) {
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

void remove_thread(struct thread *t) {
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
void kill_all(void) {
  for (int k = 0; k < nthreads; k++) kill(threads[k]->tid, SIGKILL);
  int st;
  for (;;) {
    pid_t w = waitpid(-1, &st, __WALL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) break;
  }
}

int process_threads(pid_t pid) {
  int n = 0;
  for (int k = 0; k < nthreads; k++) if (threads[k]->pid == pid && !threads[k]->fresh) n++;
  return n;
}

// The thread whose user code ran last in each process: a switch record is written when another
// thread of that process runs.
static struct { pid_t pid, tid; } *last_ran;

static int nlast, caplast;

pid_t last_ran_get(pid_t pid) {
  for (int k = 0; k < nlast; k++) if (last_ran[k].pid == pid) return last_ran[k].tid;
  return pid;  // a process starts with its first thread
}

void last_ran_forget(pid_t pid) {
  for (int k = 0; k < nlast; k++) if (last_ran[k].pid == pid) { last_ran[k] = last_ran[--nlast]; return; }
}

void last_ran_set(pid_t pid, pid_t tid) {
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
bool switchable(const struct user_regs_struct *e) {
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

static bool threads_started;

volatile int ra_tick;

static void on_tick(int sig) { (void)sig; ra_tick = 1; }

double spin_seconds = 10;

void start_spin_timer(void) {
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

double seconds_since(const struct timespec *a) {
  struct timespec now;
  mono_now(&now);
  return (double)(now.tv_sec - a->tv_sec) + (double)(now.tv_nsec - a->tv_nsec) / 1e9;
}

// After handling a stop of the running thread `t`: resume it, and when it entered a syscall that
// may block (and writes nothing), let it wait in the kernel while a sibling runs.
int after_stop(struct thread *t, int r, int how, int sig) {
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
int run_thread(struct thread *u) {
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
int schedule(pid_t pid) {
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
struct thread *find_spinner(void) {
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
struct thread *find_signal_waiter(void) {
  for (int k = 0; k < nthreads; k++) {
    struct thread *t = threads[k];
    if (t->nheld && !t->fresh && !t->held_warned && seconds_since(&t->held_since) >= spin_seconds) return t;
  }
  return NULL;
}

// The helper runs with the TSC trapped (as its tracees): only the coarse clock works in the vDSO.
void mono_now(struct timespec *ts) { clock_gettime(CLOCK_MONOTONIC_COARSE, ts); }
