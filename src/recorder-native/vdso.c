// vDSO patching: clock_gettime, gettimeofday, time, getcpu and clock_getres run in user space
// without a syscall. We find them in the tracee's vDSO (dynsym of the ELF image in its memory)
// and overwrite each entry with `mov eax, NR; syscall; ret`, so they become recorded syscalls.
// The ExecEvent records the patched vDSO, so replay runs the same code.
#include "ra.h"
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

static const struct { const char *name; int nr; } targets[] = {
  { "clock_gettime", SYS_clock_gettime }, { "__vdso_clock_gettime", SYS_clock_gettime },
  { "gettimeofday", SYS_gettimeofday },   { "__vdso_gettimeofday", SYS_gettimeofday },
  { "time", SYS_time },                   { "__vdso_time", SYS_time },
  { "getcpu", SYS_getcpu },               { "__vdso_getcpu", SYS_getcpu },
  { "clock_getres", SYS_clock_getres },   { "__vdso_clock_getres", SYS_clock_getres },
};

int vdso_patch(pid_t pid, int memfd, uint64_t *syscall_at, char *err, size_t errlen) {
  *syscall_at = 0;
  struct map_entry *maps;
  int n = maps_read(pid, &maps);
  if (n < 0) { snprintf(err, errlen, "cannot read maps"); return -1; }
  uint64_t base = 0, size = 0;
  for (int i = 0; i < n; i++)
    if (strcmp(maps[i].name, "[vdso]") == 0) { base = maps[i].start; size = maps[i].end - maps[i].start; }
  free(maps);
  if (!base) return 0;  // no vDSO (vdso=0 on the kernel command line): nothing to patch
  uint8_t *img = malloc(size);
  if (mem_read(memfd, base, img, size) != (ssize_t)size) { free(img); snprintf(err, errlen, "cannot read the vDSO"); return -1; }
  int rc = -1;
  Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
  if (size < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64) {
    snprintf(err, errlen, "the vDSO is not a 64-bit ELF image");
    goto out;
  }
  if (eh->e_shoff == 0 || eh->e_shoff + (uint64_t)eh->e_shnum * sizeof(Elf64_Shdr) > size) {
    snprintf(err, errlen, "the vDSO has no section headers");
    goto out;
  }
  // Link-time address of the image start: st_value - vaddr0 is the offset in the image.
  uint64_t vaddr0 = 0;
  Elf64_Phdr *ph = (Elf64_Phdr *)(img + eh->e_phoff);
  for (int i = 0; i < eh->e_phnum; i++) if (ph[i].p_type == PT_LOAD) { vaddr0 = ph[i].p_vaddr - ph[i].p_offset; break; }
  Elf64_Shdr *sh = (Elf64_Shdr *)(img + eh->e_shoff);
  int patched = 0;
  for (int i = 0; i < eh->e_shnum; i++) {
    if (sh[i].sh_type != SHT_DYNSYM || sh[i].sh_link >= eh->e_shnum) continue;
    Elf64_Shdr *strs = &sh[sh[i].sh_link];
    if (sh[i].sh_offset + sh[i].sh_size > size || strs->sh_offset + strs->sh_size > size) continue;
    Elf64_Sym *syms = (Elf64_Sym *)(img + sh[i].sh_offset);
    size_t nsyms = sh[i].sh_size / sizeof(Elf64_Sym);
    for (size_t k = 0; k < nsyms; k++) {
      if (ELF64_ST_TYPE(syms[k].st_info) != STT_FUNC || syms[k].st_name >= strs->sh_size) continue;
      const char *name = (const char *)img + strs->sh_offset + syms[k].st_name;
      for (size_t t = 0; t < sizeof targets / sizeof *targets; t++) {
        if (strcmp(name, targets[t].name) != 0) continue;
        uint64_t off = syms[k].st_value - vaddr0;
        if (syms[k].st_size < 8 || off + 8 > size) {
          snprintf(err, errlen, "vDSO function %s is too small to patch", name);
          goto out;
        }
        uint8_t code[8] = { 0xb8, 0, 0, 0, 0, 0x0f, 0x05, 0xc3 };  // mov eax, NR; syscall; ret
        uint32_t nr = (uint32_t)targets[t].nr;
        memcpy(code + 1, &nr, 4);
        if (mem_write(memfd, base + off, code, sizeof code) < 0) {
          snprintf(err, errlen, "cannot write the vDSO at 0x%llx", (unsigned long long)(base + off));
          goto out;
        }
        patched++;
        *syscall_at = base + off + 5;
      }
    }
  }
  rc = patched;
out:
  free(img);
  return rc;
}
