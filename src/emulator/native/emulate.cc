// Instructions Unicorn 2.0.1 raises #UD for but that programs built for x86-64-v2/v3 use, emulated
// here when a run stops on them: POPCNT (F3 [REX] 0F B8 /r) and MOVBE (0F 38 F0/F1 /r, memory
// operand only). run() calls emulateInvalid() at the stop and resumes the run after it.
//
// The instruction is decoded by hand (prefixes, REX, ModRM, SIB, displacement, RIP-relative,
// FS/GS overrides); anything else (address-size prefix, LOCK, VEX...) is left to the caller as an
// invalid instruction. Memory accesses follow the guest's page protections: a bad one becomes a
// memory-fault stop at the instruction, as on the hardware.
#include <cstring>

#include "machine.h"

namespace ra {

namespace {

// Register numbers in ModRM/REX encoding order.
const int GPR[16] = {
    UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX, UC_X86_REG_RSP, UC_X86_REG_RBP,
    UC_X86_REG_RSI, UC_X86_REG_RDI, UC_X86_REG_R8,  UC_X86_REG_R9,  UC_X86_REG_R10, UC_X86_REG_R11,
    UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15,
};

uint64_t readGpr(uc_engine *uc, int n) {
  uint64_t v = 0;
  uc_reg_read(uc, GPR[n], &v);
  return v;
}

// Writes `size` bytes of v into register n with x86-64 rules: a 32-bit write zero-extends, a
// 16-bit write keeps bits 16-63.
void writeGpr(uc_engine *uc, int n, uint64_t v, int size) {
  uint64_t full = v;
  if (size == 4) full = v & 0xffffffffull;
  else if (size == 2) full = (readGpr(uc, n) & ~0xffffull) | (v & 0xffff);
  uc_reg_write(uc, GPR[n], &full);
}

uint64_t bswap(uint64_t v, int size) {
  switch (size) {
    case 2: return __builtin_bswap16(uint16_t(v));
    case 4: return __builtin_bswap32(uint32_t(v));
    default: return __builtin_bswap64(v);
  }
}

struct Decoded {
  enum Op { NONE, POPCNT, MOVBE_LOAD, MOVBE_STORE } op = NONE;
  int size = 4;        // operand size in bytes
  int reg = 0;         // ModRM.reg (with REX.R)
  bool mem = false;    // r/m is memory
  int rm = 0;          // ModRM.rm register (with REX.B) when !mem
  uint64_t ea = 0;     // effective address when mem
  uint32_t length = 0;
};

// Decodes the instruction at rip from `b` (n bytes available). False when it is not one we emulate.
bool decodeInsn(uc_engine *uc, uint64_t rip, const uint8_t *b, size_t n, Decoded &d) {
  size_t i = 0;
  bool opsize = false, rep = false, repne = false;
  int seg = 0;  // 0 none, 4 fs, 5 gs
  for (; i < n; i++) {
    uint8_t p = b[i];
    if (p == 0x66) opsize = true;
    else if (p == 0xf3) rep = true, repne = false;
    else if (p == 0xf2) repne = true, rep = false;
    else if (p == 0x2e || p == 0x36 || p == 0x3e || p == 0x26) continue;  // no effect in 64-bit mode
    else if (p == 0x64) seg = 4;
    else if (p == 0x65) seg = 5;
    else break;  // 0x67 (address size) and 0xf0 (lock) are not emulated
  }
  uint8_t rex = 0;
  if (i < n && (b[i] & 0xf0) == 0x40) rex = b[i++];
  if (i + 2 > n || b[i] != 0x0f) return false;
  if (b[i + 1] == 0xb8 && rep) {
    d.op = Decoded::POPCNT;
    i += 2;
  } else if (b[i + 1] == 0x38 && i + 3 <= n && (b[i + 2] == 0xf0 || b[i + 2] == 0xf1) && !rep && !repne) {
    d.op = b[i + 2] == 0xf0 ? Decoded::MOVBE_LOAD : Decoded::MOVBE_STORE;
    i += 3;
  } else {
    return false;
  }
  d.size = (rex & 8) ? 8 : opsize ? 2 : 4;
  if (i >= n) return false;
  uint8_t modrm = b[i++];
  int mod = modrm >> 6, rm = modrm & 7;
  d.reg = ((modrm >> 3) & 7) | ((rex & 4) ? 8 : 0);
  if (mod == 3) {
    if (d.op != Decoded::POPCNT) return false;  // MOVBE with a register operand is #UD
    d.mem = false;
    d.rm = rm | ((rex & 1) ? 8 : 0);
    d.length = uint32_t(i);
    return true;
  }
  d.mem = true;
  uint64_t ea = 0;
  bool ripRel = false;
  if (rm == 4) {
    if (i >= n) return false;
    uint8_t sib = b[i++];
    int scale = sib >> 6, index = ((sib >> 3) & 7) | ((rex & 2) ? 8 : 0), base = (sib & 7) | ((rex & 1) ? 8 : 0);
    if (index != 4) ea += readGpr(uc, index) << scale;
    if ((sib & 7) == 5 && mod == 0) {
      if (i + 4 > n) return false;
      int32_t disp;
      memcpy(&disp, b + i, 4);
      i += 4;
      ea += uint64_t(int64_t(disp));
    } else {
      ea += readGpr(uc, base);
    }
  } else if (rm == 5 && mod == 0) {
    ripRel = true;
  } else {
    ea += readGpr(uc, rm | ((rex & 1) ? 8 : 0));
  }
  if (mod == 1) {
    if (i + 1 > n) return false;
    ea += uint64_t(int64_t(int8_t(b[i++])));
  } else if (mod == 2 || ripRel) {
    if (i + 4 > n) return false;
    int32_t disp;
    memcpy(&disp, b + i, 4);
    i += 4;
    ea += uint64_t(int64_t(disp));
  }
  d.length = uint32_t(i);
  if (ripRel) ea += rip + d.length;  // relative to the next instruction (no immediate follows)
  if (seg) {
    uint64_t base = 0;
    uc_reg_read(uc, seg == 4 ? UC_X86_REG_FS_BASE : UC_X86_REG_GS_BASE, &base);
    ea += base;
  }
  d.ea = ea;
  return true;
}

}  // namespace

// Guest data access with the guest's protections. On failure fills stop as a memory fault.
bool Machine::guestAccess(uint64_t addr, uint8_t *buf, size_t n, bool write) {
  for (size_t k = 0; k < n; k++) {
    uint64_t a = addr + k;
    const Region *r = nullptr;
    for (const Region &x : regions)
      if (x.start <= a && a < x.end) r = &x;
    bool ok = r && (write ? (r->prot & UC_PROT_WRITE) : r->prot != 0);
    if (!ok) {
      stop = Stop();
      stop.kind = STOP_FAULT;
      stop.address = a;
      stop.access = write ? 1 : 0;
      stop.cause = r ? 1 : 0;
      return false;
    }
  }
  for (size_t k = 0; k < n; k++) {
    uint8_t *h = hostPtr(addr + k, 1);
    if (write) *h = buf[k];
    else buf[k] = *h;
  }
  if (write) uc_ctl_remove_cache(uc, addr, addr + n);  // in case it was code (our blocks there are compared)
  if (!watches.empty()) watchAccess(addr, uint32_t(n), write, NONE);  // RIP is still this instruction's
  return true;
}

Machine::Emulated Machine::emulateInvalid(uint64_t rip) {
  uint8_t b[15];
  size_t n = 0;
  // Instruction bytes as fetched: executable pages only (the run stopped there, so it is mapped).
  while (n < sizeof b) {
    uint8_t *h = hostPtr(rip + n, 1);
    if (!h) break;
    b[n++] = *h;
  }
  Decoded d;
  if (!decodeInsn(uc, rip, b, n, d)) return EMU_NO;
  uint64_t src = 0;
  switch (d.op) {
    case Decoded::POPCNT: {
      if (d.mem) {
        uint8_t m[8] = {};
        if (!guestAccess(d.ea, m, d.size, false)) return EMU_FAULT;
        memcpy(&src, m, d.size);
      } else {
        src = readGpr(uc, d.rm);
        if (d.size < 8) src &= (1ull << (8 * d.size)) - 1;
      }
      writeGpr(uc, d.reg, uint64_t(__builtin_popcountll(src)), d.size);
      // ZF = (source == 0); CF, OF, SF, AF and PF cleared.
      uint64_t fl = 0;
      uc_reg_read(uc, UC_X86_REG_RFLAGS, &fl);
      fl &= ~uint64_t(0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x800);
      if (src == 0) fl |= 0x40;
      uc_reg_write(uc, UC_X86_REG_RFLAGS, &fl);
      break;
    }
    case Decoded::MOVBE_LOAD: {
      uint8_t m[8] = {};
      if (!guestAccess(d.ea, m, d.size, false)) return EMU_FAULT;
      memcpy(&src, m, d.size);
      writeGpr(uc, d.reg, bswap(src, d.size), d.size);
      break;
    }
    case Decoded::MOVBE_STORE: {
      uint64_t v = bswap(readGpr(uc, d.reg), d.size);
      uint8_t m[8];
      memcpy(m, &v, 8);
      if (!guestAccess(d.ea, m, d.size, true)) return EMU_FAULT;
      break;
    }
    default: return EMU_NO;
  }
  uint64_t next = rip + d.length;
  uc_reg_write(uc, UC_X86_REG_RIP, &next);
  if (counting) instructions++;
  return EMU_DONE;
}

}  // namespace ra
