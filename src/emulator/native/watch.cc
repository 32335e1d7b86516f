// Watchpoints: stop just after a guest instruction that reads or writes a watched range.
//
// While watchpoints are set, three hooks exist (none otherwise, so they cost nothing then):
// - UC_HOOK_MEM_WRITE / UC_HOOK_MEM_READ, bounded to the watched ranges' hull (less 15 bytes, so an
//   access that starts below a range and straddles into it is seen; plus 7, see splitHalf): they
//   record the first access of an instruction that overlaps a watch of its kind (watchAccess) and
//   do not stop;
// - a UC_HOOK_CODE over every address, whose callback does nothing until a hit is pending: its
//   reason to exist is what Unicorn 2.0.1 emits with it before each instruction (RIP and the lazy
//   flags state stored, then an exit check). The next instruction's hook then stops the run before
//   that instruction runs, with RIP and RFLAGS exact: the state is exactly the one just after the
//   accessing instruction. If that instruction ended its block, the next block's hook stops first.
//
// Collect mode (setWatchpoints(list, true), collect.cc) keeps only the two memory hooks and never
// stops: hits are attributed to their instruction, counted, and the last one kept.
//
// Why not a cheaper scheme (measured and tried, see docs/emulator.md): a memory hook's uc_emu_stop
// lets the rest of the translated block run; write-protecting the watched pages makes only their
// accesses slow, but the hook cannot stop after the access either, and aborting the access leaves
// RIP at the block start and QEMU's lazy flags state (cc_op) stale; read protection is only checked
// when a TLB entry is filled in 2.0.1.
#include "machine.h"

namespace ra {

static void onWatchMem(uc_engine *, uc_mem_type type, uint64_t addr, int size, int64_t, void *ud) {
  Machine *m = static_cast<Machine *>(ud);
  if (type == UC_MEM_READ && m->splitHalf(addr, uint32_t(size))) return;
  m->watchAccess(addr, uint32_t(size), type == UC_MEM_WRITE, NONE);
}

// Collect mode: the same bounded hooks, no code hook; the hit is attributed and counted (collect.cc).
static void onCollectMem(uc_engine *, uc_mem_type type, uint64_t addr, int size, int64_t, void *ud) {
  Machine *m = static_cast<Machine *>(ud);
  if (type == UC_MEM_READ && m->splitHalf(addr, uint32_t(size))) return;
  m->collectAccess(addr, uint32_t(size), type == UC_MEM_WRITE, NONE, false);
}

static __attribute__((noinline)) void watchCodeSlow(uc_engine *uc, uint64_t addr, uint32_t size, Machine *m) {
  if (m->stopHooks.count(addr)) return stopHookCallback(uc, addr, size, m);  // (checks watchPending first)
  if (m->watchPending && !m->stopping && m->watchBoundary(addr)) m->requestStop(STOP_WATCH, addr);
}

// Before every instruction while watchpoints are set. Also does the work of the stop-before hooks
// (breakpoints, targets, rdtsc/cpuid/FXSAVE sites), folded into it meanwhile: Unicorn calls every
// code hook's bounds check on each instruction once one hook covers them all.
static void onWatchCode(uc_engine *uc, uint64_t addr, uint32_t size, void *ud) {
  Machine *m = static_cast<Machine *>(ud);
  if (__builtin_expect(m->watchPending | m->stopFilterHas(addr), 0)) watchCodeSlow(uc, addr, size, m);
}

void Machine::watchAccess(uint64_t addr, uint32_t size, bool write, uint64_t at) {
  // (from the FXSAVE pre-hook, at = its address, or an emulated instruction, at = NONE)
  if (watchCollect) return collectAccess(addr, size, write, at, at == NONE);
  if (watchPending || stopping) return;  // the first hit of the instruction is reported
  for (const Watch &w : watches) {
    if (!(write ? w.write : w.read) || !(addr < w.hi && w.lo < addr + size)) continue;
    watchHit = Stop();
    watchHit.kind = STOP_WATCH;
    watchHit.address = addr;
    watchHit.size = size;
    watchHit.access = write ? 1 : 0;
    if (at == NONE) uc_reg_read(uc, UC_X86_REG_RIP, &at);  // stored before each instruction (code hook)
    watchHit.rip = at;
    const BlockInfo *c = cur();
    watchHitSmc = write && c && addr < c->addr + c->size && c->addr < addr + size;
    watchPending = true;
    insnLimit = 0;  // the next block start stops too (limitReached)
    return;
  }
}

void Machine::setWatchpoints(const std::vector<Watch> &list, bool collect) {
  check();
  for (const Watch &w : list)
    if (w.hi <= w.lo || (!w.read && !w.write)) throw Error("setWatchpoints: empty range or no access kind");
  bool hadCode = watchCodeHook != 0;
  bool hadRead = watchReadHook != 0, hadWrite = watchWriteHook != 0;
  watches = list;
  watchCollect = collect && !list.empty();
  splitSize = 0;
  bool needRead = false, needWrite = false;
  watchLo = NONE;
  watchHi = 0;
  for (const Watch &w : watches) {
    needRead |= w.read;
    needWrite |= w.write;
    if (w.lo < watchLo) watchLo = w.lo;
    if (w.hi > watchHi) watchHi = w.hi;
  }
  // 15 bytes lower: an access that starts below a range and straddles into it. 7 bytes higher: a
  // read crossing a page whose aligned lower half (read again by Unicorn, see splitHalf) reaches
  // a range is seen itself first, and that half is not taken for an access.
  uint64_t lo = watchLo < 15 ? 0 : watchLo - 15, hi = watchHi - 1 + 7;
  collectLo = lo;
  collectHi = hi;
  // Replace the memory hooks (their bounds are fixed when added). The new one is added before the
  // old one goes, so a kind of hook never disappears in between.
  auto replace = [&](uc_hook &h, bool need, int type) {
    uc_hook old = h;
    h = 0;
    if (need) {
      uc_err e = uc_hook_add(uc, &h, type, watchCollect ? (void *)onCollectMem : (void *)onWatchMem, this, lo, hi);
      if (e != UC_ERR_OK) throw Error(std::string("watch hook: ") + uc_strerror(e));
    }
    if (old) uc_hook_del(uc, old);
  };
  replace(watchWriteHook, needWrite, UC_HOOK_MEM_WRITE);
  replace(watchReadHook, needRead, UC_HOOK_MEM_READ);
  // The code hook (precise mode only) stops the run after a hit; collect mode never stops.
  bool any = !watches.empty() && !watchCollect;
  if (any && !watchCodeHook) {
    uc_err e = uc_hook_add(uc, &watchCodeHook, UC_HOOK_CODE, (void *)onWatchCode, this, 1, 0);
    if (e != UC_ERR_OK) throw Error(std::string("watch code hook: ") + uc_strerror(e));
    foldStopHooks(true);
  } else if (!any && watchCodeHook) {
    uc_hook_del(uc, watchCodeHook);
    watchCodeHook = 0;
    foldStopHooks(false);
  }
  // Whether QEMU sends loads/stores to the helpers that call memory hooks, and emits the code
  // hook's call before each instruction, is decided when a block is translated: retranslate.
  if (any != hadCode || needRead != hadRead || needWrite != hadWrite) flushTranslations();
}

}  // namespace ra
