// Core of the emulator addon: one Unicorn x86-64 engine plus the state our hooks keep
// (tick/instruction counters, the decoded-block cache, stop requests). No N-API in here.
#pragma once
#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ra {

// Thrown for bad input; the N-API layer turns it into a JS Error. Never thrown from a hook.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr uint64_t PAGE = 4096;
constexpr uint64_t NONE = ~0ull;

// One mapping. Guest memory is host memory we allocate (uc_mem_map_ptr), so the addon can read
// guest bytes by pointer (cheap block verification) and split mappings without copying.
struct Region {
  uint64_t start, end;
  uint32_t prot;
  uint8_t *host;  // host address of `start`
};

// Facts about one translated block, decoded once with capstone (blocks.cc).
struct BlockInfo {
  uint64_t addr = NONE;
  uint32_t size = 0;
  uint32_t ninsns = 0;
  uint32_t jcc = 0;           // 1 when the last instruction is a Jcc (a tick when it retires)
  uint64_t target = NONE;     // direct branch target of the last instruction, if any
  uint64_t lastAddr = NONE;   // address of the last instruction
  bool lastRep = false;       // last instruction is a rep-prefixed string instruction
  uint64_t gen = 0;           // memory-layout generation the host pointer belongs to
  const uint8_t *host = nullptr;  // host bytes of the block when contiguous, else null
  std::vector<uint8_t> bytes;     // the bytes decoded, compared on every execution (SMC check)
  std::vector<uint16_t> offsets;  // instruction start offsets
};

enum StopKind {
  STOP_NONE, STOP_SYSCALL, STOP_CPUID, STOP_RDTSC, STOP_RDTSCP, STOP_INVALID, STOP_FAULT,
  STOP_INTERRUPT, STOP_TICK_TARGET, STOP_BREAKPOINT, STOP_BUDGET, STOP_RESTART, STOP_HALT,
};

struct Stop {
  StopKind kind = STOP_NONE;
  uint64_t rip = 0;
  uint64_t address = 0;
  int access = 0;  // 0 read, 1 write, 2 fetch
  int cause = 0;   // 0 unmapped, 1 protection
  uint32_t vector = 0;
};

struct Machine {
  explicit Machine(bool counting);
  ~Machine();
  void close();
  bool closed() const { return uc == nullptr; }

  // memory.cc
  void map(uint64_t addr, uint64_t size, uint32_t prot);
  void unmap(uint64_t addr, uint64_t size);
  void protect(uint64_t addr, uint64_t size, uint32_t prot);
  void read(uint64_t addr, uint8_t *out, uint64_t size);
  void write(uint64_t addr, const uint8_t *data, uint64_t size);
  // Host pointer for [addr, addr+size) when it lies in one region, else null.
  uint8_t *hostPtr(uint64_t addr, uint64_t size);
  std::vector<Region> regions;  // sorted by start, disjoint

  // regs.cc
  uint64_t getReg(const std::string &name);
  void setReg(const std::string &name, uint64_t v);
  void getUserRegs(uint8_t out[216]);
  void setUserRegs(const uint8_t in[216]);
  void getFxsave(uint8_t out[512]);
  void setFxsave(const uint8_t in[512]);
  uint64_t rip();

  // machine.cc
  Stop run(uint64_t tickTarget, uint64_t insnBudget, bool step);
  void setBreakpoints(const std::vector<uint64_t> &addrs);

  // blocks.cc
  BlockInfo *lookup(uint64_t addr, uint32_t size);
  bool isSpecialAt(uint64_t addr, StopKind *kind);
  // fault.cc
  uint64_t faultingInstruction(const BlockInfo &b, uint64_t address, int access);

  uc_engine *uc = nullptr;
  csh cs = 0;
  cs_insn *csInsn = nullptr;
  bool counting;

  uint64_t ticks = 0, instructions = 0;
  uint64_t tickLimit = NONE, insnLimit = NONE;
  bool stopping = false;
  Stop stop;
  BlockInfo *cur = nullptr;  // block counted optimistically and possibly not finished

  // decoded-block cache: direct-mapped
  static constexpr size_t CACHE_BITS = 16;
  std::vector<BlockInfo> cache;
  uint64_t gen = 1;  // bumped when host pointers may change (unmap)

  // stop-before hooks: one UC_HOOK_CODE per address (breakpoints, rdtsc/rdtscp/cpuid sites)
  std::unordered_map<uint64_t, uc_hook> stopHooks;
  std::unordered_set<uint64_t> breakpoints;
  std::unordered_set<uint64_t> specials;
  std::vector<uint64_t> pendingHooks;
  uint64_t skipAddr = NONE;
  uint64_t repInProgress = NONE;  // a rep string instruction already counted, iterating
  uint64_t lastBreakpoint = NONE;
  bool ignoreBreakpoints = false;
  void addStopHook(uint64_t addr);

  // recent blocks ring
  struct Recent { uint64_t addr; uint32_t size; };
  Recent ring[16] = {};
  uint32_t ringPos = 0;

  // shadow state that is not a CPU register in Unicorn
  uint64_t origRax = 0;
  uint64_t sel[6] = {0x33, 0x2b, 0, 0, 0, 0};  // cs ss ds es fs gs

  void requestStop(StopKind k, uint64_t rip) {
    stop.kind = k;
    stop.rip = rip;
    stopping = true;
    uc_emu_stop(uc);
  }
  void check() const {
    if (!uc) throw Error("Machine is closed");
  }
};

// memory.cc: frees the host memory backing a region
void munmapHost(const Region &r);

// disasm.cc
struct Insn {
  uint64_t address;
  std::vector<uint8_t> bytes;
  std::string text;
};
std::vector<Insn> disassemble(csh cs, const uint8_t *code, size_t size, uint64_t address, size_t count);
csh openCapstone();

}  // namespace ra
