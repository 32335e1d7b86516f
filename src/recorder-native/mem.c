// Tracee memory through /proc/PID/mem (one pread per range; FOLL_FORCE reads PROT_NONE and
// writes read-only text, which the vDSO patch needs) and /proc/PID/maps parsing.
#include "ra.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <sys/mman.h>

int mem_open(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/mem", pid);
  return open(path, O_RDWR | O_CLOEXEC);
}

ssize_t mem_read(int memfd, uint64_t addr, void *dst, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = pread(memfd, (char *)dst + done, n - done, (off_t)(addr + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    done += (size_t)r;
  }
  return (ssize_t)done;
}

void mem_read_zero(int memfd, uint64_t addr, void *dst, size_t n) {
  if (mem_read(memfd, addr, dst, n) == (ssize_t)n) return;
  // Page by page: pages that cannot be read (past the end of a mapped file...) read as zeros.
  size_t done = 0;
  while (done < n) {
    uint64_t a = addr + done;
    size_t chunk = 4096 - (a & 4095);
    if (chunk > n - done) chunk = n - done;
    if (mem_read(memfd, a, (char *)dst + done, chunk) != (ssize_t)chunk) memset((char *)dst + done, 0, chunk);
    done += chunk;
  }
}

int mem_write(int memfd, uint64_t addr, const void *src, size_t n) {
  ssize_t w = pwrite(memfd, src, n, (off_t)addr);
  return w == (ssize_t)n ? 0 : -1;
}

int maps_read(pid_t pid, struct map_entry **out) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  FILE *f = fopen(path, "re");
  if (!f) return -1;
  int n = 0, cap = 16;
  struct map_entry *v = malloc(sizeof *v * cap);
  char *line = NULL;
  size_t linecap = 0;
  while (getline(&line, &linecap, f) > 0) {
    if (n == cap) v = realloc(v, sizeof *v * (cap *= 2));
    struct map_entry *m = &v[n];
    char perms[8] = {0};
    int name_at = 0;
    unsigned long long s, e, off;
    if (sscanf(line, "%llx-%llx %7s %llx %*x:%*x %*u %n", &s, &e, perms, &off, &name_at) < 4) continue;
    m->start = s; m->end = e; m->offset = off;
    m->prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) | (perms[2] == 'x' ? PROT_EXEC : 0);
    m->flags = perms[3] == 's' ? MAP_SHARED : MAP_PRIVATE;
    char *name = line + name_at;
    size_t len = strlen(name);
    while (len && (name[len - 1] == '\n' || name[len - 1] == ' ')) name[--len] = 0;
    snprintf(m->name, sizeof m->name, "%s", name);
    n++;
  }
  free(line);
  fclose(f);
  *out = v;
  return n;
}
