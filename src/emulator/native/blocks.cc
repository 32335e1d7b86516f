// The decoded-block cache: what each translated block means for the counters, decoded once
// with capstone. Blocks on pages the guest cannot write are trusted until map/unmap/protect (which
// flush the cache) or a write() into their pages (which flushes it too). Blocks on guest-writable
// pages are trusted only while their bytes equal the bytes they were decoded from (a memcmp on
// every execution): that keeps self-modifying and JIT code exact without any memory-write hook.
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
    case X86_INS_FXSAVE: case X86_INS_FXSAVE64: *k = STOP_FXSAVE; return true;
    case X86_INS_CMPXCHG8B: case X86_INS_CMPXCHG16B: *k = STOP_SYNC_FLAGS; return true;
    default: return false;
  }
}

void Machine::flushBlocks() {
  if (++gen == 0) {
    // 2^32 layout changes: make sure no entry carries a generation that could come back.
    for (size_t i = 0; i < (size_t(1) << CACHE_BITS); i++) hot[i].key = 0;
    gen = 1;
  }
  trustedPages.clear();
  updateKey();
}

// Whether some byte of [addr, addr+size) lies on a guest-writable page, or the range is not in one
// mapping: then the bytes can change without map/unmap/protect/write() telling us.
static bool needsVerify(const Machine *m, uint64_t addr, uint32_t size, const uint8_t *host) {
  if (!host) return true;
  for (const Region &r : m->regions)
    if (r.start < addr + size && addr < r.end && (r.prot & UC_PROT_WRITE)) return true;
  return false;
}

void Machine::decode(uint64_t addr, uint32_t size, size_t slot) {
  BlockInfo &b = cache[slot];
  HotBlock &h = hot[slot];
  b.addr = addr;
  b.size = size;
  b.host = hostPtr(addr, size);
  b.verify = needsVerify(this, addr, size, b.host);
  b.bytes.resize(size);
  if (b.host) memcpy(b.bytes.data(), b.host, size);
  else if (uc_mem_read(uc, addr, b.bytes.data(), size) != UC_ERR_OK) memset(b.bytes.data(), 0, size);
  b.offsets.clear();
  b.target = NONE;
  b.lastAddr = NONE;
  b.lastRep = false;
  b.mem.clear();
  b.memReady = b.memUnsynced = false;
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
  if (!b.verify)
    for (uint64_t p = addr & ~(PAGE - 1); p < addr + size; p += PAGE) trustedPages.insert(p);
  h.addr = addr;
  h.key = size | (uint64_t(gen) << 32) | (b.verify || b.lastRep ? KEY_SLOW : 0);
  h.target = b.target;
  h.ninsns = b.ninsns;
  h.jcc = b.jcc;
}

bool Machine::slowBlock(uint64_t addr, uint32_t size, size_t slot) {
  HotBlock &h = hot[slot];
  BlockInfo &b = cache[slot];
  bool valid = h.addr == addr && (h.key & ~KEY_SLOW) == (size | (uint64_t(gen) << 32));
  if (valid && b.verify) {
    if (b.host) {
      valid = memcmp(b.host, b.bytes.data(), size) == 0;
    } else {
      // Block spanning two mappings: compare through Unicorn (rare, slower).
      uint8_t tmp[8192];
      valid = size <= sizeof tmp && uc_mem_read(uc, addr, tmp, size) == UC_ERR_OK && memcmp(tmp, b.bytes.data(), size) == 0;
    }
  }
  if (!valid) decode(addr, size, slot);
  if (!pendingHooks.empty()) {
    // The block holds an rdtsc/rdtscp/cpuid without its stop hook: stop before the block (it
    // does not execute: the exit check follows the block hook), install, retranslate, resume.
    clearCur();
    requestStop(STOP_RESTART, addr);
    return false;
  }
  // A rep string instruction runs one iteration per block execution: count it once, when its
  // first iteration starts.
  bool continued = repInProgress == addr;
  uint32_t counted = b.ninsns - (continued ? 1 : 0);
  if (instructions + counted > insnTarget && !targetInBlock(addr, slot, counted)) return false;
  ticks += b.jcc;
  instructions += counted;
  curRepContinued = continued;
  repInProgress = b.lastRep ? b.lastAddr : NONE;
  checkNext = b.verify;
  updateKey();
  return true;
}

void Machine::abandoned(uint64_t addr, uint32_t size) {
  // QEMU's precise self-modifying-code path abandons a block in the middle (before a store into
  // its own code) and resumes with a one-instruction block there: only the instructions before
  // that point retired. The store succeeded, so that block is on a guest-writable page, its bytes
  // are compared (checkNext), and the block after it comes here through the slow path.
  BlockInfo *c = cur();
  if (!c) return;
  uint64_t off = addr - c->addr;
  for (size_t i = 0; i < c->offsets.size(); i++) {
    if (c->offsets[i] != off) continue;
    uint32_t len = (i + 1 < c->offsets.size() ? c->offsets[i + 1] : c->size) - uint32_t(off);
    if (len == size) {
      instructions -= c->ninsns - i;
      ticks -= c->jcc;
      if (c->lastRep) repInProgress = NONE, updateKey();
    }
    break;
  }
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
