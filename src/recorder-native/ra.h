// replay-anywhere recorder helper: shared declarations.
#ifndef RA_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define RA_H
#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>
#include <sys/types.h>
#include <sys/user.h>

// ---- stream.c: the output stream (format documented there) ----
enum rec_type {
  REC_INFO = 1, REC_CPUID = 2, REC_EXEC = 3, REC_SYSCALL = 4, REC_RDTSC = 5, REC_SIGNAL = 6,
  REC_EXIT = 7, REC_EXEC_FAILED = 8, REC_STOPPED = 9, REC_ERROR = 10, REC_END = 11, REC_CLONE = 12, REC_SWITCH = 13,
  REC_WARNING = 14,
};
struct buf { uint8_t *p; size_t len, cap; };
void buf_reserve(struct buf *b, size_t more);
void buf_u32(struct buf *b, uint32_t v);
void buf_u64(struct buf *b, uint64_t v);
void buf_bytes(struct buf *b, const void *p, size_t n);   // u64 length + bytes
void buf_raw(struct buf *b, const void *p, size_t n);     // bytes only
void buf_str(struct buf *b, const char *s);               // u64 length + bytes (no NUL)
uint8_t *buf_grow(struct buf *b, size_t n);               // append n uninitialised bytes
void stream_init(int fd);
void stream_record(uint32_t type, struct buf *payload);   // frames, buffers; resets payload
void stream_flush(void);
bool stream_should_flush(void);
void stream_message(uint32_t type, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- mem.c: tracee memory and maps ----
struct map_entry { uint64_t start, end, offset; uint32_t prot, flags; char name[4096]; };
int mem_open(pid_t pid);                          // (re)open /proc/PID/mem; returns fd
ssize_t mem_read(int memfd, uint64_t addr, void *dst, size_t n);  // full read or -1
void mem_read_zero(int memfd, uint64_t addr, void *dst, size_t n); // unreadable pages -> zeros
int mem_write(int memfd, uint64_t addr, const void *src, size_t n);
int maps_read(pid_t pid, struct map_entry **out);  // returns count, caller frees

// ---- syscall_table.c: what each syscall wrote ----
struct sc_ctx;
typedef void (*write_fn)(struct sc_ctx *c, uint64_t addr, uint64_t len);
struct sc_ctx {
  pid_t pid;
  int memfd;
  struct user_regs_struct entry;   // registers at syscall entry
  int64_t result;
  uint64_t saved[4];               // values read at entry (in/out lengths...)
  write_fn write;                  // record [addr, addr+len) as written by the kernel
  struct buf *writes;
  uint32_t nwrites;
  char unsupported[256];           // set when the syscall cannot be recorded
  int64_t copy_from;               // kernel_output.c: input offset of a copy to stdout/stderr
  struct buf output;               // bytes copied to stdout/stderr by the kernel (has_output)
  bool has_output;
};
void sc_entry(struct sc_ctx *c);   // before the kernel runs it: save in/out values
void sc_exit(struct sc_ctx *c);    // after: record outputs or set c->unsupported
const char *syscall_name(long nr);

// ---- kernel_output.c: bytes the kernel copies to stdout/stderr from a file ----
void kernel_output_entry(struct sc_ctx *c);
int kernel_output_exit(struct sc_ctx *c, struct buf *out);  // 1 when bytes were appended to out

// ---- vdso.c ----
// Returns the number of patched entries (-1 on error); *syscall_at = address of a `syscall`
// instruction in a patched stub (0 when nothing was patched).
int vdso_patch(pid_t pid, int memfd, uint64_t *syscall_at, char *err, size_t errlen);

// ---- rdtsc.c ----
// A trapped rdtsc(p) at regs->rip (SIGSEGV under PR_SET_TSC): 1 when it was one (regs updated,
// record payload appended after EV), 0 otherwise.
int rdtsc_try_emulate(pid_t pid, int memfd, struct user_regs_struct *regs, struct buf *rec);
// Execute rdtsc (or rdtscp) for the tracee at regs->rip: same effects and payload.
int rdtsc_emulate(pid_t pid, struct user_regs_struct *regs, bool rdtscp, struct buf *rec);
bool rdtsc_traps(void);  // whether PR_SET_TSC = PR_TSC_SIGSEGV really makes rdtsc fault here

// ---- cpuid.c ----
int cpuid_parse_mask(const char *arg);   // --cpuid-mask; 0 or -1
void cpuid_dump(struct buf *b, bool masked);  // REC_CPUID payload; keeps the table for answers
int cpuid_try_emulate(pid_t pid, int memfd, struct user_regs_struct *regs);  // 1: a trapped CPUID answered
int cpuid_emulate(pid_t pid, struct user_regs_struct *regs);  // answer the CPUID at regs->rip from the table
void cpuid_vendor(char vendor[13], uint32_t *family, uint32_t *model);
int cpuid_faulting_available(void);
uint64_t xcr0_read(void);

// ---- elf_functions.c: where functions start and end in an ELF file (link-time addresses) ----
struct func_range { uint64_t lo, hi; };
struct func_ranges { struct func_range *r; size_t n, cap; };  // sorted by start; caller frees r
int elf_function_ranges(const uint8_t *img, size_t size, struct func_ranges *out);  // -1: not ELF64

// ---- patch_sites.c: instructions trapped by an int3 where the CPU cannot trap them ----
enum { SITE_RDTSC = 1, SITE_RDTSCP = 2, SITE_CPUID = 4 };
void sites_init(int kinds);            // SITE_* bits to patch (0: none)
int sites_kinds(void);
int sites_patch_range(pid_t pid, int memfd, uint64_t start, uint64_t end);  // executable file mappings in range
void sites_exec(pid_t pid, int memfd);  // a new image: forget the old sites, patch the new mappings
void sites_fork(pid_t parent, pid_t child);
void sites_forget(pid_t pid);
void sites_unmapped(pid_t pid, uint64_t start, uint64_t len);
void sites_moved(pid_t pid, uint64_t old, uint64_t len, uint64_t to);
int sites_at(pid_t pid, int memfd, uint64_t addr);  // SITE_* of our int3 at addr, 0 if none

// ---- pmu.c ----
int pmu_detect(char *desc, size_t desclen, uint64_t *config);  // 1 available, 0 not (desc = reason)
int pmu_attach(pid_t tid, uint64_t config);                    // fd or -1
uint64_t pmu_read(int fd);

// ---- tracer.c ----
struct tracer_opts { bool pmu; uint64_t pmu_config; bool cpuid_faulting; int patched_sites; };
// Attaches to `child` (waiting on `go` until written), then records until the tree is gone.
int tracer_run(pid_t child, int errpipe, int go, const struct tracer_opts *o);
extern volatile int ra_interrupted;

#endif
