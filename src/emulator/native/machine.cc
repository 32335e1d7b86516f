// Engine set-up, the hooks, and the run loop (one native call per stop).
#include <cstring>
#include <cstdio>

#include "machine.h"

namespace ra {

// A stop address nothing can reach: uc_emu_start needs an `until`.
static constexpr uint64_t UNTIL = 0xfffffffffffff000ull;

#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define NOINLINE __attribute__((noinline))

static void slowPath(Machine *m, uint64_t addr, uint32_t size);

// Out of line: at this block boundary a watchpoint hit waits to be reported, or a tick target,
// instruction budget or instruction target is reached.
static NOINLINE void limitReached(Machine *m, uint64_t addr, uint32_t size) {
  if (m->watchPending) {
    if (m->watchBoundary(addr)) {
      // The previous block's last instruction hit a watch (or an FXSAVE site's pre-hook did and
      // the FXSAVE has now run): stop here, before this block (the previous one retired to its end).
      m->clearCur();
      m->requestStop(STOP_WATCH, addr);
      return;
    }
    if (m->ticks < m->tickLimit && m->instructions < m->insnLimit) return slowPath(m, addr, size);
  }
  StopKind k = STOP_INSN_TARGET;
  if (m->ticks >= m->tickLimit) k = STOP_TICK_TARGET;
  else if (m->instructions >= m->insnTarget) k = STOP_INSN_TARGET;
  else k = STOP_BUDGET;
  // A rep string instruction is counted when its first iteration starts: while it iterates, the
  // instruction target is not reached yet (it lands after the last iteration).
  if (k == STOP_INSN_TARGET && m->repInProgress == addr) return slowPath(m, addr, size);
  m->clearCur();
  m->requestStop(k, addr);
}

// Out of line: the block would retire past the instruction target.
static NOINLINE void crossTarget(Machine *m, uint64_t addr, uint32_t size, size_t slot) {
  const HotBlock &h = m->hot[slot];
  if (!m->targetInBlock(addr, slot, h.ninsns)) return;
  m->ticks += h.jcc;
  m->instructions += h.ninsns;
  m->curSlot = slot;
  m->curRepContinued = false;
  m->ring[m->ringPos++ & 15] = addr | uint64_t(size) << 48;
}

// Out of line: everything but a known, trusted block entered normally.
static NOINLINE void slowPath(Machine *m, uint64_t addr, uint32_t size) {
  if (UNLIKELY(m->stopping)) return;
  // Entering the previous block somewhere other than through its own branch target: it was
  // abandoned in the middle (QEMU's precise self-modifying-code path).
  const HotBlock &p = m->hot[m->curSlot];
  if (addr - p.addr < (p.key & KEY_SIZE) && addr != p.target) m->abandoned(addr, size);
  size_t slot = slotOf(addr);
  const HotBlock &h = m->hot[slot];
  const BlockInfo &b = m->cache[slot];
  if (h.addr == addr && h.key == (size | uint64_t(m->gen) << 32 | KEY_SLOW) && m->repInProgress == NONE && b.host && !b.lastRep &&
      memcmp(b.host, b.bytes.data(), size) == 0) {
    // A known block on a guest-writable page, bytes unchanged (the common case for JIT code).
    // (libc memcmp: measured faster here than an inline word loop over guest memory.)
    if (m->instructions + h.ninsns > m->insnTarget && !m->targetInBlock(addr, slot, h.ninsns)) return;
    m->ticks += h.jcc;
    m->instructions += h.ninsns;
    m->repInProgress = NONE;
    m->curRepContinued = false;
    m->checkNext = true;
    m->updateKey();
  } else if (!m->slowBlock(addr, size, slot)) {
    return;
  }
  m->curSlot = slot;
  m->ring[m->ringPos++ & 15] = addr | uint64_t(size) << 48;
}

// Block hook: the hot path. Runs at the start of every executed block, before the block's first
// instruction. Counts the block optimistically; run() corrects the counters when the block did
// not retire to its end (fault, stop in the middle). The fast path reads the block's 32-byte
// HotBlock and a few fields of the Machine; any other case (new or changed block, bytes to
// compare, rep strings, the block after a compared one, limits, stops) is a tail call.
static void onBlock(uc_engine *, uint64_t addr, uint32_t size, void *ud) {
  Machine *m = static_cast<Machine *>(ud);
  if (UNLIKELY(m->stopping)) return;
  uint64_t ticks = m->ticks, insns = m->instructions;
  // The previous block retired completely: we are at a block boundary.
  if (UNLIKELY((ticks >= m->tickLimit) | (insns >= m->insnLimit))) return limitReached(m, addr, size);
  size_t slot = slotOf(addr);
  const HotBlock &h = m->hot[slot];
  if (UNLIKELY((h.addr != addr) | (h.key != (size | m->expectKey)))) return slowPath(m, addr, size);
  uint64_t n = insns + h.ninsns;
  if (UNLIKELY(n > m->insnTarget)) return crossTarget(m, addr, size, slot);
  m->ticks = ticks + h.jcc;
  m->instructions = n;
  m->curSlot = slot;
  m->ring[m->ringPos++ & 15] = addr | uint64_t(size) << 48;
}

// Stop-before hook, installed only on breakpoint, instruction-target and rdtsc/rdtscp/cpuid/FXSAVE
// addresses.
static void onStopHook(uc_engine *, uint64_t addr, uint32_t, void *ud) {
  Machine *m = static_cast<Machine *>(ud);
  if (m->stopping) return;
  bool skip = addr == m->skipAddr;
  m->skipAddr = NONE;
  if (m->watchPending && m->watchBoundary(addr)) {
    m->requestStop(STOP_WATCH, addr);
    return;
  }
  if (addr == m->targetHookAddr && !m->curRepContinued) {
    // Instructions retired before this one: those before it in the current block.
    const BlockInfo *c = m->cur();
    if (c && addr > c->addr && addr < c->addr + c->size) {
      uint32_t off = uint32_t(addr - c->addr), i = 0;
      while (i < c->offsets.size() && c->offsets[i] < off) i++;
      if (m->instructions - c->ninsns + i == m->insnTarget) {
        m->requestStop(STOP_INSN_TARGET, addr);
        return;
      }
    }
  }
  if (!skip && !m->ignoreBreakpoints && m->breakpoints.count(addr)) {
    m->requestStop(STOP_BREAKPOINT, addr);
    return;
  }
  StopKind k;
  if (!m->isSpecialAt(addr, &k)) return;
  if (k == STOP_SYNC_FLAGS) return;  // (its existence is the point: see StopKind)
  if (k == STOP_FXSAVE) {
    m->beforeFxsave(addr);  // no stop: QEMU then executes the FXSAVE itself
    return;
  }
  m->requestStop(k, addr);
}

static void onSyscall(uc_engine *uc, void *ud) {
  Machine *m = static_cast<Machine *>(ud);
  if (m->stopping) return;
  uint64_t rip = 0;
  uc_reg_read(uc, UC_X86_REG_RIP, &rip);
  m->clearCur();  // SYSCALL ends its block: the block retired
  m->requestStop(STOP_SYSCALL, rip);
}

// Safety net: cpuid sites are normally stopped before by their stop hook.
static int onCpuid(uc_engine *uc, void *ud) {
  Machine *m = static_cast<Machine *>(ud);
  uint64_t rip = 0;
  uc_reg_read(uc, UC_X86_REG_RIP, &rip);
  if (!m->stopping) m->requestStop(STOP_CPUID, rip);
  return 1;  // skip it: the caller answers
}

static void onInterrupt(uc_engine *uc, uint32_t intno, void *ud) {
  Machine *m = static_cast<Machine *>(ud);
  if (m->stopping) return;
  uint64_t rip = 0;
  uc_reg_read(uc, UC_X86_REG_RIP, &rip);
  m->stop.vector = intno;
  m->requestStop(STOP_INTERRUPT, rip);
}

static bool onMemInvalid(uc_engine *uc, uc_mem_type type, uint64_t address, int, int64_t, void *ud) {
  Machine *m = static_cast<Machine *>(ud);
  if (m->stopping) return false;
  m->stop.kind = STOP_FAULT;

  m->stop.address = address;
  switch (type) {
    case UC_MEM_READ_UNMAPPED: m->stop.access = 0; m->stop.cause = 0; break;
    case UC_MEM_WRITE_UNMAPPED: m->stop.access = 1; m->stop.cause = 0; break;
    case UC_MEM_FETCH_UNMAPPED: m->stop.access = 2; m->stop.cause = 0; break;
    case UC_MEM_READ_PROT: m->stop.access = 0; m->stop.cause = 1; break;
    case UC_MEM_WRITE_PROT: m->stop.access = 1; m->stop.cause = 1; break;
    case UC_MEM_FETCH_PROT: m->stop.access = 2; m->stop.cause = 1; break;
    default: break;
  }
  m->stopping = true;
  return false;
}

static bool onInvalidInsn(uc_engine *, void *ud) {
  Machine *m = static_cast<Machine *>(ud);
  if (!m->stopping) {
    m->stop.kind = STOP_INVALID;
    m->stopping = true;
  }
  return false;
}

static void must(uc_err e, const char *what) {
  if (e != UC_ERR_OK) throw Error(std::string(what) + ": " + uc_strerror(e));
}

Machine::Machine(bool counting_) : counting(counting_), hot(new HotBlock[size_t(1) << CACHE_BITS]), cache(size_t(1) << CACHE_BITS) {
  must(uc_open(UC_ARCH_X86, UC_MODE_64, &uc), "uc_open");
  cs = openCapstone();
  csInsn = cs_malloc(cs);
  uc_hook h;
  try {
    if (counting) must(uc_hook_add(uc, &h, UC_HOOK_BLOCK, (void *)onBlock, this, 1, 0), "block hook");
    must(uc_hook_add(uc, &h, UC_HOOK_INSN, (void *)onSyscall, this, 1, 0, UC_X86_INS_SYSCALL), "syscall hook");
    must(uc_hook_add(uc, &h, UC_HOOK_INSN, (void *)onCpuid, this, 1, 0, UC_X86_INS_CPUID), "cpuid hook");
    must(uc_hook_add(uc, &h, UC_HOOK_INTR, (void *)onInterrupt, this, 1, 0), "interrupt hook");
    must(uc_hook_add(uc, &h, UC_HOOK_MEM_INVALID, (void *)onMemInvalid, this, 1, 0), "memory hook");
    must(uc_hook_add(uc, &h, UC_HOOK_INSN_INVALID, (void *)onInvalidInsn, this, 1, 0), "invalid-instruction hook");
    // Linux runs user code with CR4.OSFXSR | OSXMMEXCPT; Unicorn 2.0.1 starts with them clear, and
    // QEMU's FXSAVE/FXRSTOR then skip MXCSR and XMM0-15 (glibc's _dl_runtime_resolve_fxsave lost
    // a double argument that way). Keep the other bits (long mode needs PAE).
    uint64_t cr4 = 0;
    must(uc_reg_read(uc, UC_X86_REG_CR4, &cr4), "read cr4");
    cr4 |= (1u << 9) | (1u << 10);
    must(uc_reg_write(uc, UC_X86_REG_CR4, &cr4), "write cr4");
  } catch (...) {
    close();
    throw;
  }
}

Machine::~Machine() {
  close();
  delete[] hot;
}

void Machine::close() {
  if (uc) {
    uc_close(uc);
    uc = nullptr;
  }
  for (Region &r : regions) munmapHost(r);
  regions.clear();
  if (csInsn) cs_free(csInsn, 1), csInsn = nullptr;
  if (cs) cs_close(&cs), cs = 0;
  if (csDetail) cs_close(&csDetail), csDetail = 0;
}

void Machine::addStopHook(uint64_t addr) {
  if (stopHooks.count(addr)) return;
  if (watchCodeHook) {
    // Folded into the watch code hook, which runs before every instruction anyway (see there).
    stopHooks[addr] = 0;
    stopFilterAdd(addr);
    return;
  }
  uc_hook h;
  must(uc_hook_add(uc, &h, UC_HOOK_CODE, (void *)onStopHook, this, addr, addr), "code hook");
  stopHooks[addr] = h;
  // Blocks translated before the hook existed do not call it: drop them.
  uc_ctl_remove_cache(uc, addr, addr + 1);
}

void Machine::removeStopHook(uint64_t a) {
  auto it = stopHooks.find(a);
  if (it == stopHooks.end()) return;
  if (it->second) {
    uc_hook_del(uc, it->second);
    uc_ctl_remove_cache(uc, a, a + 1);
  }
  stopHooks.erase(it);  // (a folded one may leave its filter bit: the exact look-up follows it)
}

void Machine::foldStopHooks(bool fold) {
  memset(stopFilter, 0, sizeof stopFilter);
  for (auto &e : stopHooks) {
    if (fold) {
      if (e.second) uc_hook_del(uc, e.second);
      e.second = 0;
      stopFilterAdd(e.first);
    } else if (!e.second) {
      must(uc_hook_add(uc, &e.second, UC_HOOK_CODE, (void *)onStopHook, this, e.first, e.first), "code hook");
    }
  }
  // (the caller flushes the translation cache)
}

void stopHookCallback(uc_engine *uc, uint64_t addr, uint32_t size, void *ud) { onStopHook(uc, addr, size, ud); }

void Machine::setBreakpoints(const std::vector<uint64_t> &addrs) {
  check();
  std::unordered_set<uint64_t> next(addrs.begin(), addrs.end());
  for (uint64_t a : breakpoints)
    if (!next.count(a) && !specials.count(a)) removeStopHook(a);
  breakpoints = std::move(next);
  for (uint64_t a : breakpoints) addStopHook(a);
  if (!breakpoints.count(lastBreakpoint)) lastBreakpoint = NONE;
}

void Machine::dropTargetHooks() {
  targetHookAddr = NONE;
  for (uint64_t a : targetHooks)
    if (!breakpoints.count(a) && !specials.count(a)) removeStopHook(a);
  targetHooks.clear();
}

bool Machine::targetInBlock(uint64_t addr, size_t slot, uint32_t counted) {
  // instructions < insnTarget < instructions + counted: the target falls inside this block, before
  // its instruction r (r >= 1; a rep instruction iterating again counts 0 and never gets here).
  const BlockInfo &b = cache[slot];
  uint64_t r = insnTarget - instructions;
  if (counted != b.ninsns || r == 0 || r >= b.offsets.size()) return true;  // (cannot happen)
  uint64_t x = addr + b.offsets[r];
  targetHookAddr = x;
  if (!stopHooks.count(x)) {
    targetHooks.push_back(x);
    if (watchCodeHook) addStopHook(x);  // folded (watchpoints set): effective at once, no restart
    else pendingHooks.push_back(x);
  }
  if (!pendingHooks.empty()) {
    // Stop before the block (it does not execute), install the hook, retranslate, resume: the
    // block then runs up to the hook.
    clearCur();
    requestStop(STOP_RESTART, addr);
    return false;
  }
  return true;
}

// The state is at a point where `instructions` == the target: not inside a rep instruction that
// is counted but still iterating (its target point is after its last iteration).
static bool atTarget(Machine *m, uint64_t target) {
  return m->instructions > target || (m->instructions == target && m->repInProgress != m->rip());
}

Stop Machine::run(uint64_t tickTarget, uint64_t insnBudget, bool step, uint64_t target) {
  check();
  Stop result;
  if (ticks >= tickTarget && !step) {
    result.kind = STOP_TICK_TARGET;
    result.rip = rip();
    return result;
  }
  if (step) target = NONE;
  if (target != NONE && atTarget(this, target)) {
    result.kind = STOP_INSN_TARGET;
    result.rip = rip();
    return result;
  }
  tickLimit = step ? NONE : tickTarget;
  budgetLimit = (step || insnBudget == NONE) ? NONE : (insnBudget > NONE - instructions ? NONE - 1 : instructions + insnBudget);
  insnTarget = target;
  ignoreBreakpoints = step;
  uint64_t start = rip();
  uint64_t stepStart = instructions;
  skipAddr = (lastBreakpoint == start) ? start : NONE;
  lastBreakpoint = NONE;
  watchPending = watchBefore = watchHitSmc = false;
  for (;;) {
    stop = Stop();
    stopping = false;
    splitSize = 0;  // (a page-crossing read's halves come right after it, in the same hook sequence)
    insnLimit = watchPending ? 0 : budgetLimit < insnTarget ? budgetLimit : insnTarget;
    clearCur();
    pendingHooks.clear();
    uint64_t pc = rip();
    // uc_emu_start with a count only limits blocks translated while it is set: blocks cached by
    // an earlier run would execute whole. Drop them before the first step after a run. (The
    // other way round, Unicorn flushes by itself when a run follows steps.)
    if (step && !lastStep) flushTranslations();
    lastStep = step;
    ranSinceFlush = true;
    uc_err err = uc_emu_start(uc, pc, UNTIL, 0, step ? 1 : 0);
    uint64_t now = rip();
    // A stop the block hook asked for (tick target, budget, restart) exits before the block's first
    // instruction (QEMU's exit check follows the block hook), but Unicorn 2.0.1 does not put RIP
    // there: on that exit cpu_tb_exec skips synchronize_from_tb when a stop was requested, and
    // chained TBs (direct jumps) do not store EIP, so RIP is wherever QEMU last stored it (the
    // return address of the last ret, say). Resuming from it ran the wrong code (bc -l: a loop
    // stopped by the budget resumed after a call, r15 = 0xcccccccd used as a pointer).
    // (Instruction-target and watchpoint stops come from the block hook or from a code hook, which
    // stores RIP first: setting it is right for both.)
    if ((stop.kind == STOP_BUDGET || stop.kind == STOP_TICK_TARGET || stop.kind == STOP_RESTART ||
         stop.kind == STOP_INSN_TARGET || stop.kind == STOP_WATCH) && now != stop.rip) {
      now = stop.rip;
      uc_reg_write(uc, UC_X86_REG_RIP, &now);
    }
    BlockInfo *cur = this->cur();
    // A data access fault leaves RIP at the start of the translated block, or (the block reached
    // by a chained jump) wherever QEMU last stored it: the return address of a ret, or where we
    // put it after the previous fault, even inside this block. Find the instruction.
    if (stop.kind == STOP_FAULT && stop.access != 2 && cur) {
      uint64_t at = faultingInstruction(*cur, stop.address, stop.access);
      if (at != NONE) {
        now = at;
        uc_reg_write(uc, UC_X86_REG_RIP, &now);
      }
    }
    // Correct the optimistic count of a block that did not retire to its end. (A rep instruction
    // iterating again was counted 0: stopped at it, nothing is uncounted and it stays in progress.)
    if (cur && now >= cur->addr && now < cur->addr + cur->size && !curRepContinued) {
      uint32_t off = uint32_t(now - cur->addr), retired = 0;
      while (retired < cur->offsets.size() && cur->offsets[retired] < off) retired++;
      if (retired < cur->ninsns) {
        instructions -= cur->ninsns - retired;
        ticks -= cur->jcc;
        // The block's rep instruction (last) did not start: it is counted again when it does.
        if (cur->lastRep && repInProgress == cur->lastAddr) {
          repInProgress = NONE;
          updateKey();
        }
      }
    }
    clearCur();
    if (stop.kind == STOP_RESTART) {
      for (uint64_t a : pendingHooks) addStopHook(a);
      pendingHooks.clear();
      if (step && instructions != stepStart) {
        result.kind = STOP_BUDGET;
        result.rip = now;
        skipAddr = NONE;
        break;
      }
      continue;
    }
    if (err == UC_ERR_INSN_INVALID || stop.kind == STOP_INVALID) {
      if (watchPending) {
        // The instruction before it hit a watch (no code hook ran before the invalid one).
        result = watchHit;
        break;
      }
      // POPCNT/MOVBE: emulated here, then the run goes on after them (step: that was the step).
      stopping = false;  // (the emulated access may hit a watchpoint)
      Emulated e = emulateInvalid(now);
      if (e == EMU_DONE) {
        if (watchPending) {
          result = watchHit;  // it accessed a watched range: stop after it
          break;
        }
        if (step) {
          result.kind = STOP_BUDGET;
          result.rip = rip();
          skipAddr = NONE;
          break;
        }
        skipAddr = NONE;
        continue;  // (a limit reached by it stops at the next block start, where the run resumes)
      }
      if (e == EMU_FAULT) {
        watchPending = false;
        result = stop;
        result.rip = now;
        skipAddr = NONE;
        break;
      }
    }
    result = stop;
    if (err == UC_ERR_INSN_INVALID || (result.kind == STOP_INVALID)) {
      result.kind = STOP_INVALID;
      result.rip = now;
    } else if (result.kind == STOP_FAULT || err == UC_ERR_READ_UNMAPPED || err == UC_ERR_WRITE_UNMAPPED ||
               err == UC_ERR_FETCH_UNMAPPED || err == UC_ERR_READ_PROT || err == UC_ERR_WRITE_PROT ||
               err == UC_ERR_FETCH_PROT) {
      result.kind = STOP_FAULT;
      result.rip = now;
      if (watchPending && result.access == 2 && result.address == now) {
        // The instruction that hit the watch retired; fetching the next one failed. Report the
        // watchpoint (state just after it); running again reports the fault.
        result = watchHit;
        break;
      }
    } else if (result.kind == STOP_SYSCALL) {
      // The CPU sets RCX = next RIP and R11 = RFLAGS; Unicorn does not.
      uint64_t fl = 0;
      uc_reg_read(uc, UC_X86_REG_RFLAGS, &fl);
      uc_reg_write(uc, UC_X86_REG_RCX, &now);
      uc_reg_write(uc, UC_X86_REG_R11, &fl);
      result.rip = now;
    } else if (result.kind == STOP_INTERRUPT) {
      result.rip = now;
    } else if (result.kind == STOP_WATCH) {
      result = watchHit;
    } else if (result.kind == STOP_NONE) {
      if (err != UC_ERR_OK) {
        result.kind = STOP_INTERRUPT;
        result.vector = 13;
        result.rip = now;
      } else if (step) {
        // (Unicorn's count hook stopped the step before our hooks saw a pending hit.)
        if (watchPending) {
          result = watchHit;
        } else {
          result.kind = STOP_BUDGET;
          result.rip = now;
        }
      } else {
        // Unicorn returned without a hook asking: HLT (a #GP in user mode).
        result.kind = STOP_HALT;
        result.rip = now;
      }
    }
    if (result.kind == STOP_BREAKPOINT) lastBreakpoint = result.rip;
    skipAddr = NONE;
    break;
  }
  if (result.kind == STOP_WATCH) result.instructions = instructions;
  // Collect mode: a hit by the instruction that faulted or raised an exception is not one (it did
  // not retire). (A data fault whose instruction fault.cc cannot find is not matched.)
  if (watchCollect && ((result.kind == STOP_FAULT && result.access != 2) || result.kind == STOP_INTERRUPT)) collectUndo(result.rip);
  // A hit by an instruction that did not retire (it faulted, or raised an interrupt) is dropped:
  // the instruction runs again.
  watchPending = watchBefore = watchHitSmc = false;
  insnTarget = NONE;
  insnLimit = NONE;
  dropTargetHooks();
  return result;
}

}  // namespace ra
