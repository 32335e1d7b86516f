// The page digest of execution points (docs/execution-points.md): a 64-bit hash of one 4096-byte
// page. Part of the trace format: the recorder (C) hashes the recorded process's pages with it and
// replay (the emulator addon, C++) hashes the emulated pages with it, so both must include this one
// definition. Not cryptographic: it tells two contents apart with probability 1 - 2^-64.
#ifndef RA_PAGE_HASH_H
#define RA_PAGE_HASH_H
#include <stdint.h>
#include <string.h>

#define RA_PAGE_SIZE 4096

static inline uint64_t ra_hash_final(uint64_t h) {
  h ^= h >> 31;
  h *= 0x7fb5d329728ea185ull;
  h ^= h >> 27;
  h *= 0x81dadef4bc2dd44dull;
  h ^= h >> 33;
  return h;
}

// Four independent multiply-xorshift lanes over 32-byte strides, folded and finalised.
static inline uint64_t ra_page_hash(const void *page) {
  const unsigned char *p = (const unsigned char *)page;
  uint64_t a = 0x9e3779b97f4a7c15ull, b = 0xd6e8feb86659fd93ull, c = 0xa0761d6478bd642full, d = 0xe7037ed1a0b428dbull;
  for (int i = 0; i < RA_PAGE_SIZE; i += 32) {
    uint64_t w[4];
    memcpy(w, p + i, sizeof w);
    a = (a ^ w[0]) * 0x9fb21c651e98df25ull; a ^= a >> 29;
    b = (b ^ w[1]) * 0xc2b2ae3d27d4eb4full; b ^= b >> 29;
    c = (c ^ w[2]) * 0x165667b19e3779f9ull; c ^= c >> 29;
    d = (d ^ w[3]) * 0x85ebca77c2b2ae63ull; d ^= d >> 29;
  }
  return ra_hash_final(a ^ ((b << 17) | (b >> 47)) ^ ((c << 31) | (c >> 33)) ^ ((d << 47) | (d >> 17)));
}

#endif
