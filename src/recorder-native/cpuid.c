// CPUID: dump every leaf and subleaf a program could ask on this machine (the trace header keeps
// them; replay answers CPUID from them), probe CPUID faulting, and, where it is used, answer the
// tracee's trapped CPUID from the same table with the masked feature bits cleared.
#include "ra.h"
#include <cpuid.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <asm/prctl.h>

// The table the program sees (the dump, masked when CPUID faulting is in use).
struct leaf { uint32_t leaf, sub, r[4]; };
static struct leaf *table;
static uint32_t ntable, captable;

// Bits to clear: --cpuid-mask leaf:subleaf:reg:hexmask,... (hex numbers, reg eax|ebx|ecx|edx).
struct mask { uint32_t leaf, sub, reg, bits; };
static struct mask masks[64];
static int nmasks;

int cpuid_parse_mask(const char *arg) {
  static const char *regs[4] = { "eax", "ebx", "ecx", "edx" };
  const char *p = arg;
  while (*p) {
    if (nmasks == (int)(sizeof masks / sizeof *masks)) return -1;
    char reg[4] = "";
    unsigned leaf, sub, bits;
    int used = 0;
    if (sscanf(p, "%x:%x:%3[a-z]:%x%n", &leaf, &sub, reg, &bits, &used) != 4 || used == 0) return -1;
    int r = -1;
    for (int k = 0; k < 4; k++) if (strcmp(reg, regs[k]) == 0) r = k;
    if (r < 0) return -1;
    masks[nmasks++] = (struct mask){ leaf, sub, (uint32_t)r, bits };
    p += used;
    if (*p == ',') p++;
    else if (*p) return -1;
  }
  return 0;
}

static void q(uint32_t leaf, uint32_t sub, uint32_t r[4]) { __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]); }

static void put(struct buf *b, uint32_t *n, uint32_t leaf, uint32_t sub, const uint32_t r[4], bool masked) {
  uint32_t v[4] = { r[0], r[1], r[2], r[3] };
  if (masked)
    for (int k = 0; k < nmasks; k++)
      if (masks[k].leaf == leaf && masks[k].sub == sub) v[masks[k].reg] &= ~masks[k].bits;
  buf_u32(b, leaf); buf_u32(b, sub);
  for (int i = 0; i < 4; i++) buf_u32(b, v[i]);
  (*n)++;
  if (ntable == captable) {
    captable = captable ? captable * 2 : 256;
    table = realloc(table, sizeof *table * captable);
    if (!table) { fprintf(stderr, "ra-recorder: out of memory\n"); _exit(70); }
  }
  table[ntable++] = (struct leaf){ leaf, sub, { v[0], v[1], v[2], v[3] } };
}

// How many subleaves of `leaf` exist (the last one included), by the leaf's own rule.
static uint32_t subleaves(uint32_t leaf) {
  uint32_t r[4];
  q(leaf, 0, r);
  switch (leaf) {
  case 4: case 0x8000001D: {          // cache descriptors until type == 0
    uint32_t s = 0;
    while (s < 64) { q(leaf, s, r); if ((r[0] & 0x1f) == 0) break; s++; }
    return s + 1;
  }
  case 0xB: case 0x1F: {              // topology levels until level type == 0
    uint32_t s = 0;
    while (s < 64) { q(leaf, s, r); if (((r[2] >> 8) & 0xff) == 0) break; s++; }
    return s + 1;
  }
  case 7: case 0x14: case 0x17: case 0x18: case 0x1D:  // eax of subleaf 0 = max subleaf
    return (r[0] < 63 ? r[0] : 63) + 1;
  case 0xD: return 64;                // xsave components 0..63
  case 0xF: case 0x10: return 4;
  case 0x12: {                        // SGX: EPC sections until type == 0
    uint32_t s = 2;
    while (s < 64) { q(leaf, s, r); if ((r[0] & 0xf) == 0) break; s++; }
    return s + 1;
  }
  case 0x80000020: return 4;
  default: return 1;
  }
}

void cpuid_dump(struct buf *b, bool masked) {
  size_t count_at = b->len;
  uint32_t n = 0, r[4];
  buf_u32(b, 0);
  uint32_t bases[2] = { 0, 0x80000000 };
  for (int k = 0; k < 2; k++) {
    q(bases[k], 0, r);
    uint32_t max = r[0];
    if (max < bases[k] || max > bases[k] + 0x100) max = bases[k];
    for (uint32_t leaf = bases[k]; leaf <= max; leaf++) {
      uint32_t subs = subleaves(leaf);
      for (uint32_t s = 0; s < subs; s++) { q(leaf, s, r); put(b, &n, leaf, s, r, masked); }
    }
  }
  memcpy(b->p + count_at, &n, 4);
}

void cpuid_vendor(char vendor[13], uint32_t *family, uint32_t *model) {
  uint32_t r[4];
  q(0, 0, r);
  memcpy(vendor, &r[1], 4); memcpy(vendor + 4, &r[3], 4); memcpy(vendor + 8, &r[2], 4);
  vendor[12] = 0;
  q(1, 0, r);
  uint32_t fam = (r[0] >> 8) & 0xf, mod = (r[0] >> 4) & 0xf;
  if (fam == 0xf) fam += (r[0] >> 20) & 0xff;
  if (fam == 0x6 || fam >= 0xf) mod += ((r[0] >> 16) & 0xf) << 4;
  *family = fam; *model = mod;
}

// CPUID faulting (Intel Ivy Bridge+): ARCH_SET_CPUID(0) succeeds only where the CPU has it.
// Probed on the helper itself and switched back on at once.
int cpuid_faulting_available(void) {
  if (syscall(SYS_arch_prctl, ARCH_GET_CPUID, 0) < 0) return 0;
  if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) < 0) return 0;
  syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
  return 1;
}

// The answer replay gives (src/replay/cpuid.ts): leaves with more than one subleaf in the table are
// indexed by ECX, the others ignore it; a leaf not in the table reads as zeros.
static void answer(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
  bool indexed = false;
  for (uint32_t k = 0; k < ntable; k++) if (table[k].leaf == leaf && table[k].sub != 0) { indexed = true; break; }
  if (!indexed) sub = 0;
  for (uint32_t k = 0; k < ntable; k++)
    if (table[k].leaf == leaf && table[k].sub == sub) { memcpy(r, table[k].r, 16); return; }
  memset(r, 0, 16);
}

int cpuid_try_emulate(pid_t pid, int memfd, struct user_regs_struct *regs) {
  uint8_t insn[2];
  if (mem_read(memfd, regs->rip, insn, 2) != 2 || insn[0] != 0x0f || insn[1] != 0xa2) return 0;
  return cpuid_emulate(pid, regs);
}

int cpuid_emulate(pid_t pid, struct user_regs_struct *regs) {
  uint32_t r[4];
  answer((uint32_t)regs->rax, (uint32_t)regs->rcx, r);
  regs->rax = r[0]; regs->rbx = r[1]; regs->rcx = r[2]; regs->rdx = r[3];
  regs->rip += 2;
  return ptrace(PTRACE_SETREGS, pid, 0, regs) == 0;
}

// XCR0 as XGETBV returns it to user code (0 without OSXSAVE): replay answers XGETBV from it,
// since the emulator has no XGETBV.
uint64_t xcr0_read(void) {
  uint32_t r[4];
  q(1, 0, r);
  if (!(r[2] & (1u << 27))) return 0;
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}
