// Capstone disassembly for people (divergence reports, the debugger).
#include "machine.h"

namespace ra {

csh openCapstone() {
  csh h = 0;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK) throw Error("capstone: cannot open an x86-64 decoder");
  return h;
}

std::vector<Insn> disassemble(csh cs, const uint8_t *code, size_t size, uint64_t address, size_t count) {
  std::vector<Insn> out;
  cs_insn *insn = cs_malloc(cs);
  uint64_t pc = address;
  while (size > 0 && out.size() < count) {
    const uint8_t *at = code;
    uint64_t here = pc;
    if (!cs_disasm_iter(cs, &code, &size, &pc, insn)) {
      out.push_back({here, std::vector<uint8_t>(at, at + std::min<size_t>(size, 15)), "(undecodable)"});
      break;
    }
    std::string text = insn->mnemonic;
    if (insn->op_str[0]) text += std::string(" ") + insn->op_str;
    out.push_back({insn->address, std::vector<uint8_t>(insn->bytes, insn->bytes + insn->size), text});
  }
  cs_free(insn, 1);
  return out;
}

}  // namespace ra
