// Collect-mode watchpoints (setWatchpoints(list, collect = true)): run() never stops for a hit;
// each hit is attributed to the guest instruction that made it, counted, and the last one kept
// with the exact instruction count (takeWatchHits).
//
// Only the bounded UC_HOOK_MEM_READ/WRITE hooks exist (no per-instruction code hook), so the hook
// must find the accessing instruction by itself. What it has:
// - the current block (our block hook ran before its first instruction) and the block execution
//   (ringPos), so the count once an instruction of it retires is the block's start count plus
//   its index + 1;
// - RIP. Unicorn 2.0.1 stores RIP before an access only for accesses generated through
//   gen_op_ld_v/gen_op_st_v (integer loads and stores: mov, add [m], push, call, movs...; measured
//   in a standalone harness). SSE and x87 loads and stores, LOCK-prefixed instructions, xchg,
//   cmpxchg8b/16b, FXSAVE/FXRSTOR and other helpers access memory without storing it: RIP is then
//   whatever an earlier instruction stored, possibly in an earlier execution of the block (the
//   block hook does not store it either).
// So: a block whose memory instructions all store RIP ("synced") attributes every access to RIP.
// Otherwise each instruction's accesses are decoded once (capstone detail: operands, sizes, kinds,
// the 8-byte pieces Unicorn splits them into) and an access is attributed to the earliest
// instruction, at or after the one that made the previous access of this block execution, that
// can make it: its kind, its address computed from the registers now, not already done by that
// instruction, and for a synced instruction RIP equal to its address. When a later instruction
// could also have made it and the registers the chosen one's address depends on change in
// between, the attribution is a guess: the hit is marked ambiguous (docs/emulator.md).
#include <cstring>

#include "machine.h"

namespace ra {

namespace {

// General register index (rax 0, rcx 1, rdx 2, rbx 3, rsp 4, rbp 5, rsi 6, rdi 7, r8-r15 8-15) of
// a capstone register of any width, or -1.
int gprIndex(unsigned r) {
  switch (r) {
    case X86_REG_RAX: case X86_REG_EAX: case X86_REG_AX: case X86_REG_AL: case X86_REG_AH: return 0;
    case X86_REG_RCX: case X86_REG_ECX: case X86_REG_CX: case X86_REG_CL: case X86_REG_CH: return 1;
    case X86_REG_RDX: case X86_REG_EDX: case X86_REG_DX: case X86_REG_DL: case X86_REG_DH: return 2;
    case X86_REG_RBX: case X86_REG_EBX: case X86_REG_BX: case X86_REG_BL: case X86_REG_BH: return 3;
    case X86_REG_RSP: case X86_REG_ESP: case X86_REG_SP: case X86_REG_SPL: return 4;
    case X86_REG_RBP: case X86_REG_EBP: case X86_REG_BP: case X86_REG_BPL: return 5;
    case X86_REG_RSI: case X86_REG_ESI: case X86_REG_SI: case X86_REG_SIL: return 6;
    case X86_REG_RDI: case X86_REG_EDI: case X86_REG_DI: case X86_REG_DIL: return 7;
    case X86_REG_R8: case X86_REG_R8D: case X86_REG_R8W: case X86_REG_R8B: return 8;
    case X86_REG_R9: case X86_REG_R9D: case X86_REG_R9W: case X86_REG_R9B: return 9;
    case X86_REG_R10: case X86_REG_R10D: case X86_REG_R10W: case X86_REG_R10B: return 10;
    case X86_REG_R11: case X86_REG_R11D: case X86_REG_R11W: case X86_REG_R11B: return 11;
    case X86_REG_R12: case X86_REG_R12D: case X86_REG_R12W: case X86_REG_R12B: return 12;
    case X86_REG_R13: case X86_REG_R13D: case X86_REG_R13W: case X86_REG_R13B: return 13;
    case X86_REG_R14: case X86_REG_R14D: case X86_REG_R14W: case X86_REG_R14B: return 14;
    case X86_REG_R15: case X86_REG_R15D: case X86_REG_R15W: case X86_REG_R15B: return 15;
    default: return -1;
  }
}

bool is32(unsigned r) {
  return (r >= X86_REG_EAX && r <= X86_REG_ESP) || (r >= X86_REG_R8D && r <= X86_REG_R15D) || r == X86_REG_EIP;
}

// Instructions whose every data access Unicorn 2.0.1 generates through gen_op_ld_v/gen_op_st_v,
// which store RIP first when memory hooks exist (checked one by one in a standalone harness),
// when they have no LOCK prefix and no SSE/x87 register operand.
bool syncedId(unsigned id) {
  switch (id) {
    case X86_INS_MOV: case X86_INS_MOVZX: case X86_INS_MOVSX: case X86_INS_MOVSXD:
    case X86_INS_ADD: case X86_INS_SUB: case X86_INS_ADC: case X86_INS_SBB: case X86_INS_AND:
    case X86_INS_OR: case X86_INS_XOR: case X86_INS_CMP: case X86_INS_TEST: case X86_INS_INC:
    case X86_INS_DEC: case X86_INS_NEG: case X86_INS_NOT: case X86_INS_IMUL: case X86_INS_MUL:
    case X86_INS_DIV: case X86_INS_IDIV: case X86_INS_SHL: case X86_INS_SAL: case X86_INS_SHR:
    case X86_INS_SAR: case X86_INS_ROL: case X86_INS_ROR: case X86_INS_RCL: case X86_INS_RCR:
    case X86_INS_SHLD: case X86_INS_SHRD: case X86_INS_BT: case X86_INS_BTS: case X86_INS_BTR:
    case X86_INS_BTC: case X86_INS_XADD: case X86_INS_CMPXCHG: case X86_INS_BSF: case X86_INS_BSR:
    case X86_INS_TZCNT: case X86_INS_LZCNT: case X86_INS_PUSH: case X86_INS_POP: case X86_INS_PUSHFQ:
    case X86_INS_POPFQ: case X86_INS_CALL: case X86_INS_RET: case X86_INS_JMP: case X86_INS_LEAVE:
    case X86_INS_MOVSB: case X86_INS_MOVSW: case X86_INS_MOVSD: case X86_INS_MOVSQ:
    case X86_INS_STOSB: case X86_INS_STOSW: case X86_INS_STOSD: case X86_INS_STOSQ:
    case X86_INS_LODSB: case X86_INS_LODSW: case X86_INS_LODSD: case X86_INS_LODSQ:
    case X86_INS_SCASB: case X86_INS_SCASW: case X86_INS_SCASD: case X86_INS_SCASQ:
    case X86_INS_CMPSB: case X86_INS_CMPSW: case X86_INS_CMPSD: case X86_INS_CMPSQ:
    case X86_INS_ANDN: case X86_INS_SARX: case X86_INS_SHRX: case X86_INS_SHLX: case X86_INS_ADCX:
    case X86_INS_ADOX: case X86_INS_CRC32: case X86_INS_MOVNTI:
    case X86_INS_SETA: case X86_INS_SETAE: case X86_INS_SETB: case X86_INS_SETBE: case X86_INS_SETE:
    case X86_INS_SETG: case X86_INS_SETGE: case X86_INS_SETL: case X86_INS_SETLE: case X86_INS_SETNE:
    case X86_INS_SETNO: case X86_INS_SETNP: case X86_INS_SETNS: case X86_INS_SETO: case X86_INS_SETP:
    case X86_INS_SETS:
    case X86_INS_CMOVA: case X86_INS_CMOVAE: case X86_INS_CMOVB: case X86_INS_CMOVBE:
    case X86_INS_CMOVE: case X86_INS_CMOVG: case X86_INS_CMOVGE: case X86_INS_CMOVL:
    case X86_INS_CMOVLE: case X86_INS_CMOVNE: case X86_INS_CMOVNO: case X86_INS_CMOVNP:
    case X86_INS_CMOVNS: case X86_INS_CMOVO: case X86_INS_CMOVP: case X86_INS_CMOVS:
      return true;
    default:
      return false;
  }
}

// Memory operands that do not access memory.
bool noAccess(unsigned id) {
  switch (id) {
    case X86_INS_LEA: case X86_INS_NOP: case X86_INS_PREFETCH: case X86_INS_PREFETCHW:
    case X86_INS_PREFETCHNTA: case X86_INS_PREFETCHT0: case X86_INS_PREFETCHT1: case X86_INS_PREFETCHT2:
    case X86_INS_CLFLUSH: case X86_INS_CLFLUSHOPT: case X86_INS_CLWB:
      return true;
    default:
      return false;
  }
}

// Which way an explicit memory operand goes. capstone 4's access flags are wrong for SSE and x87
// stores (movq [m], xmm and fstp [m] come out as reads) and for cmpxchg (read only), so: SSE/MMX
// instructions (no memory destination that is also read) store to an operand 0 and load others;
// x87 by instruction; the rest as capstone says (nothing said: both).
void operandKinds(const cs_insn *in, int opIndex, uint8_t access, bool *read, bool *write) {
  *read = *write = false;
  switch (in->id) {
    case X86_INS_FXSAVE: case X86_INS_FXSAVE64: case X86_INS_XSAVE: case X86_INS_XSAVE64: case X86_INS_XSAVEOPT:
    case X86_INS_XSAVEOPT64: case X86_INS_XSAVEC: case X86_INS_XSAVEC64: case X86_INS_XSAVES: case X86_INS_XSAVES64:
    case X86_INS_STMXCSR: case X86_INS_FNSTENV: case X86_INS_FNSAVE: case X86_INS_FNSTCW: case X86_INS_FNSTSW:
    case X86_INS_FST: case X86_INS_FSTP: case X86_INS_FSTPNCE: case X86_INS_FIST: case X86_INS_FISTP:
    case X86_INS_FISTTP: case X86_INS_FBSTP:
      *write = true;
      return;
    case X86_INS_FXRSTOR: case X86_INS_FXRSTOR64: case X86_INS_XRSTOR: case X86_INS_XRSTOR64: case X86_INS_XRSTORS:
    case X86_INS_XRSTORS64: case X86_INS_LDMXCSR: case X86_INS_FLDENV: case X86_INS_FRSTOR: case X86_INS_FLDCW:
      *read = true;
      return;
    case X86_INS_CMPXCHG: case X86_INS_CMPXCHG8B: case X86_INS_CMPXCHG16B:
      *read = *write = true;
      return;
    default: break;
  }
  bool fpu = false, sse = false;
  for (int k = 0; k < in->detail->groups_count; k++) {
    unsigned g = in->detail->groups[k];
    if (g == X86_GRP_FPU) fpu = true;
    if ((g >= X86_GRP_SSE1 && g <= X86_GRP_SSSE3) || g == X86_GRP_MMX || g == X86_GRP_3DNOW || g == X86_GRP_AES ||
        g == X86_GRP_PCLMUL || g == X86_GRP_SHA || g == X86_GRP_F16C || g == X86_GRP_FMA || g == X86_GRP_AVX ||
        g == X86_GRP_AVX2 || g == X86_GRP_AVX512)
      sse = true;
  }
  const cs_x86 &x = in->detail->x86;
  for (int i = 0; i < x.op_count; i++) {
    unsigned r = x.operands[i].type == X86_OP_REG ? x.operands[i].reg : 0;
    if ((r >= X86_REG_XMM0 && r <= X86_REG_XMM31) || (r >= X86_REG_MM0 && r <= X86_REG_MM7)) sse = true;
  }
  if (fpu) {
    *read = true;  // the x87 stores are listed above
  } else if (sse) {
    (opIndex == 0 ? *write : *read) = true;
  } else {
    *read = (access & CS_AC_READ) != 0;
    *write = (access & CS_AC_WRITE) != 0;
    if (!*read && !*write) *read = *write = true;
  }
}

uint8_t piecesOf(const MemOp &o) {
  if (o.any || o.wide) return 255;
  return uint8_t((o.size + 7) / 8);
}

MemInsn analyze(csh cs, const cs_insn *in) {
  MemInsn m;
  m.addr = in->address;
  const cs_x86 &x = in->detail->x86;
  unsigned id = in->id;
  bool lock = x.prefix[0] == X86_PREFIX_LOCK;
  bool otherReg = false;
  for (int i = 0; i < x.op_count; i++)
    if (x.operands[i].type == X86_OP_REG && gprIndex(x.operands[i].reg) < 0) otherReg = true;
  bool btReg = (id == X86_INS_BT || id == X86_INS_BTS || id == X86_INS_BTR || id == X86_INS_BTC) && x.op_count == 2 &&
               x.operands[1].type == X86_OP_REG;
  if (!noAccess(id)) {
    for (int i = 0; i < x.op_count; i++) {
      const cs_x86_op &op = x.operands[i];
      if (op.type != X86_OP_MEM) continue;
      MemOp o;
      o.base = op.mem.base;
      o.index = op.mem.index;
      o.scale = op.mem.scale;
      o.disp = op.mem.disp;
      o.seg = op.mem.segment == X86_REG_FS ? 1 : op.mem.segment == X86_REG_GS ? 2 : 0;
      o.size = op.size;
      operandKinds(in, i, op.access, &o.read, &o.write);
      switch (id) {
        case X86_INS_FXSAVE: case X86_INS_FXSAVE64: case X86_INS_FXRSTOR: case X86_INS_FXRSTOR64:
          o.size = 512, o.wide = true;
          break;
        case X86_INS_XSAVE: case X86_INS_XSAVE64: case X86_INS_XSAVEOPT: case X86_INS_XSAVEOPT64:
        case X86_INS_XSAVEC: case X86_INS_XSAVEC64: case X86_INS_XSAVES: case X86_INS_XSAVES64:
        case X86_INS_XRSTOR: case X86_INS_XRSTOR64: case X86_INS_XRSTORS: case X86_INS_XRSTORS64:
          o.size = 4096, o.wide = true;
          break;
        default:
          if (o.size == 0) o.size = 16, o.wide = true;
          else if (o.size > 16) o.wide = true;
      }
      if (btReg) o.any = true;  // the bit offset moves the address
      m.ops.push_back(o);
    }
  }
  // Implicit stack and table accesses.
  auto implicit = [&](int base, int64_t disp, uint32_t size, bool write) {
    MemOp o;
    o.base = base, o.disp = disp, o.size = size, o.read = !write, o.write = write;
    m.ops.push_back(o);
  };
  uint32_t stackSize = x.prefix[2] == 0x66 ? 2 : 8;
  switch (id) {
    case X86_INS_PUSH: case X86_INS_PUSHFQ: implicit(X86_REG_RSP, -int64_t(stackSize), stackSize, true); break;
    case X86_INS_CALL: implicit(X86_REG_RSP, -8, 8, true); break;
    case X86_INS_POP: case X86_INS_POPFQ: implicit(X86_REG_RSP, 0, stackSize, false); break;
    case X86_INS_RET: implicit(X86_REG_RSP, 0, 8, false); break;
    case X86_INS_LEAVE: implicit(X86_REG_RBP, 0, 8, false); break;
    case X86_INS_ENTER: {
      MemOp o;
      o.any = o.read = o.write = true;
      m.ops.push_back(o);
      break;
    }
    case X86_INS_XLATB: {
      MemOp o;
      o.any = o.read = true;
      m.ops.push_back(o);
      break;
    }
    default: break;
  }
  unsigned rp = 0, wp = 0;
  for (const MemOp &o : m.ops) {
    m.read |= o.read;
    m.write |= o.write;
    if (o.read) rp += piecesOf(o);
    if (o.write) wp += piecesOf(o);
    int b = gprIndex(o.base), i = gprIndex(o.index);
    if (b >= 0) m.addrRegs |= uint16_t(1u << b);
    if (i >= 0) m.addrRegs |= uint16_t(1u << i);
  }
  m.readPieces = uint8_t(rp > 255 ? 255 : rp);
  m.writePieces = uint8_t(wp > 255 ? 255 : wp);
  m.synced = !m.ops.empty() && syncedId(id) && !lock && !otherReg;
  cs_regs rd, wr;
  uint8_t nrd = 0, nwr = 0;
  if (cs_regs_access(cs, in, rd, &nrd, wr, &nwr) == CS_ERR_OK) {
    for (int i = 0; i < nwr; i++) {
      int g = gprIndex(wr[i]);
      if (g >= 0) m.writesRegs |= uint16_t(1u << g);
    }
  } else {
    m.writesRegs = 0xffff;
  }
  return m;
}

void analyzeBlock(Machine *mm, BlockInfo &b) {
  b.mem.clear();
  b.memUnsynced = false;
  b.memReady = true;
  if (!mm->csDetail) {
    if (cs_open(CS_ARCH_X86, CS_MODE_64, &mm->csDetail) != CS_ERR_OK) return;
    cs_option(mm->csDetail, CS_OPT_DETAIL, CS_OPT_ON);
  }
  cs_insn *all = nullptr;
  size_t n = cs_disasm(mm->csDetail, b.bytes.data(), b.bytes.size(), b.addr, 0, &all);
  for (size_t i = 0; i < n; i++) {
    b.mem.push_back(analyze(mm->csDetail, &all[i]));
    if (!b.mem.back().ops.empty() && !b.mem.back().synced) b.memUnsynced = true;
  }
  if (n) cs_free(all, n);
  // An undecodable tail (Unicorn raises #UD there): no access, but keep indexes aligned.
  while (b.mem.size() < b.offsets.size()) {
    MemInsn m;
    m.addr = b.addr + b.offsets[b.mem.size()];
    b.mem.push_back(m);
  }
}

// Register values read at most once per attribution.
struct Regs {
  uc_engine *uc;
  uint64_t v[16];
  uint32_t have = 0;
  uint64_t gpr(int g) {
    static const int ID[16] = {UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX, UC_X86_REG_RSP, UC_X86_REG_RBP,
                               UC_X86_REG_RSI, UC_X86_REG_RDI, UC_X86_REG_R8,  UC_X86_REG_R9,  UC_X86_REG_R10, UC_X86_REG_R11,
                               UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15};
    if (!(have & (1u << g))) {
      v[g] = 0;
      uc_reg_read(uc, ID[g], &v[g]);
      have |= 1u << g;
    }
    return v[g];
  }
  uint64_t reg(int r, uint64_t next) {
    if (r == X86_REG_RIP || r == X86_REG_EIP) return next;
    int g = gprIndex(unsigned(r));
    if (g < 0) return 0;
    uint64_t x = gpr(g);
    return is32(unsigned(r)) ? (x & 0xffffffffull) : x;
  }
};

// Whether the access [addr, addr + size) can be one of the accesses operand o makes, with the
// registers now.
bool opMakes(const MemOp &o, Regs &regs, uc_engine *uc, uint64_t next, uint64_t addr, uint32_t size) {
  if (o.any) return true;
  uint64_t ea = uint64_t(o.disp) + regs.reg(o.base, next) + regs.reg(o.index, next) * uint64_t(o.scale);
  if (is32(unsigned(o.base)) || is32(unsigned(o.index))) ea &= 0xffffffffull;
  if (o.seg) {
    uint64_t b = 0;
    uc_reg_read(uc, o.seg == 1 ? UC_X86_REG_FS_BASE : UC_X86_REG_GS_BASE, &b);
    ea += b;
  }
  if (o.wide) return addr >= ea && addr - ea + size <= o.size;
  // Unicorn splits accesses above 8 bytes into 8-byte pieces (16-byte SSE: 8 + 8, 10-byte x87: 8 + 2)
  if (addr < ea) return false;
  uint64_t off = addr - ea;
  if (off >= o.size || (off & 7)) return false;
  return size == (o.size - off < 8 ? o.size - off : 8);
}

}  // namespace

// Attributes an access of the current block execution to an instruction index of block b.
// Returns -1 when none fits (the caller falls back on RIP); *ambiguous when it is a guess.
static int attribute(Machine *m, BlockInfo &b, uint64_t addr, uint32_t size, bool write, uint64_t rip, bool *ambiguous) {
  *ambiguous = false;
  if (m->execRing != m->ringPos) {
    m->execRing = m->ringPos;
    m->execPos = 0;
    m->execReads = m->execWrites = 0;
    m->execSeenN = 0;
    m->execGuessed = false;
  }
  Regs regs{m->uc, {}, 0};
  auto nextOf = [&](int j) { return b.addr + (size_t(j) + 1 < b.offsets.size() ? b.offsets[j + 1] : b.size); };
  int found[8], nfound = 0;
  for (int j = m->execPos; j < int(b.mem.size()) && nfound < 8; j++) {
    const MemInsn &mi = b.mem[j];
    if (mi.ops.empty() || !(write ? mi.write : mi.read)) continue;
    if (mi.synced && rip != mi.addr) continue;  // it would have stored RIP just before
    if (j == m->execPos && m->execReads + m->execWrites > 0) {
      // that instruction made accesses already: not this one again, nor more pieces than it has
      if ((write ? m->execWrites >= mi.writePieces : m->execReads >= mi.readPieces)) continue;
      bool again = false;
      for (int k = 0; k < m->execSeenN; k++)
        if (m->execSeen[k].addr == addr && m->execSeen[k].size == size && m->execSeen[k].write == write) again = true;
      if (again) continue;
    }
    bool makes = false;
    for (const MemOp &o : mi.ops)
      if ((write ? o.write : o.read) && opMakes(o, regs, m->uc, nextOf(j), addr, size)) makes = true;
    if (makes) found[nfound++] = j;
  }
  if (nfound == 0) {
    *ambiguous = m->execGuessed = true;
    return -1;
  }
  // The earliest that fits, t, made it unless a later candidate c did. c did not if something
  // that would have happened before c did not happen:
  // - t's own access, the same as this one when the registers its address uses do not change from
  //   t to c: it would have been seen (and counted to t);
  // - an instruction k in between that stores RIP (synced): RIP would be k or later;
  // - an instruction k in between with an access inside the hooked range, computed from registers
  //   that do not change from k to c: it would have been seen, and this access could not be t's.
  int t = found[0];
  int rIdx = -1;
  for (size_t i = 0; i < b.mem.size(); i++)
    if (b.mem[i].addr == rip) rIdx = int(i);
  auto plain = [](const MemInsn &mi) {
    for (const MemOp &o : mi.ops)
      if (o.any || o.wide) return false;
    return true;
  };
  auto regsOf = [](const MemOp &o) {
    uint16_t r = 0;
    int bi = gprIndex(unsigned(o.base)), ii = gprIndex(unsigned(o.index));
    if (bi >= 0) r |= uint16_t(1u << bi);
    if (ii >= 0) r |= uint16_t(1u << ii);
    return r;
  };
  auto ruledOut = [&](int c) {
    uint16_t changed = 0;
    for (int k = t; k < c; k++) changed |= b.mem[k].writesRegs;
    if (plain(b.mem[t]) && !(changed & b.mem[t].addrRegs)) return true;
    for (int k = t + 1; k < c; k++) {
      const MemInsn &w = b.mem[k];
      if (w.synced && (rIdx < k || rIdx > c)) return true;
      uint16_t after = 0;
      for (int q = k; q < c; q++) after |= b.mem[q].writesRegs;
      for (const MemOp &o : w.ops) {
        if (o.any || o.wide || !((o.read && m->watchReadHook) || (o.write && m->watchWriteHook)) || (after & regsOf(o))) continue;
        uint64_t ea = uint64_t(o.disp) + regs.reg(o.base, nextOf(k)) + regs.reg(o.index, nextOf(k)) * uint64_t(o.scale);
        if (o.seg) continue;  // (fs/gs based: not worth a base read)
        if (ea >= m->collectLo && ea <= m->collectHi) return true;
      }
    }
    return false;
  };
  for (int i = 1; i < nfound; i++)
    if (!ruledOut(found[i])) {
      *ambiguous = true;
      break;
    }
  if (nfound == 8) *ambiguous = true;  // (more candidates not looked at)
  // The proofs above assume the earlier accesses of this execution were attributed right.
  if (*ambiguous) m->execGuessed = true;
  *ambiguous |= m->execGuessed;
  if (t != m->execPos) {
    m->execPos = t;
    m->execReads = m->execWrites = 0;
    m->execSeenN = 0;
  }
  (write ? m->execWrites : m->execReads)++;
  if (m->execSeenN < 8) m->execSeen[m->execSeenN++] = {addr, size, write};
  return t;
}

void Machine::collectAccess(uint64_t addr, uint32_t size, bool write, uint64_t at, bool emulated) {
  if (stopping) return;
  bool hit = false;
  for (const Watch &w : watches)
    if ((write ? w.write : w.read) && addr < w.hi && w.lo < addr + size) hit = true;
  BlockInfo *c = cur();
  uint64_t value = instructions;  // the counter once the accessing instruction retires
  uint64_t rip = at;
  bool ambiguous = false;
  if (emulated) {
    // POPCNT/MOVBE emulated by run() (their accesses are not bounded by the hooks' range): RIP is
    // the instruction, counted once it is done.
    if (!hit) return;
    uc_reg_read(uc, UC_X86_REG_RIP, &rip);
    value = instructions + 1;
  } else if (c) {
    if (!hit && c->memReady && !c->memUnsynced) return;  // nothing to follow in such a block
    if (!c->memReady) analyzeBlock(this, *c);
    if (!hit && !c->memUnsynced) return;
    int idx = -1;
    uint64_t r = at;
    if (r == NONE) uc_reg_read(uc, UC_X86_REG_RIP, &r);
    if (at != NONE || !c->memUnsynced) {
      // Known instruction (FXSAVE's pre-hook), or every access of the block stores RIP first.
      for (size_t i = 0; i < c->offsets.size(); i++)
        if (c->addr + c->offsets[i] == r) idx = int(i);
      if (idx < 0) ambiguous = true;
      if (at != NONE && c->memUnsynced && idx >= 0) {
        // the FXSAVE's own accesses follow: the block execution is at it
        if (execRing != ringPos) execRing = ringPos, execPos = -1, execGuessed = false;
        if (execPos != idx) execPos = idx, execReads = execWrites = 0, execSeenN = 0;
      }
    } else {
      idx = attribute(this, *c, addr, size, write, r, &ambiguous);
    }
    if (!hit) return;
    if (idx < 0) {
      // Nothing fits: RIP, if it is an instruction of the block.
      for (size_t i = 0; i < c->offsets.size(); i++)
        if (c->addr + c->offsets[i] == r) idx = int(i);
    }
    if (idx >= 0) {
      rip = c->addr + c->offsets[idx];
      uint32_t counted = c->ninsns - (curRepContinued ? 1 : 0);
      // a rep string instruction iterating again was counted when it started
      value = instructions - counted + uint32_t(idx) + 1 - (curRepContinued ? 1 : 0);
    } else {
      rip = r;
    }
  } else {
    if (!hit) return;
    if (rip == NONE) uc_reg_read(uc, UC_X86_REG_RIP, &rip);  // (counting off: no block)
  }
  if (ambiguous) hitAmbiguous++;
  // One hit per instruction execution: its first access that overlaps a watch.
  if (haveLast && lastHit.rip == rip && lastHit.instructions == value && (lastHit.ring == ringPos || lastHit.smc))
    return;  // (smc: QEMU abandoned it before its store into its own block and runs it again)
  WatchHit h;
  h.rip = rip;
  h.address = addr;
  h.size = size;
  h.write = write;
  h.instructions = value;
  h.ambiguous = ambiguous;
  h.ring = ringPos;
  h.smc = write && c && addr < c->addr + c->size && c->addr < addr + size;
  prevHit = lastHit;
  havePrev = haveLast;
  lastHit = h;
  haveLast = true;
  hitCount++;
}

bool Machine::splitHalf(uint64_t addr, uint32_t size) {
  if (splitSize) {
    if (size == splitSize && (addr == splitA || addr == splitB)) {
      if (addr == splitA) splitA = NONE;
      else splitB = NONE;
      if (splitA == NONE && splitB == NONE) splitSize = 0;
      return true;
    }
    splitSize = 0;
  }
  if (size > 1 && ((addr & (PAGE - 1)) + size > PAGE)) {
    splitA = addr & ~uint64_t(size - 1);
    splitB = (addr + size - 1) & ~uint64_t(size - 1);
    splitSize = size;
  }
  return false;
}

void Machine::collectUndo(uint64_t rip) {
  if (!haveLast || lastHit.rip != rip || lastHit.ring != ringPos) return;
  hitCount--;
  lastHit = prevHit;
  haveLast = havePrev;
  havePrev = false;
}

}  // namespace ra
