// Registers: by name, as Linux's user_regs_struct, and as an FXSAVE image.
#include <cstring>

#include "machine.h"

namespace ra {

// Linux struct user_regs_struct order (27 u64). Negative ids are kept in the machine, not the CPU:
// -1 orig_rax, -2.. segment selectors (Unicorn checks descriptors on selector loads, and user
// code never loads them).
static const int USER_REGS[27] = {
    UC_X86_REG_R15, UC_X86_REG_R14, UC_X86_REG_R13, UC_X86_REG_R12, UC_X86_REG_RBP, UC_X86_REG_RBX,
    UC_X86_REG_R11, UC_X86_REG_R10, UC_X86_REG_R9,  UC_X86_REG_R8,  UC_X86_REG_RAX, UC_X86_REG_RCX,
    UC_X86_REG_RDX, UC_X86_REG_RSI, UC_X86_REG_RDI, -1 /* orig_rax */, UC_X86_REG_RIP,
    -2 /* cs */, UC_X86_REG_RFLAGS, UC_X86_REG_RSP, -3 /* ss */, UC_X86_REG_FS_BASE, UC_X86_REG_GS_BASE,
    -4 /* ds */, -5 /* es */, -6 /* fs */, -7 /* gs */};

static int regId(const std::string &n) {
  static const struct { const char *name; int id; } T[] = {
      {"rax", UC_X86_REG_RAX}, {"rbx", UC_X86_REG_RBX}, {"rcx", UC_X86_REG_RCX}, {"rdx", UC_X86_REG_RDX},
      {"rsi", UC_X86_REG_RSI}, {"rdi", UC_X86_REG_RDI}, {"rbp", UC_X86_REG_RBP}, {"rsp", UC_X86_REG_RSP},
      {"r8", UC_X86_REG_R8},   {"r9", UC_X86_REG_R9},   {"r10", UC_X86_REG_R10}, {"r11", UC_X86_REG_R11},
      {"r12", UC_X86_REG_R12}, {"r13", UC_X86_REG_R13}, {"r14", UC_X86_REG_R14}, {"r15", UC_X86_REG_R15},
      {"rip", UC_X86_REG_RIP}, {"rflags", UC_X86_REG_RFLAGS}, {"eflags", UC_X86_REG_RFLAGS},
      {"fs_base", UC_X86_REG_FS_BASE}, {"gs_base", UC_X86_REG_GS_BASE}, {"orig_rax", -1},
      {"cs", -2}, {"ss", -3}, {"ds", -4}, {"es", -5}, {"fs", -6}, {"gs", -7},
  };
  for (auto &e : T)
    if (n == e.name) return e.id;
  throw Error("unknown register '" + n + "'");
}

static uint64_t readId(Machine *m, int id) {
  if (id == -1) return m->origRax;
  if (id < -1) return m->sel[-id - 2];
  uint64_t v = 0;
  uc_reg_read(m->uc, id, &v);
  return v;
}

static void writeId(Machine *m, int id, uint64_t v) {
  if (id == -1) { m->origRax = v; return; }
  if (id < -1) { m->sel[-id - 2] = v & 0xffff; return; }
  uc_err e = uc_reg_write(m->uc, id, &v);
  if (e != UC_ERR_OK) throw Error(std::string("register write failed: ") + uc_strerror(e));
}

uint64_t Machine::getReg(const std::string &name) { check(); return readId(this, regId(name)); }
void Machine::setReg(const std::string &name, uint64_t v) {
  check();
  int id = regId(name);
  writeId(this, id, v);
  if (id == UC_X86_REG_RIP) lastBreakpoint = NONE;
}
uint64_t Machine::rip() { return readId(this, UC_X86_REG_RIP); }

void Machine::getUserRegs(uint8_t out[216]) {
  check();
  for (int i = 0; i < 27; i++) {
    uint64_t v = readId(this, USER_REGS[i]);
    memcpy(out + 8 * i, &v, 8);
  }
}

void Machine::setUserRegs(const uint8_t in[216]) {
  check();
  uint64_t old = rip();
  for (int i = 0; i < 27; i++) {
    uint64_t v;
    memcpy(&v, in + 8 * i, 8);
    writeId(this, USER_REGS[i], v);
  }
  if (rip() != old) lastBreakpoint = NONE;
}

// FXSAVE (64-bit) layout: FCW@0 FSW@2 FTW(abridged)@4 FOP@6 FIP@8 FDP@16 MXCSR@24 MXCSR_MASK@28
// ST0-7 @32 (16 each, 10 used) XMM0-15 @160 (16 each).
void Machine::getFxsave(uint8_t out[512]) {
  check();
  memset(out, 0, 512);
  uint16_t fcw = 0, fsw = 0, ftw = 0, fop = 0;
  uint64_t fip = 0, fdp = 0;
  uint32_t mxcsr = 0;
  uc_reg_read(uc, UC_X86_REG_FPCW, &fcw);
  uc_reg_read(uc, UC_X86_REG_FPSW, &fsw);
  uc_reg_read(uc, UC_X86_REG_FPTAG, &ftw);
  uc_reg_read(uc, UC_X86_REG_FOP, &fop);
  uc_reg_read(uc, UC_X86_REG_FIP, &fip);
  uc_reg_read(uc, UC_X86_REG_FDP, &fdp);
  uc_reg_read(uc, UC_X86_REG_MXCSR, &mxcsr);
  uint8_t abridged = 0;
  for (int i = 0; i < 8; i++)
    if (((ftw >> (2 * i)) & 3) != 3) abridged |= 1 << i;
  memcpy(out + 0, &fcw, 2);
  memcpy(out + 2, &fsw, 2);
  out[4] = abridged;
  memcpy(out + 6, &fop, 2);
  memcpy(out + 8, &fip, 8);
  memcpy(out + 16, &fdp, 8);
  memcpy(out + 24, &mxcsr, 4);
  uint32_t mask = 0xffff;  // MXCSR_MASK as this CPU model reports (DAZ supported)
  memcpy(out + 28, &mask, 4);
  int top = (fsw >> 11) & 7;
  for (int i = 0; i < 8; i++) {
    uint8_t st[16] = {0};  // uc_x86_float80 is 10 bytes (mantissa, exponent)
    uc_reg_read(uc, UC_X86_REG_FP0 + ((top + i) & 7), st);
    memcpy(out + 32 + 16 * i, st, 10);
  }
  for (int i = 0; i < 16; i++) uc_reg_read(uc, UC_X86_REG_XMM0 + i, out + 160 + 16 * i);
}

void Machine::setFxsave(const uint8_t in[512]) {
  check();
  uint16_t fcw, fsw, fop;
  uint64_t fip, fdp;
  uint32_t mxcsr;
  memcpy(&fcw, in + 0, 2);
  memcpy(&fsw, in + 2, 2);
  memcpy(&fop, in + 6, 2);
  memcpy(&fip, in + 8, 8);
  memcpy(&fdp, in + 16, 8);
  memcpy(&mxcsr, in + 24, 4);
  uint16_t ftw = 0;
  for (int i = 0; i < 8; i++)
    if (!(in[4] & (1 << i))) ftw |= 3 << (2 * i);
  uc_reg_write(uc, UC_X86_REG_FPCW, &fcw);
  uc_reg_write(uc, UC_X86_REG_FPSW, &fsw);
  uc_reg_write(uc, UC_X86_REG_FOP, &fop);
  uc_reg_write(uc, UC_X86_REG_FIP, &fip);
  uc_reg_write(uc, UC_X86_REG_FDP, &fdp);
  uc_err e = uc_reg_write(uc, UC_X86_REG_MXCSR, &mxcsr);
  if (e != UC_ERR_OK) throw Error("setFxsave: bad MXCSR");
  int top = (fsw >> 11) & 7;
  for (int i = 0; i < 8; i++) {
    uint8_t st[16] = {0};
    memcpy(st, in + 32 + 16 * i, 10);
    uc_reg_write(uc, UC_X86_REG_FP0 + ((top + i) & 7), st);
  }
  uc_reg_write(uc, UC_X86_REG_FPTAG, &ftw);
  for (int i = 0; i < 16; i++) uc_reg_write(uc, UC_X86_REG_XMM0 + i, in + 160 + 16 * i);
}

}  // namespace ra
