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

// What the block hook needs about one block, packed in 32 bytes (two per cache line). The hook's
// fast path reads only this; everything else about the block is in the BlockInfo of the same slot.
struct alignas(32) HotBlock {
  uint64_t addr = NONE;
  uint64_t target = NONE;  // direct branch target of the last instruction, if any
  uint64_t key = 0;        // size | gen << 32 | KEY_SLOW: the hook compares it with one load
  uint32_t ninsns = 0;
  uint32_t jcc = 0;        // 1 when the last instruction is a Jcc
};
static_assert(sizeof(HotBlock) == 32, "HotBlock is half a cache line");
// Set in a HotBlock's key when the block needs the slow path on every execution (bytes to
// compare, or a rep string instruction): Machine::expectKey never has it.
constexpr uint64_t KEY_SLOW = 1ull << 31;
// Set in Machine::expectKey to send the next block to the slow path too: while a rep string
// instruction is iterating, and after a block whose bytes are compared (only such a block can be
// abandoned in the middle by QEMU's precise self-modifying-code path). No HotBlock has it.
constexpr uint64_t KEY_FORCE = 1ull << 30;
constexpr uint64_t KEY_SIZE = KEY_FORCE - 1;  // block sizes are below 2^16

// One memory operand of an instruction (collect.cc): address = disp + base + index * scale (+ fs/gs
// base), from the registers at the time of the access.
struct MemOp {
  int base = 0, index = 0;  // capstone x86_reg (0: none)
  int scale = 1;
  int64_t disp = 0;
  int seg = 0;              // 1 fs, 2 gs
  uint32_t size = 0;        // bytes
  bool read = false, write = false;
  bool any = false;         // the address cannot be computed (xlat, enter, bt with a register offset)
  bool wide = false;        // a helper touches [ea, ea + size) in pieces we do not model (fxsave...)
};

// What collect mode needs about one instruction of a block.
struct MemInsn {
  uint64_t addr = 0;
  bool synced = false;  // every access goes through Unicorn's gen_op_ld_v/gen_op_st_v, which store RIP
  bool read = false, write = false;
  uint8_t readPieces = 0, writePieces = 0;  // accesses of each kind Unicorn makes (8-byte pieces)
  uint16_t addrRegs = 0;                    // general registers its addresses depend on (bit per GPR)
  uint16_t writesRegs = 0;                  // general registers it writes
  std::vector<MemOp> ops;
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
  bool verify = false;        // compare the bytes on every execution (KEY_SLOW in its HotBlock)
  const uint8_t *host = nullptr;  // host bytes of the block when contiguous, else null
  std::vector<uint8_t> bytes;     // the bytes decoded, compared on every execution (SMC check)
  std::vector<uint16_t> offsets;  // instruction start offsets
  // Collect-mode watchpoints (collect.cc): what each instruction's memory accesses are, decoded
  // with capstone detail the first time a watched access happens in the block (decode() resets it).
  std::vector<MemInsn> mem;
  bool memReady = false;
  bool memUnsynced = false;  // some instruction accesses memory without Unicorn storing RIP first
};

enum StopKind {
  STOP_NONE, STOP_SYSCALL, STOP_CPUID, STOP_RDTSC, STOP_RDTSCP, STOP_INVALID, STOP_FAULT,
  STOP_INTERRUPT, STOP_TICK_TARGET, STOP_BREAKPOINT, STOP_BUDGET, STOP_RESTART, STOP_HALT,
  STOP_FXSAVE,  // never returned: FXSAVE sites get a hook that fixes what QEMU leaves out (blocks.cc)
  // never returned: cmpxchg8b/16b sites get a hook that does nothing. QEMU 5's helper computes
  // the flags from the lazy flags state in the CPU, which the translator has not stored yet when
  // an earlier instruction of the block left it pending: RFLAGS came out as garbage (TF set: a
  // #DB on the next run). Unicorn stores that state before calling a code hook.
  STOP_SYNC_FLAGS,
  STOP_INSN_TARGET,  // instructions == the instruction target (machine.cc)
  STOP_WATCH,        // just after an instruction that accessed a watched range (watch.cc)
};

struct Stop {
  StopKind kind = STOP_NONE;
  uint64_t rip = 0;
  uint64_t address = 0;
  int access = 0;  // 0 read, 1 write, 2 fetch
  int cause = 0;   // 0 unmapped, 1 protection
  uint32_t vector = 0;
  uint32_t size = 0;          // STOP_WATCH: bytes of the access
  uint64_t instructions = 0;  // STOP_WATCH: the counter once the accessing instruction retired
};

// One watched range [lo, hi) and the access kinds it stops on.
struct Watch {
  uint64_t lo, hi;
  bool read, write;
};

// A collect-mode watchpoint hit (collect.cc).
struct WatchHit {
  uint64_t rip = 0, address = 0, instructions = 0;
  uint32_t size = 0;
  bool write = false;
  bool ambiguous = false;  // more than one instruction of its block could have made the access
  bool smc = false;        // a store into its own block (QEMU may run the instruction again alone)
  uint32_t ring = 0;       // ringPos when it was made: the block execution
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
  // insnTarget: stop exactly when `instructions` reaches it (NONE: no target).
  Stop run(uint64_t tickTarget, uint64_t insnBudget, bool step, uint64_t insnTarget = NONE);
  void setBreakpoints(const std::vector<uint64_t> &addrs);
  // The block at addr (slot) would retire past the instruction target: stop before its
  // instruction number insnTarget - instructions (a one-address stop hook). False: the run stops
  // before the block (a hook is being installed).
  bool targetInBlock(uint64_t addr, size_t slot, uint32_t counted);

  // watch.cc
  // collect: no stop on hits; they are counted and the last one kept (collect.cc, takeWatchHits).
  void setWatchpoints(const std::vector<Watch> &list, bool collect = false);
  // A guest access [addr, addr+size) by the instruction at rip (NONE: read RIP): records the
  // first one that overlaps a watch of its kind in this instruction (watchPending).
  void watchAccess(uint64_t addr, uint32_t size, bool write, uint64_t rip);
  std::vector<Watch> watches;
  uint64_t watchLo = NONE, watchHi = 0;  // hull of the watched ranges
  uc_hook watchReadHook = 0, watchWriteHook = 0, watchCodeHook = 0;
  bool watchPending = false;  // an access hit a watch; stop before the next instruction
  // The hit was found before its instruction ran (FXSAVE's pre-hook): the first stop point at
  // that instruction is not yet the boundary after it.
  bool watchBefore = false;
  Stop watchHit;              // that access (kind STOP_WATCH, rip, address, size, access)
  // The hit is a store into the current block's own bytes: QEMU's precise self-modifying-code
  // path may abandon the instruction before the store and run it again as a block of its own.
  bool watchHitSmc = false;

  // collect.cc: collect mode (setWatchpoints(list, true)): only the memory hooks exist; run()
  // never stops for a hit. Each hit is attributed to its instruction and counted.
  bool watchCollect = false;
  uint64_t hitCount = 0;
  uint64_t hitAmbiguous = 0;  // hits whose instruction was a guess (counted or merged with the last)
  WatchHit lastHit, prevHit;  // prevHit: the one before lastHit (lastHit may be undone: a fault)
  bool haveLast = false, havePrev = false;
  // A guest access the memory hook saw in collect mode (rip NONE: attribute it to an
  // instruction of the current block), or made by an emulated instruction at rip (emulated).
  void collectAccess(uint64_t addr, uint32_t size, bool write, uint64_t rip, bool emulated);
  // The run stopped with a fault or exception at rip: the instruction did not retire, a hit it
  // made is not one.
  void collectUndo(uint64_t rip);
  // The current block execution (ringPos) and the instruction of it that made the last access
  // seen, with what it accessed so far (collect.cc attribute()).
  uint32_t execRing = ~0u;
  int execPos = 0;
  uint8_t execReads = 0, execWrites = 0;
  struct Seen { uint64_t addr; uint32_t size; bool write; };
  Seen execSeen[8];
  uint8_t execSeenN = 0;
  bool execGuessed = false;  // an access of this block execution was attributed by a guess
  // Unicorn 2.0.1 calls a read hook again for the two aligned halves of a read that crosses a
  // page (load_helper splits it), right after the read itself: those calls are not guest
  // accesses. splitHalf(addr, size) for each read the hook sees: true for such a half. (The hooks
  // reach 7 bytes above the watched ranges so that the read itself is always seen first.)
  bool splitHalf(uint64_t addr, uint32_t size);
  uint64_t splitA = NONE, splitB = NONE;
  uint32_t splitSize = 0;
  csh csDetail = 0;  // capstone with detail, for the collect-mode decoder
  uint64_t collectLo = 0, collectHi = 0;  // the memory hooks' bounds (inclusive)
  // Whether a hook at addr that sees watchPending stops there: the first instruction boundary
  // after the hitting instruction retired. Not the hitting instruction itself before it runs
  // (watchBefore), nor when QEMU runs it again (watchHitSmc: the hit is dropped, it comes again).
  bool watchBoundary(uint64_t addr) {
    if (addr != watchHit.rip) return true;
    if (watchBefore) {
      watchBefore = false;
      return false;
    }
    if (watchHitSmc) {
      watchPending = watchHitSmc = false;
      insnLimit = budgetLimit < insnTarget ? budgetLimit : insnTarget;
      return false;
    }
    return true;
  }

  // blocks.cc
  // Slow path of the block hook: verifies or (re)decodes the slot, counts the block. Returns
  // false when the run must stop before the block (a stop was requested).
  bool slowBlock(uint64_t addr, uint32_t size, size_t slot);
  void decode(uint64_t addr, uint32_t size, size_t slot);
  // The previous block did not retire to its end (QEMU's precise SMC path): uncount its tail.
  void abandoned(uint64_t addr, uint32_t size);
  // Drops every decoded block (memory layout changed or code we trusted was overwritten).
  void flushBlocks();
  bool isSpecialAt(uint64_t addr, StopKind *kind);
  // emulate.cc: POPCNT and MOVBE, which Unicorn 2.0.1 raises #UD for
  enum Emulated { EMU_NO, EMU_DONE, EMU_FAULT };
  Emulated emulateInvalid(uint64_t rip);  // EMU_FAULT: `stop` describes a memory fault
  bool guestAccess(uint64_t addr, uint8_t *buf, size_t n, bool write);
  // fault.cc
  uint64_t faultingInstruction(const BlockInfo &b, uint64_t address, int access);
  // The address of the (first) memory operand of the instruction at rip, from the current
  // registers; NONE if it has none or does not decode.
  uint64_t memOperandAddress(uint64_t rip);
  // Before an FXSAVE/FXSAVE64 at rip: zero bytes 10-15 of its eight ST/MM slots, which the CPU
  // writes as zeros and QEMU 5.0's helper_fxsave leaves as they were (it stores 10 bytes each).
  void beforeFxsave(uint64_t rip);

  uc_engine *uc = nullptr;
  csh cs = 0;
  cs_insn *csInsn = nullptr;
  bool counting;

  uint64_t ticks = 0, instructions = 0;
  // insnLimit = min(budget limit, instruction target): the block hook's one check at block starts
  uint64_t tickLimit = NONE, insnLimit = NONE, budgetLimit = NONE, insnTarget = NONE;
  // The address of the stop hook placed for the instruction target inside a block (NONE: none).
  uint64_t targetHookAddr = NONE;
  std::vector<uint64_t> targetHooks;  // stop hooks added for targets, removed when the run ends
  void dropTargetHooks();
  bool stopping = false;
  Stop stop;
  // decoded-block cache: direct-mapped, hot part and cold part indexed by the same slot; hot has
  // one more entry, NO_SLOT, empty (size 0): the "current block" when there is none.
  static constexpr size_t CACHE_BITS = 16;
  static constexpr size_t NO_SLOT = size_t(1) << CACHE_BITS;
  HotBlock *hot = nullptr;
  std::vector<BlockInfo> cache;
  // The block counted optimistically and possibly not finished (NO_SLOT: none).
  size_t curSlot = NO_SLOT;
  BlockInfo *cur() { return curSlot == NO_SLOT ? nullptr : &cache[curSlot]; }
  uint32_t gen = 1;  // bumped when decoded blocks may be stale (map/unmap/protect, write to trusted code)
  uint64_t expectKey = uint64_t(1) << 32;  // gen << 32, | KEY_FORCE (see there)
  bool checkNext = false;                  // the current block's bytes are compared
  void updateKey() { expectKey = (uint64_t(gen) << 32) | (repInProgress != NONE || checkNext ? KEY_FORCE : 0); }
  // Pages holding blocks decoded that are not compared: write() into them flushes the cache.
  std::unordered_set<uint64_t> trustedPages;

  // stop-before hooks: one UC_HOOK_CODE per address (breakpoints, rdtsc/rdtscp/cpuid sites)
  // (0: folded into the watch code hook while watchpoints are set: a code hook per address would
  // make Unicorn walk it before every instruction then, about 2 ns each)
  std::unordered_map<uint64_t, uc_hook> stopHooks;
  uint64_t stopFilter[64] = {};  // folded stop-hook addresses, one bit per hash of 12 bits
  static unsigned stopHash(uint64_t a) { return unsigned((a * 0x9E3779B97F4A7C15ull) >> 52); }
  void stopFilterAdd(uint64_t a) { stopFilter[stopHash(a) >> 6] |= 1ull << (stopHash(a) & 63); }
  bool stopFilterHas(uint64_t a) const { return (stopFilter[stopHash(a) >> 6] >> (stopHash(a) & 63)) & 1; }
  void removeStopHook(uint64_t addr);
  void foldStopHooks(bool fold);
  std::unordered_set<uint64_t> breakpoints;
  std::unordered_set<uint64_t> specials;
  std::vector<uint64_t> pendingHooks;
  uint64_t skipAddr = NONE;
  uint64_t repInProgress = NONE;  // a rep string instruction already counted, iterating
  // The current block (curSlot) is a rep instruction iterating again: the hook counted it 0, not 1.
  bool curRepContinued = false;
  uint64_t lastBreakpoint = NONE;
  bool ignoreBreakpoints = false;
  bool lastStep = false;  // the last uc_emu_start had a count (step)
  // QEMU has run (and so translated) code since the last TB flush. A flush costs ~90 ms in
  // Unicorn 2.0.1 whatever is cached, so it is skipped when nothing can be cached (a fresh engine,
  // as every checkpoint restore makes).
  bool ranSinceFlush = false;
  void flushTranslations() {
    if (!ranSinceFlush) return;
    uc_ctl(uc, UC_CTL_WRITE(UC_CTL_TB_FLUSH, 0));
    ranSinceFlush = false;
  }
  void addStopHook(uint64_t addr);

  void clearCur() {
    curSlot = NO_SLOT;
    curRepContinued = false;
  }

  // recent blocks ring: address | size << 48 (user addresses are below 2^47, blocks below 64 KiB)
  uint64_t ring[16] = {};
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

inline size_t slotOf(uint64_t addr) {
  return size_t((addr * 0x9E3779B97F4A7C15ull) >> (64 - Machine::CACHE_BITS));
}

// machine.cc: the stop-before hook's callback (breakpoints, targets, rdtsc/cpuid/FXSAVE sites)
void stopHookCallback(uc_engine *uc, uint64_t addr, uint32_t size, void *ud);

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
