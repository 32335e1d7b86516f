// Function ranges of an ELF file, from its .eh_frame (one FDE per function compiled with unwind
// tables, the x86-64 default) and its FUNC symbols with a size (.symtab, .dynsym). patch_sites.c
// decodes instructions only from these starts: a linear sweep over a whole segment would take
// data in code (OpenSSL keeps constant tables in .text) for instructions.
#include "ra.h"
#include <elf.h>
#include <stdlib.h>
#include <string.h>

struct reader { const uint8_t *p, *end; bool bad; };

static uint64_t rd_bytes(struct reader *r, int n) {
  if (r->p + n > r->end) { r->bad = true; r->p = r->end; return 0; }
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= (uint64_t)r->p[i] << (8 * i);
  r->p += n;
  return v;
}

static uint64_t rd_uleb(struct reader *r) {
  uint64_t v = 0;
  for (int shift = 0; r->p < r->end && shift < 64; shift += 7) {
    uint8_t b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  r->bad = true;
  return v;
}

static int64_t rd_sleb(struct reader *r) {
  int64_t v = 0;
  int shift = 0;
  uint8_t b = 0x80;
  while (r->p < r->end && shift < 64 && (b & 0x80)) {
    b = *r->p++;
    v |= (int64_t)(b & 0x7f) << shift;
    shift += 7;
  }
  if (b & 0x80) r->bad = true;
  else if (shift < 64 && (b & 0x40)) v |= -((int64_t)1 << shift);
  return v;
}

// A DW_EH_PE-encoded pointer; `vaddr` is the link-time address of the field (for pcrel).
static uint64_t rd_encoded(struct reader *r, uint8_t enc, uint64_t vaddr, bool *ok) {
  if (enc == 0xff) { *ok = false; return 0; }  // DW_EH_PE_omit
  uint64_t v;
  switch (enc & 0x0f) {
  case 0x00: v = rd_bytes(r, 8); break;                          // absptr
  case 0x01: v = rd_uleb(r); break;
  case 0x02: v = rd_bytes(r, 2); break;
  case 0x03: v = rd_bytes(r, 4); break;
  case 0x04: v = rd_bytes(r, 8); break;
  case 0x09: v = (uint64_t)rd_sleb(r); break;
  case 0x0a: v = (uint64_t)(int64_t)(int16_t)rd_bytes(r, 2); break;
  case 0x0b: v = (uint64_t)(int64_t)(int32_t)rd_bytes(r, 4); break;
  case 0x0c: v = rd_bytes(r, 8); break;
  default: r->bad = true; *ok = false; return 0;
  }
  switch (enc & 0x70) {
  case 0x00: break;
  case 0x10: v += vaddr; break;  // pcrel
  default: *ok = false; return v;  // textrel, datarel, funcrel: not used for FDE addresses here
  }
  *ok = !r->bad && !(enc & 0x80);  // indirect: a pointer to the value, not the value
  return v;
}

static void add_range(struct func_ranges *out, uint64_t lo, uint64_t hi) {
  if (hi <= lo || hi - lo > (1u << 26)) return;
  if (out->n == out->cap) {
    out->cap = out->cap ? out->cap * 2 : 1024;
    out->r = realloc(out->r, sizeof *out->r * out->cap);
    if (!out->r) { out->n = out->cap = 0; return; }
  }
  out->r[out->n].lo = lo;
  out->r[out->n].hi = hi;
  out->n++;
}

// Every FDE of the .eh_frame bytes [p, end), whose first byte is at link-time address `vaddr`.
static void eh_frame_ranges(const uint8_t *p, const uint8_t *end, uint64_t vaddr, struct func_ranges *out) {
  const uint8_t *base = p;
  while (p + 4 <= end) {
    struct reader r = { p, end, false };
    uint64_t len = rd_bytes(&r, 4);
    if (len == 0) break;  // terminator
    if (len == 0xffffffff) len = rd_bytes(&r, 8);
    const uint8_t *body = r.p, *next = body + len;
    if (r.bad || len > (uint64_t)(end - body)) break;
    uint32_t id = (uint32_t)rd_bytes(&r, 4);
    if (id != 0) {
      // An FDE: its CIE is `id` bytes before the id field; read the CIE's FDE pointer encoding.
      const uint8_t *cie = body - id;
      uint8_t fde_enc = 0;  // absptr unless the CIE says otherwise
      if (cie >= base && cie + 4 < end) {
        struct reader c = { cie, end, false };
        uint64_t clen = rd_bytes(&c, 4);
        if (clen == 0xffffffff) clen = rd_bytes(&c, 8);
        const uint8_t *cend = c.p + clen;
        if (cend > end) cend = end;
        c.end = cend;
        rd_bytes(&c, 4);  // CIE id
        uint8_t version = (uint8_t)rd_bytes(&c, 1);
        const char *aug = (const char *)c.p;
        size_t auglen = strnlen(aug, (size_t)(cend - c.p));
        c.p += auglen + 1;
        rd_uleb(&c);  // code alignment
        rd_sleb(&c);  // data alignment
        if (version == 1) rd_bytes(&c, 1); else rd_uleb(&c);  // return address register
        if (auglen > 0 && aug[0] == 'z') {
          rd_uleb(&c);  // augmentation data length
          for (size_t k = 1; k < auglen && !c.bad; k++) {
            bool ok;
            switch (aug[k]) {
            case 'R': fde_enc = (uint8_t)rd_bytes(&c, 1); break;
            case 'L': rd_bytes(&c, 1); break;
            case 'P': { uint8_t e = (uint8_t)rd_bytes(&c, 1); rd_encoded(&c, e & 0x7f, 0, &ok); break; }
            case 'S': case 'B': break;
            default: c.bad = true;  // unknown augmentation: the rest cannot be parsed
            }
          }
        }
        if (c.bad) fde_enc = 0xff;
      }
      bool ok_lo, ok_len;
      uint64_t lo = rd_encoded(&r, fde_enc, vaddr + (uint64_t)(r.p - base), &ok_lo);
      uint64_t n = rd_encoded(&r, fde_enc & 0x0f, 0, &ok_len);
      if (ok_lo && ok_len) add_range(out, lo, lo + n);
    }
    p = next;
  }
}

static void symbol_ranges(const uint8_t *img, size_t size, const Elf64_Shdr *sh, int shnum, struct func_ranges *out) {
  for (int i = 0; i < shnum; i++) {
    if (sh[i].sh_type != SHT_SYMTAB && sh[i].sh_type != SHT_DYNSYM) continue;
    if (sh[i].sh_offset > size || sh[i].sh_size > size - sh[i].sh_offset) continue;
    const Elf64_Sym *syms = (const Elf64_Sym *)(img + sh[i].sh_offset);
    size_t n = sh[i].sh_size / sizeof *syms;
    for (size_t k = 0; k < n; k++)
      if (ELF64_ST_TYPE(syms[k].st_info) == STT_FUNC && syms[k].st_shndx != SHN_UNDEF && syms[k].st_size > 0)
        add_range(out, syms[k].st_value, syms[k].st_value + syms[k].st_size);
  }
}

static int by_start(const void *a, const void *b) {
  const struct func_range *x = a, *y = b;
  return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : (x->hi < y->hi ? -1 : x->hi > y->hi);
}

// Link-time address -> offset in the image, through the PT_LOAD segments.
static bool vaddr_to_offset(const uint8_t *img, size_t size, uint64_t vaddr, uint64_t *off) {
  const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
  const Elf64_Phdr *ph = (const Elf64_Phdr *)(img + eh->e_phoff);
  for (int i = 0; i < eh->e_phnum; i++) {
    if (ph[i].p_type != PT_LOAD || vaddr < ph[i].p_vaddr || vaddr - ph[i].p_vaddr >= ph[i].p_filesz) continue;
    *off = ph[i].p_offset + (vaddr - ph[i].p_vaddr);
    return *off < size;
  }
  return false;
}

int elf_function_ranges(const uint8_t *img, size_t size, struct func_ranges *out) {
  memset(out, 0, sizeof *out);
  const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
  if (size < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64) return -1;
  if (eh->e_phoff > size || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > size - eh->e_phoff) return -1;
  bool have_sections = eh->e_shoff && eh->e_shoff <= size && (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) <= size - eh->e_shoff &&
                       eh->e_shstrndx < eh->e_shnum;
  bool found_eh_frame = false;
  if (have_sections) {
    const Elf64_Shdr *sh = (const Elf64_Shdr *)(img + eh->e_shoff);
    const Elf64_Shdr *names = &sh[eh->e_shstrndx];
    for (int i = 0; i < eh->e_shnum; i++) {
      if (sh[i].sh_type != SHT_PROGBITS || names->sh_offset + sh[i].sh_name >= size) continue;
      if (strcmp((const char *)img + names->sh_offset + sh[i].sh_name, ".eh_frame") != 0) continue;
      if (sh[i].sh_offset > size || sh[i].sh_size > size - sh[i].sh_offset) continue;
      eh_frame_ranges(img + sh[i].sh_offset, img + sh[i].sh_offset + sh[i].sh_size, sh[i].sh_addr, out);
      found_eh_frame = true;
    }
    symbol_ranges(img, size, sh, eh->e_shnum, out);
  }
  if (!found_eh_frame) {
    // No section headers: .eh_frame_hdr (PT_GNU_EH_FRAME) names where .eh_frame starts.
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(img + eh->e_phoff);
    for (int i = 0; i < eh->e_phnum; i++) {
      uint64_t off;
      if (ph[i].p_type != PT_GNU_EH_FRAME || !vaddr_to_offset(img, size, ph[i].p_vaddr, &off) || off + 4 > size) continue;
      struct reader r = { img + off, img + size, false };
      uint8_t version = (uint8_t)rd_bytes(&r, 1), ptr_enc = (uint8_t)rd_bytes(&r, 1);
      rd_bytes(&r, 2);  // fde_count and table encodings
      bool ok;
      uint64_t eh_frame = rd_encoded(&r, ptr_enc, ph[i].p_vaddr + 4, &ok);
      uint64_t fo;
      if (version == 1 && ok && vaddr_to_offset(img, size, eh_frame, &fo)) eh_frame_ranges(img + fo, img + size, eh_frame, out);
    }
  }
  if (out->n) qsort(out->r, out->n, sizeof *out->r, by_start);
  return 0;
}
