// The decoded-block cache: what each translated block means for the counters, decoded once
// with capstone. An entry is trusted only if the block's bytes in guest memory still equal the
// bytes it was decoded from (a memcmp through our host pointer, a few ns): that is what makes
// self-modifying code, JIT code, write() from JS and remapping safe without any write hook.
#include <cstring>

#include "machine.h"

namespace ra {

// Jcc: 70-7F rel8 or 0F 80-8F rel32, after any legacy prefixes and REX (BND F2, branch hints 2E/3E).
// LOOP/LOOPcc (E0-E2) and JrCXZ (E3) are not ticks: see docs/emulator.md.
static bool isJcc(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = p[i];
    if (b == 0x66 || b == 0x67 || b == 0xf2 || b == 0xf3 || b == 0x2e || b == 0x3e || b == 0x26 ||
        b == 0x36 || b == 0x64 || b == 0x65 || b == 0xf0 || (b >= 0x40 && b <= 0x4f)) {
      i++;
      continue;
    }
    break;
  }
  if (i >= n) return false;
  if (p[i] >= 0x70 && p[i] <= 0x7f) return true;
  return p[i] == 0x0f && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x8f;
}

// Target of a direct jmp/jcc/call/loop (rel8/rel32), else NONE.
static uint64_t directTarget(const cs_insn *in) {
  const uint8_t *p = in->bytes;
  size_t i = 0, n = in->size;
  while (i < n && (p[i] == 0x66 || p[i] == 0x67 || p[i] == 0xf2 || p[i] == 0xf3 || p[i] == 0x2e || p[i] == 0x3e ||
                   (p[i] >= 0x40 && p[i] <= 0x4f)))
    i++;
  if (i >= n) return NONE;
  uint64_t next = in->address + in->size;
  uint8_t op = p[i];
  if ((op >= 0x70 && op <= 0x7f) || (op >= 0xe0 && op <= 0xe3) || op == 0xeb) return next + int64_t(int8_t(p[n - 1]));
  if (op == 0xe8 || op == 0xe9 || (op == 0x0f && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x8f)) {
    int32_t rel;
    memcpy(&rel, p + n - 4, 4);
    return next + int64_t(rel);
  }
  return NONE;
}

static bool isRepString(const cs_insn *in) {
  bool rep = false;
  for (int i = 0; i < in->size; i++) {
    uint8_t b = in->bytes[i];
    if (b == 0xf2 || b == 0xf3) rep = true;
    else if (b == 0x66 || b == 0x67 || b == 0x2e || b == 0x3e || b == 0x26 || b == 0x36 || b == 0x64 || b == 0x65 || (b >= 0x40 && b <= 0x4f)) continue;
    else return rep && ((b >= 0xa4 && b <= 0xa7) || (b >= 0xaa && b <= 0xaf) || b == 0x6c || b == 0x6d || b == 0x6e || b == 0x6f);
  }
  return false;
}

static bool specialKind(unsigned id, StopKind *k) {
  switch (id) {
    case X86_INS_RDTSC: *k = STOP_RDTSC; return true;
    case X86_INS_RDTSCP: *k = STOP_RDTSCP; return true;
    case X86_INS_CPUID: *k = STOP_CPUID; return true;
    default: return false;
  }
}

static inline size_t slotOf(uint64_t addr) {
  return size_t((addr * 0x9E3779B97F4A7C15ull) >> (64 - Machine::CACHE_BITS));
}

BlockInfo *Machine::lookup(uint64_t addr, uint32_t size) {
  BlockInfo &b = cache[slotOf(addr)];
  if (b.addr == addr && b.size == size && b.gen == gen) {
    if (b.host ? memcmp(b.host, b.bytes.data(), size) == 0 : false) return &b;
    if (!b.host) {
      // Block spanning two mappings: compare through Unicorn (rare, slower).
      uint8_t tmp[8192];
      if (size <= sizeof tmp && uc_mem_read(uc, addr, tmp, size) == UC_ERR_OK && memcmp(tmp, b.bytes.data(), size) == 0)
        return &b;
    }
  }
  // (Re)decode.
  b.addr = addr;
  b.size = size;
  b.gen = gen;
  b.host = hostPtr(addr, size);
  b.bytes.resize(size);
  if (b.host) memcpy(b.bytes.data(), b.host, size);
  else if (uc_mem_read(uc, addr, b.bytes.data(), size) != UC_ERR_OK) memset(b.bytes.data(), 0, size);
  b.offsets.clear();
  b.target = NONE;
  b.lastAddr = NONE;
  b.lastRep = false;
  b.ninsns = 0;
  b.jcc = 0;
  const uint8_t *code = b.bytes.data();
  size_t left = size;
  uint64_t pc = addr;
  bool lastJcc = false;
  while (left > 0) {
    const uint8_t *at = code;
    if (!cs_disasm_iter(cs, &code, &left, &pc, csInsn)) {
      // Undecodable tail (Unicorn raises an invalid-instruction there): one instruction.
      b.offsets.push_back(uint16_t(at - b.bytes.data()));
      lastJcc = false;
      break;
    }
    b.offsets.push_back(uint16_t(at - b.bytes.data()));
    lastJcc = isJcc(csInsn->bytes, csInsn->size);
    b.lastAddr = csInsn->address;
    b.target = directTarget(csInsn);
    b.lastRep = isRepString(csInsn);
    StopKind k;
    if (specialKind(csInsn->id, &k)) {
      specials.insert(csInsn->address);
      if (!stopHooks.count(csInsn->address)) pendingHooks.push_back(csInsn->address);
    }
  }
  b.ninsns = uint32_t(b.offsets.size());
  b.jcc = lastJcc ? 1 : 0;
  return &b;
}

bool Machine::isSpecialAt(uint64_t addr, StopKind *kind) {
  uint8_t buf[16];
  size_t n = 0;
  while (n < sizeof buf && uc_mem_read(uc, addr + n, buf + n, 1) == UC_ERR_OK) n++;
  const uint8_t *code = buf;
  size_t left = n;
  uint64_t pc = addr;
  if (!cs_disasm_iter(cs, &code, &left, &pc, csInsn)) return false;
  return specialKind(csInsn->id, kind);
}

}  // namespace ra
