// CPUID: dump every leaf and subleaf a program could ask on this machine (the trace header keeps
// them; replay answers CPUID from them), and probe CPUID faulting.
#include "ra.h"
#include <cpuid.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <asm/prctl.h>

static void q(uint32_t leaf, uint32_t sub, uint32_t r[4]) { __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]); }

static void put(struct buf *b, uint32_t *n, uint32_t leaf, uint32_t sub, const uint32_t r[4]) {
  buf_u32(b, leaf); buf_u32(b, sub);
  for (int i = 0; i < 4; i++) buf_u32(b, r[i]);
  (*n)++;
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

void cpuid_dump(struct buf *b) {
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
      for (uint32_t s = 0; s < subs; s++) { q(leaf, s, r); put(b, &n, leaf, s, r); }
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
