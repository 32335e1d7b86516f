// Guest memory with Linux mmap/munmap/mprotect semantics. Each mapping is host memory we own,
// handed to Unicorn with uc_mem_map_ptr. Partial unmap/protect re-maps the surviving pieces at
// their same host addresses: nothing is copied, and host pointers stay valid.
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "machine.h"

namespace ra {

static std::string hex(uint64_t v) {
  char b[32];
  snprintf(b, sizeof b, "0x%llx", (unsigned long long)v);
  return b;
}

static constexpr uint64_t LIMIT = 1ull << 47;

static void checkRange(const char *op, uint64_t addr, uint64_t size) {
  if (addr % PAGE) throw Error(std::string(op) + ": address " + hex(addr) + " is not page-aligned");
  if (size == 0 || size % PAGE) throw Error(std::string(op) + ": size " + hex(size) + " is not a positive multiple of 4096");
  if (addr >= LIMIT || size > LIMIT || addr + size > LIMIT)
    throw Error(std::string(op) + ": range " + hex(addr) + "+" + hex(size) + " is outside user space");
}

static void checkProt(const char *op, uint32_t prot) {
  if (prot & ~7u) throw Error(std::string(op) + ": bad protection " + std::to_string(prot));
}

// x86 pages that are writable or executable are also readable.
static uint32_t ucProt(uint32_t prot) { return prot ? (prot | UC_PROT_READ) : uint32_t(UC_PROT_NONE); }

void munmapHost(const Region &r) { munmap(r.host, r.end - r.start); }

static void ucMap(Machine *m, const Region &r) {
  uc_err e = uc_mem_map_ptr(m->uc, r.start, r.end - r.start, ucProt(r.prot), r.host);
  if (e != UC_ERR_OK) throw Error("map " + hex(r.start) + ": " + uc_strerror(e));
}

void Machine::map(uint64_t addr, uint64_t size, uint32_t prot) {
  check();
  checkRange("map", addr, size);
  checkProt("map", prot);
  for (const Region &r : regions)
    if (r.start < addr + size && addr < r.end)
      throw Error("map: " + hex(addr) + "+" + hex(size) + " overlaps the mapping " + hex(r.start) + "-" + hex(r.end));
  void *p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw Error("map: out of host memory for " + hex(size) + " bytes");
  Region r{addr, addr + size, prot, static_cast<uint8_t *>(p)};
  try {
    ucMap(this, r);
  } catch (...) {
    munmap(p, size);
    throw;
  }
  uc_ctl_remove_cache(uc, addr, addr + size);
  regions.insert(std::upper_bound(regions.begin(), regions.end(), r,
                                  [](const Region &a, const Region &b) { return a.start < b.start; }),
                 r);
  flushBlocks();
}

// Apply `fn` to every region overlapping [addr, end): the region is taken out of Unicorn and
// replaced by the pieces fn returns (all within it, sharing its host memory).
template <class F>
static void rework(Machine *m, uint64_t addr, uint64_t end, F fn) {
  std::vector<Region> out;
  for (const Region &r : m->regions) {
    if (r.end <= addr || end <= r.start) {
      out.push_back(r);
      continue;
    }
    uint64_t lo = std::max(r.start, addr), hi = std::min(r.end, end);
    // Drop translated code of the affected part before Unicorn forgets the page.
    uc_ctl_remove_cache(m->uc, lo, hi);
    uc_err e = uc_mem_unmap(m->uc, r.start, r.end - r.start);
    if (e != UC_ERR_OK) throw Error("unmap " + hex(r.start) + ": " + uc_strerror(e));
    std::vector<Region> pieces;
    if (r.start < lo) pieces.push_back({r.start, lo, r.prot, r.host});
    fn(Region{lo, hi, r.prot, r.host + (lo - r.start)}, pieces);
    if (hi < r.end) pieces.push_back({hi, r.end, r.prot, r.host + (hi - r.start)});
    for (const Region &p : pieces) {
      ucMap(m, p);
      out.push_back(p);
    }
  }
  std::sort(out.begin(), out.end(), [](const Region &a, const Region &b) { return a.start < b.start; });
  m->regions = std::move(out);
  m->flushBlocks();
}

void Machine::unmap(uint64_t addr, uint64_t size) {
  check();
  checkRange("unmap", addr, size);
  rework(this, addr, addr + size, [](const Region &mid, std::vector<Region> &) { munmapHost(mid); });
}

void Machine::protect(uint64_t addr, uint64_t size, uint32_t prot) {
  check();
  checkRange("protect", addr, size);
  checkProt("protect", prot);
  for (uint64_t a = addr; a < addr + size;) {
    auto it = std::find_if(regions.begin(), regions.end(), [&](const Region &r) { return r.start <= a && a < r.end; });
    if (it == regions.end()) throw Error("protect: address " + hex(a) + " is not mapped");
    a = it->end;
  }
  rework(this, addr, addr + size, [prot](const Region &mid, std::vector<Region> &pieces) {
    Region p = mid;
    p.prot = prot;
    pieces.push_back(p);
  });
}

uint8_t *Machine::hostPtr(uint64_t addr, uint64_t size) {
  // regions is sorted: binary search for the last region starting at or before addr
  size_t lo = 0, hi = regions.size();
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (regions[mid].start <= addr) lo = mid + 1;
    else hi = mid;
  }
  if (lo == 0) return nullptr;
  const Region &r = regions[lo - 1];
  if (addr >= r.end || size > r.end - addr) return nullptr;
  return r.host + (addr - r.start);
}

template <class F>
static void eachPiece(Machine *m, const char *op, uint64_t addr, uint64_t size, F fn) {
  if (addr >= LIMIT || size > LIMIT || addr + size > LIMIT)
    throw Error(std::string(op) + ": range " + hex(addr) + "+" + hex(size) + " is outside user space");
  // Check everything first: a failed call has no effect.
  for (uint64_t a = addr; a < addr + size;) {
    uint8_t *p = m->hostPtr(a, 1);
    if (!p) throw Error(std::string(op) + ": address " + hex(a) + " is not mapped");
    const Region *r = nullptr;
    for (const Region &x : m->regions)
      if (x.start <= a && a < x.end) r = &x;
    a = r->end;
  }
  for (uint64_t a = addr, done = 0; done < size;) {
    const Region *r = nullptr;
    for (const Region &x : m->regions)
      if (x.start <= a && a < x.end) r = &x;
    uint64_t n = std::min(size - done, r->end - a);
    fn(r->host + (a - r->start), a, n, done);
    a += n;
    done += n;
  }
}

void Machine::read(uint64_t addr, uint8_t *out, uint64_t size) {
  check();
  if (size == 0) return;
  eachPiece(this, "read", addr, size, [&](uint8_t *h, uint64_t, uint64_t n, uint64_t done) { memcpy(out + done, h, n); });
}

void Machine::write(uint64_t addr, const uint8_t *data, uint64_t size) {
  check();
  if (size == 0) return;
  eachPiece(this, "write", addr, size, [&](uint8_t *h, uint64_t a, uint64_t n, uint64_t done) {
    memcpy(h, data + done, n);
    // Unicorn does not see writes through our pointer: drop code translated from these bytes.
    uc_ctl_remove_cache(uc, a, a + n);
  });
  // Our block cache compares the bytes of blocks on guest-writable pages; blocks elsewhere are
  // trusted, so a write into their pages drops them (rare: loaders write code before it runs).
  if (!trustedPages.empty())
    for (uint64_t p = addr & ~(PAGE - 1); p < addr + size; p += PAGE)
      if (trustedPages.count(p)) {
        flushBlocks();
        break;
      }
}

}  // namespace ra
