// Output the kernel copies to the program's stdout/stderr from a file without passing through the
// program's memory (sendfile, copy_file_range, splice: `cat` uses copy_file_range). Replay shows
// stdout/stderr from emulator memory, so these bytes are recorded with the syscall: at entry we
// note where the input file was read from, at exit we read the same bytes from the file.
#include "ra.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

static bool to_terminal_fd(uint64_t fd) { return fd == 1 || fd == 2; }

// Current file position of the tracee's fd, from /proc/PID/fdinfo; -1 when not seekable/unknown.
static int64_t fd_position(pid_t pid, int fd) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", pid, fd);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  int64_t pos = -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "pos: %lld", (long long *)&pos) == 1) break;
  fclose(f);
  return pos;
}

// Which fd the syscall reads from and where its input offset pointer is, when it writes to fd 1/2.
static bool copy_args(const struct user_regs_struct *r, int *in_fd, uint64_t *off_ptr) {
  switch (r->orig_rax) {
  case SYS_sendfile:
    if (!to_terminal_fd(r->rdi)) return false;
    *in_fd = (int)r->rsi; *off_ptr = r->rdx; return true;
  case SYS_copy_file_range: case SYS_splice:
    if (!to_terminal_fd(r->rdx)) return false;
    *in_fd = (int)r->rdi; *off_ptr = r->rsi; return true;
  default:
    return false;
  }
}

void kernel_output_entry(struct sc_ctx *c) {
  int in_fd;
  uint64_t off_ptr;
  c->copy_from = -1;
  if (!copy_args(&c->entry, &in_fd, &off_ptr)) return;
  int64_t off = -1;
  if (off_ptr) {
    if (mem_read(c->memfd, off_ptr, &off, sizeof off) != sizeof off) off = -1;
  } else {
    off = fd_position(c->pid, in_fd);
  }
  c->copy_from = off;
}

int kernel_output_exit(struct sc_ctx *c, struct buf *out) {
  int in_fd;
  uint64_t off_ptr;
  if (c->result <= 0 || !copy_args(&c->entry, &in_fd, &off_ptr)) return 0;
  if (c->copy_from < 0) {
    snprintf(c->unsupported, sizeof c->unsupported, "(copies to stdout/stderr from fd %d, which is not a seekable file)", in_fd);
    return 0;
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd/%d", c->pid, in_fd);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(c->unsupported, sizeof c->unsupported, "(cannot reopen fd %d to read what it copied to stdout/stderr)", in_fd);
    return 0;
  }
  uint8_t *dst = buf_grow(out, (size_t)c->result);
  ssize_t got = pread(fd, dst, (size_t)c->result, c->copy_from);
  close(fd);
  if (got != c->result) {
    out->len -= (size_t)c->result;
    snprintf(c->unsupported, sizeof c->unsupported, "(could not re-read the %lld bytes it copied to stdout/stderr)", (long long)c->result);
    return 0;
  }
  return 1;
}
