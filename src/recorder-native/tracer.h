// The ptrace loop's shared state (tracer.c and the files it is split into): one `struct thread`
// per traced thread, the current record being built, and the functions each part offers.
#ifndef TRACER_H
#define TRACER_H
#include "ra.h"
#include <signal.h>
#include <time.h>

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


// How a stop was handled (handle_stop and the functions it calls).
enum { GO_ON = 0, NO_RESUME = 1, FAILED = -1, STOPPED = -2 };
// Where replay delivers a signal (the signal event's placement field).
enum { PLACE_BOUNDARY = 0, PLACE_BEFORE_SYSCALL = 1, PLACE_USER_CODE = 2 };

// ---- events.c: building and writing records ----
extern const struct tracer_opts *opts;
extern uint64_t nevents;
extern uint64_t held_counter;
extern struct buf rec;     // the record being built
extern struct buf writes;  // the kernel writes of the syscall being recorded
void ev_prefix(struct thread *t);
void emit(uint32_t type);
void record_write(struct sc_ctx *c, uint64_t addr, uint64_t len);
void put_mapping(struct thread *t, uint64_t start, uint64_t end, uint32_t prot, uint32_t flags,
                 uint64_t offset, const char *name, bool with_data);
int stop_recording(pid_t pid, const char *fmt, const char *what);
void emit_syscall(struct thread *t, bool no_return);
bool may_block(long nr);

// ---- threads.c: the thread table and one-thread-at-a-time scheduling ----
extern struct thread **threads;
extern int nthreads;
struct thread *find_thread(pid_t tid);
struct thread *add_thread(pid_t tid, pid_t pid);
void remove_thread(struct thread *t);
void kill_all(void);
int process_threads(pid_t pid);
pid_t last_ran_get(pid_t pid);
void last_ran_forget(pid_t pid);
void last_ran_set(pid_t pid, pid_t tid);
bool switchable(const struct user_regs_struct *e);
extern volatile int ra_tick;
extern double spin_seconds;
void mono_now(struct timespec *ts);
void start_spin_timer(void);
double seconds_since(const struct timespec *a);
int after_stop(struct thread *t, int r, int how, int sig);
int run_thread(struct thread *u);
int schedule(pid_t pid);
struct thread *find_spinner(void);
struct thread *find_signal_waiter(void);

// ---- signals.c ----
bool sig_in_mask(pid_t pid, const char *field, int sig);
bool hold_signal(struct thread *t, int sig, const siginfo_t *si);
void resend_held(struct thread *t);
void restore_siginfo(struct thread *t, int sig, siginfo_t *si);
bool is_sync(int sig, const siginfo_t *si);
int deliver_signal(struct thread *t, int sig, const siginfo_t *si, struct user_regs_struct *regs, uint32_t placement, int *resume_sig);

// ---- clone.c: new processes and threads ----
uint64_t creation_flags(struct thread *t, const struct user_regs_struct *entry, uint64_t *child_tid);
int on_new_child(struct thread *t, pid_t child);

// ---- exec.c ----
void read_file(const char *path, struct buf *out);
int record_exec(struct thread *t, uint64_t *syscall_at);
void exec_takes_leader(struct thread *x, struct thread *leader);
int enable_cpuid_faulting(struct thread *t, uint64_t syscall_at);

// ---- tracer.c ----
int resume_thread(struct thread *t, int how, int sig);
int handle_stop(struct thread *t, int st, int *how, int *sig);

#endif
