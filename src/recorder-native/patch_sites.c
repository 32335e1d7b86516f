// Instruction sites the recorder traps by patching, where the CPU cannot trap them itself: rdtsc
// and rdtscp when PR_SET_TSC has no effect (some hypervisors, PVM among them, ignore CR4.TSD for
// guest user code), cpuid without CPUID faulting (AMD). Each such instruction in an executable
// file mapping gets an int3 on its first byte; the SIGTRAP stop at site+1 is answered by the
// recorder (rdtsc.c, cpuid.c) and the thread resumes after the instruction.
//
// Sites are exact instruction starts: candidates (the byte patterns 0F 31, 0F 01 F9, 0F A2 in an
// executable segment) are kept only where decoding from the start of the function containing
// them (elf_functions.c: .eh_frame FDEs, else FUNC symbols) lands on that very instruction. Code
// outside any known function (hand-written assembly without unwind info, JIT code) is not
// patched: replay then names the rdtsc it meets that the trace lacks.
//
// The trace keeps the original bytes: mappings are read before they are patched, and replay runs
// the program's own instructions. Per process, a sorted table of the patched addresses tells the
// recorder's int3s from the program's own; fork copies it, exec and munmap drop entries, mremap
// moves them.
#include "ra.h"
#include <capstone/capstone.h>
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>

static int enabled_kinds;  // SITE_* bits to patch

struct site { uint64_t addr; uint8_t kind; };

// ---- Sites of one file, found once per recording (cached by identity) ----
struct file_sites {
  dev_t dev; ino_t ino; off_t size; struct timespec mtime;
  uint64_t *offsets;  // file offsets of the first byte of each site
  uint8_t *kinds;
  size_t n;
};
static struct file_sites *files;
static size_t nfiles, capfiles;

static csh cs;

static int kind_of_bytes(const uint8_t *p, size_t left) {
  if (left >= 2 && p[0] == 0x0f && p[1] == 0x31) return SITE_RDTSC;
  if (left >= 3 && p[0] == 0x0f && p[1] == 0x01 && p[2] == 0xf9) return SITE_RDTSCP;
  if (left >= 2 && p[0] == 0x0f && p[1] == 0xa2) return SITE_CPUID;
  return 0;
}

static int kind_of_insn(unsigned id) {
  switch (id) {
  case X86_INS_RDTSC: return SITE_RDTSC;
  case X86_INS_RDTSCP: return SITE_RDTSCP;
  case X86_INS_CPUID: return SITE_CPUID;
  default: return 0;
  }
}

static void push_site(struct file_sites *f, size_t *cap, uint64_t off, int kind) {
  if (f->n == *cap) {
    *cap = *cap ? *cap * 2 : 16;
    f->offsets = realloc(f->offsets, sizeof *f->offsets * *cap);
    f->kinds = realloc(f->kinds, *cap);
    if (!f->offsets || !f->kinds) { fprintf(stderr, "ra-recorder: out of memory\n"); _exit(70); }
  }
  f->offsets[f->n] = off;
  f->kinds[f->n] = (uint8_t)kind;
  f->n++;
}

// Whether decoding from `lo` (link-time address, bytes at `code`) reaches an instruction that
// starts exactly at `at` and is of `kind`.
static bool decodes_to(const uint8_t *code, uint64_t lo, uint64_t hi, uint64_t at, int kind, cs_insn *insn) {
  const uint8_t *p = code;
  size_t left = (size_t)(hi - lo);
  uint64_t pc = lo;
  while (pc < at && left > 0) {
    if (!cs_disasm_iter(cs, &p, &left, &pc, insn)) return false;  // not code as we know it
  }
  if (pc != at || left == 0 || !cs_disasm_iter(cs, &p, &left, &pc, insn)) return false;
  return insn->address == at && kind_of_insn(insn->id) == kind;
}

static void scan_image(const uint8_t *img, size_t size, struct file_sites *f) {
  struct func_ranges fr;
  if (elf_function_ranges(img, size, &fr) < 0 || fr.n == 0) { free(fr.r); return; }
  const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
  const Elf64_Phdr *ph = (const Elf64_Phdr *)(img + eh->e_phoff);
  cs_insn *insn = cs_malloc(cs);
  size_t cap = 0;
  for (int i = 0; i < eh->e_phnum; i++) {
    if (ph[i].p_type != PT_LOAD || !(ph[i].p_flags & PF_X)) continue;
    if (ph[i].p_offset > size || ph[i].p_filesz > size - ph[i].p_offset) continue;
    const uint8_t *seg = img + ph[i].p_offset, *end = seg + ph[i].p_filesz;
    for (const uint8_t *p = seg; (p = memchr(p, 0x0f, (size_t)(end - p))) != NULL; p++) {
      int kind = kind_of_bytes(p, (size_t)(end - p));
      if (!(kind & enabled_kinds)) continue;
      uint64_t at = ph[i].p_vaddr + (uint64_t)(p - seg);
      // The functions containing `at`, nearest start first (ranges are sorted by start).
      size_t lo = 0, hi = fr.n;
      while (lo < hi) { size_t mid = (lo + hi) / 2; if (fr.r[mid].lo <= at) lo = mid + 1; else hi = mid; }
      for (size_t k = lo, tried = 0; k-- > 0 && tried < 4;) {
        const struct func_range *r = &fr.r[k];
        if (r->hi <= at) continue;
        tried++;
        uint64_t start_off = ph[i].p_offset + (r->lo - ph[i].p_vaddr);
        uint64_t end_vaddr = r->hi < ph[i].p_vaddr + ph[i].p_filesz ? r->hi : ph[i].p_vaddr + ph[i].p_filesz;
        if (r->lo < ph[i].p_vaddr || start_off >= size) continue;
        if (decodes_to(img + start_off, r->lo, end_vaddr, at, kind, insn)) {
          push_site(f, &cap, ph[i].p_offset + (uint64_t)(p - seg), kind);
          break;
        }
      }
    }
  }
  cs_free(insn, 1);
  free(fr.r);
}

// The sites of the file open as `fd` (cached by dev, inode, size and mtime).
static struct file_sites *sites_of_file(int fd) {
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) return NULL;
  for (size_t k = 0; k < nfiles; k++) {
    struct file_sites *f = &files[k];
    if (f->dev == st.st_dev && f->ino == st.st_ino && f->size == st.st_size &&
        f->mtime.tv_sec == st.st_mtim.tv_sec && f->mtime.tv_nsec == st.st_mtim.tv_nsec) return f;
  }
  if (nfiles == capfiles) {
    capfiles = capfiles ? capfiles * 2 : 32;
    files = realloc(files, sizeof *files * capfiles);
    if (!files) { fprintf(stderr, "ra-recorder: out of memory\n"); _exit(70); }
  }
  struct file_sites *f = &files[nfiles++];
  memset(f, 0, sizeof *f);
  f->dev = st.st_dev; f->ino = st.st_ino; f->size = st.st_size; f->mtime = st.st_mtim;
  if (st.st_size > 0) {
    void *img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (img != MAP_FAILED) {
      scan_image(img, (size_t)st.st_size, f);
      munmap(img, (size_t)st.st_size);
    }
  }
  return f;
}

// ---- Patched sites of each process ----
struct proc_sites { pid_t pid; struct site *v; size_t n, cap; };
static struct proc_sites *procs;
static size_t nprocs, capprocs;

static struct proc_sites *proc_of(pid_t pid, bool create) {
  for (size_t k = 0; k < nprocs; k++) if (procs[k].pid == pid) return &procs[k];
  if (!create) return NULL;
  if (nprocs == capprocs) {
    capprocs = capprocs ? capprocs * 2 : 16;
    procs = realloc(procs, sizeof *procs * capprocs);
    if (!procs) { fprintf(stderr, "ra-recorder: out of memory\n"); _exit(70); }
  }
  struct proc_sites *p = &procs[nprocs++];
  memset(p, 0, sizeof *p);
  p->pid = pid;
  return p;
}

static size_t lower_bound(const struct proc_sites *p, uint64_t addr) {
  size_t lo = 0, hi = p->n;
  while (lo < hi) { size_t mid = (lo + hi) / 2; if (p->v[mid].addr < addr) lo = mid + 1; else hi = mid; }
  return lo;
}

static void insert_site(struct proc_sites *p, uint64_t addr, int kind) {
  size_t at = lower_bound(p, addr);
  if (at < p->n && p->v[at].addr == addr) { p->v[at].kind = (uint8_t)kind; return; }
  if (p->n == p->cap) {
    p->cap = p->cap ? p->cap * 2 : 64;
    p->v = realloc(p->v, sizeof *p->v * p->cap);
    if (!p->v) { fprintf(stderr, "ra-recorder: out of memory\n"); _exit(70); }
  }
  memmove(&p->v[at + 1], &p->v[at], sizeof *p->v * (p->n - at));
  p->v[at] = (struct site){ addr, (uint8_t)kind };
  p->n++;
}

void sites_init(int kinds) {
  enabled_kinds = kinds;
  if (kinds && !cs && cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK) {
    fprintf(stderr, "ra-recorder: capstone: cannot open the x86-64 decoder\n");
    enabled_kinds = 0;
  }
}

int sites_kinds(void) { return enabled_kinds; }

// Patch the sites of one file mapping [start, end) at file offset `offset`.
static int patch_mapping(struct proc_sites *p, pid_t pid, int memfd, const struct map_entry *m) {
  char link[96];
  snprintf(link, sizeof link, "/proc/%d/map_files/%llx-%llx", pid, (unsigned long long)m->start, (unsigned long long)m->end);
  int fd = open(link, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && m->name[0] == '/') fd = open(m->name, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct file_sites *f = sites_of_file(fd);
  close(fd);
  if (!f) return 0;
  int patched = 0;
  for (size_t k = 0; k < f->n; k++) {
    uint64_t off = f->offsets[k];
    if (off < m->offset || off - m->offset >= m->end - m->start) continue;
    uint64_t addr = m->start + (off - m->offset);
    uint8_t now[3];
    // Only where memory still holds the instruction (not patched already, not changed since).
    if (mem_read(memfd, addr, now, 3) != 3 || kind_of_bytes(now, 3) != f->kinds[k]) continue;
    uint8_t int3 = 0xcc;
    if (mem_write(memfd, addr, &int3, 1) < 0) continue;
    insert_site(p, addr, f->kinds[k]);
    patched++;
  }
  return patched;
}

int sites_patch_range(pid_t pid, int memfd, uint64_t start, uint64_t end) {
  if (!enabled_kinds) return 0;
  struct map_entry *maps;
  int n = maps_read(pid, &maps);
  if (n < 0) return -1;
  struct proc_sites *p = proc_of(pid, true);
  int patched = 0;
  for (int k = 0; k < n; k++) {
    const struct map_entry *m = &maps[k];
    if (!(m->prot & PROT_EXEC) || m->end <= start || m->start >= end) continue;
    if (m->name[0] != '/') continue;  // file mappings only ([vdso] is patched into syscalls)
    patched += patch_mapping(p, pid, memfd, m);
  }
  free(maps);
  return patched;
}

void sites_forget(pid_t pid) {
  struct proc_sites *p = proc_of(pid, false);
  if (!p) return;
  free(p->v);
  *p = procs[--nprocs];
}

void sites_exec(pid_t pid, int memfd) {
  sites_forget(pid);
  sites_patch_range(pid, memfd, 0, UINT64_MAX);
}

void sites_fork(pid_t parent, pid_t child) {
  struct proc_sites *p = proc_of(parent, false);
  if (!p || p->n == 0) return;
  sites_forget(child);
  size_t n = p->n;
  struct site *copy = malloc(sizeof *copy * n);
  if (!copy) { fprintf(stderr, "ra-recorder: out of memory\n"); _exit(70); }
  memcpy(copy, p->v, sizeof *copy * n);  // (p may move when the child's entry is added)
  struct proc_sites *c = proc_of(child, true);
  c->v = copy;
  c->n = c->cap = n;
}

void sites_unmapped(pid_t pid, uint64_t start, uint64_t len) {
  struct proc_sites *p = proc_of(pid, false);
  if (!p) return;
  size_t a = lower_bound(p, start), b = lower_bound(p, start + len < start ? UINT64_MAX : start + len);
  memmove(&p->v[a], &p->v[b], sizeof *p->v * (p->n - b));
  p->n -= b - a;
}

void sites_moved(pid_t pid, uint64_t old, uint64_t len, uint64_t to) {
  struct proc_sites *p = proc_of(pid, false);
  if (!p || old == to) return;
  size_t a = lower_bound(p, old), b = lower_bound(p, old + len);
  size_t n = b - a;
  if (n == 0) return;
  struct site *moved = malloc(sizeof *moved * n);
  if (!moved) { fprintf(stderr, "ra-recorder: out of memory\n"); _exit(70); }
  memcpy(moved, &p->v[a], sizeof *moved * n);
  sites_unmapped(pid, old, len);
  sites_unmapped(pid, to, len);
  for (size_t k = 0; k < n; k++) insert_site(p, moved[k].addr - old + to, moved[k].kind);
  free(moved);
}

int sites_at(pid_t pid, int memfd, uint64_t addr) {
  struct proc_sites *p = proc_of(pid, false);
  if (!p) return 0;
  size_t at = lower_bound(p, addr);
  if (at >= p->n || p->v[at].addr != addr) return 0;
  uint8_t b;
  if (mem_read(memfd, addr, &b, 1) != 1 || b != 0xcc) return 0;  // the program wrote over it
  return p->v[at].kind;
}
