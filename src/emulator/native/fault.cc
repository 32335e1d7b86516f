// Which instruction of a block faulted. Unicorn 2.0.1 does not restore RIP when a data access
// faults (it leaves the start of the translated block), but the registers are exactly as they were
// before the faulting instruction. So: decode the block, compute each memory operand's address
// from the current registers, and keep the instructions whose access (kind and address) matches
// the fault. An earlier instruction can only match by accident if some instruction between it and
// the real culprit changed its address registers; the earliest candidate consistent with that is
// the answer.
#include <cstring>

#include "machine.h"

namespace ra {

namespace {

struct Access {
  uint64_t lo, hi;  // [lo, hi) bytes touched
  bool read, write;
  std::vector<x86_reg> regs;  // registers the address depends on
};

uint64_t regValue(uc_engine *uc, x86_reg r, uint64_t nextRip) {
  if (r == X86_REG_RIP) return nextRip;
  if (r == X86_REG_INVALID) return 0;
  static const struct { x86_reg cs; int uc; } T[] = {
      {X86_REG_RAX, UC_X86_REG_RAX}, {X86_REG_RBX, UC_X86_REG_RBX}, {X86_REG_RCX, UC_X86_REG_RCX},
      {X86_REG_RDX, UC_X86_REG_RDX}, {X86_REG_RSI, UC_X86_REG_RSI}, {X86_REG_RDI, UC_X86_REG_RDI},
      {X86_REG_RBP, UC_X86_REG_RBP}, {X86_REG_RSP, UC_X86_REG_RSP}, {X86_REG_R8, UC_X86_REG_R8},
      {X86_REG_R9, UC_X86_REG_R9},   {X86_REG_R10, UC_X86_REG_R10}, {X86_REG_R11, UC_X86_REG_R11},
      {X86_REG_R12, UC_X86_REG_R12}, {X86_REG_R13, UC_X86_REG_R13}, {X86_REG_R14, UC_X86_REG_R14},
      {X86_REG_R15, UC_X86_REG_R15}, {X86_REG_EAX, UC_X86_REG_EAX}, {X86_REG_EBX, UC_X86_REG_EBX},
      {X86_REG_ECX, UC_X86_REG_ECX}, {X86_REG_EDX, UC_X86_REG_EDX}, {X86_REG_ESI, UC_X86_REG_ESI},
      {X86_REG_EDI, UC_X86_REG_EDI}, {X86_REG_EBP, UC_X86_REG_EBP}, {X86_REG_ESP, UC_X86_REG_ESP},
      {X86_REG_R8D, UC_X86_REG_R8D}, {X86_REG_R9D, UC_X86_REG_R9D}, {X86_REG_R10D, UC_X86_REG_R10D},
      {X86_REG_R11D, UC_X86_REG_R11D}, {X86_REG_R12D, UC_X86_REG_R12D}, {X86_REG_R13D, UC_X86_REG_R13D},
      {X86_REG_R14D, UC_X86_REG_R14D}, {X86_REG_R15D, UC_X86_REG_R15D},
  };
  for (auto &e : T)
    if (e.cs == r) {
      uint64_t v = 0;
      uc_reg_read(uc, e.uc, &v);
      return v;
    }
  return 0;
}

// The accesses an instruction makes, computed from the current registers.
void accessesOf(uc_engine *uc, csh cs, cs_insn *in, std::vector<Access> &out) {
  cs_x86 &x = in->detail->x86;
  uint64_t next = in->address + in->size;
  cs_regs rd, wr;
  uint8_t nrd = 0, nwr = 0;
  bool haveRegs = cs_regs_access(cs, in, rd, &nrd, wr, &nwr) == CS_ERR_OK;
  (void)haveRegs;
  for (int i = 0; i < x.op_count; i++) {
    cs_x86_op &op = x.operands[i];
    if (op.type != X86_OP_MEM) continue;
    if (in->id == X86_INS_LEA || in->id == X86_INS_NOP) continue;
    uint64_t ea = uint64_t(op.mem.disp) + regValue(uc, op.mem.base, next) + regValue(uc, op.mem.index, next) * uint64_t(op.mem.scale);
    if (op.mem.segment == X86_REG_FS) { uint64_t b = 0; uc_reg_read(uc, UC_X86_REG_FS_BASE, &b); ea += b; }
    if (op.mem.segment == X86_REG_GS) { uint64_t b = 0; uc_reg_read(uc, UC_X86_REG_GS_BASE, &b); ea += b; }
    Access a{ea, ea + (op.size ? op.size : 1), (op.access & CS_AC_READ) != 0, (op.access & CS_AC_WRITE) != 0, {}};
    if (!a.read && !a.write) a.read = a.write = true;
    a.regs.push_back(op.mem.base);
    a.regs.push_back(op.mem.index);
    out.push_back(a);
  }
  // Implicit stack accesses.
  uint64_t rsp = regValue(uc, X86_REG_RSP, next);
  switch (in->id) {
    case X86_INS_PUSH: case X86_INS_CALL: case X86_INS_PUSHFQ:
      out.push_back({rsp - 8, rsp, false, true, {X86_REG_RSP}});
      break;
    case X86_INS_POP: case X86_INS_RET: case X86_INS_POPFQ: case X86_INS_LEAVE:
      out.push_back({rsp, rsp + 8, true, false, {X86_REG_RSP}});
      if (in->id == X86_INS_LEAVE) {
        uint64_t rbp = regValue(uc, X86_REG_RBP, next);
        out.push_back({rbp, rbp + 8, true, false, {X86_REG_RBP}});
      }
      break;
    default: break;
  }
}

bool writesAny(csh cs, cs_insn *in, const std::vector<x86_reg> &regs) {
  cs_regs rd, wr;
  uint8_t nrd = 0, nwr = 0;
  if (cs_regs_access(cs, in, rd, &nrd, wr, &nwr) != CS_ERR_OK) return true;
  for (int i = 0; i < nwr; i++)
    for (x86_reg r : regs) {
      if (r == X86_REG_INVALID) continue;
      // compare by full register: capstone may report the 32-bit name
      if (wr[i] == r) return true;
      const char *a = cs_reg_name(cs, wr[i]), *b = cs_reg_name(cs, r);
      if (a && b && strlen(a) >= 2 && strlen(b) >= 2 && strcmp(a + 1, b + 1) == 0) return true;
    }
  return false;
}

}  // namespace

// Returns the address of the faulting instruction in block b, or NONE when nothing matches.
uint64_t Machine::faultingInstruction(const BlockInfo &b, uint64_t address, int access) {
  csh d = 0;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &d) != CS_ERR_OK) return NONE;
  cs_option(d, CS_OPT_DETAIL, CS_OPT_ON);
  cs_insn *all = nullptr;
  size_t n = cs_disasm(d, b.bytes.data(), b.bytes.size(), b.addr, 0, &all);
  struct Cand { size_t idx; std::vector<x86_reg> regs; };
  std::vector<Cand> cands;
  for (size_t i = 0; i < n; i++) {
    std::vector<Access> acc;
    accessesOf(uc, d, &all[i], acc);
    for (const Access &a : acc) {
      bool kind = access == 0 ? a.read : a.write;
      uint64_t pageLo = a.lo & ~(PAGE - 1), pageHi = (a.hi - 1) | (PAGE - 1);
      bool hit = (address >= a.lo && address < a.hi) || (address >= pageLo && address <= pageHi);
      if (kind && hit) {
        cands.push_back({i, a.regs});
        break;
      }
    }
  }
  uint64_t result = NONE;
  // earliest candidate c such that every earlier candidate had its address registers changed
  // between it and c (else the earlier one would have faulted first)
  for (size_t k = 0; k < cands.size() && result == NONE; k++) {
    bool ok = true;
    for (size_t l = 0; l < k && ok; l++) {
      bool changed = false;
      for (size_t i = cands[l].idx; i < cands[k].idx && !changed; i++) changed = writesAny(d, &all[i], cands[l].regs);
      if (!changed) ok = false;
    }
    if (ok) result = all[cands[k].idx].address;
  }
  if (n) cs_free(all, n);
  cs_close(&d);
  return result;
}

uint64_t Machine::memOperandAddress(uint64_t rip) {
  uint8_t buf[16];
  size_t n = 0;
  while (n < sizeof buf && uc_mem_read(uc, rip + n, buf + n, 1) == UC_ERR_OK) n++;
  csh d = 0;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &d) != CS_ERR_OK) return NONE;
  cs_option(d, CS_OPT_DETAIL, CS_OPT_ON);
  cs_insn *in = nullptr;
  uint64_t result = NONE;
  if (cs_disasm(d, buf, n, rip, 1, &in) == 1) {
    std::vector<Access> acc;
    accessesOf(uc, d, in, acc);
    if (!acc.empty()) result = acc[0].lo;
    cs_free(in, 1);
  }
  cs_close(&d);
  return result;
}

void Machine::beforeFxsave(uint64_t rip) {
  uint64_t ea = memOperandAddress(rip);
  // A misaligned or unwritable area faults (QEMU raises it when it executes the instruction):
  // then nothing is written, as on the CPU.
  if (ea == NONE || (ea & 15)) return;
  for (uint64_t a = ea & ~(PAGE - 1); a < ea + 512; a += PAGE) {
    const Region *r = nullptr;
    for (const Region &x : regions)
      if (x.start <= a && a < x.end) r = &x;
    if (!r || !(r->prot & UC_PROT_WRITE)) return;
  }
  static const uint8_t zeros[6] = {0};
  bool was = watchPending;
  for (int i = 0; i < 8; i++) {
    uc_mem_write(uc, ea + 32 + 16 * i + 10, zeros, sizeof zeros);  // (no memory hook sees it)
    if (!watches.empty()) watchAccess(ea + 32 + 16 * i + 10, sizeof zeros, true, rip);
  }
  // A watched byte among those: the FXSAVE has not run yet; the stop comes after it.
  if (!was && watchPending) watchBefore = true;
}

}  // namespace ra
