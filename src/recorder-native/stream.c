// The helper's output stream to the TS side (src/recorder/stream.ts parses it).
//
// Format: a sequence of records, all integers little-endian:
//   u32 type, u32 zero, u64 payloadLength, payload[payloadLength]
// Payload fields are u32, u64, i64, BYTES = u64 length + raw bytes, STR = BYTES holding UTF-8.
// EV = u32 pid, u32 tid, u32 hasTicks, u64 ticks (common prefix of events).
// MAPPING = u64 start, u64 end, u32 prot, u32 flags, u64 offset, STR name, u32 hasData, [BYTES data]
// WRITE = u64 addr, BYTES data
//   1 INFO        u32 cpuidFaulting, u32 pmu, STR pmuEventOrReason, u32 cpu (the CPU we pinned to, or -1),
//                 u64 xcr0, u32 patchedSites (SITE_* bits: instructions trapped by int3 patches)
//   2 CPUID       u32 n, n x (u32 leaf, subleaf, eax, ebx, ecx, edx)
//   3 EXEC        EV, STR path, u32 argc, argc x STR, BYTES regs(216), BYTES fpregs(512),
//                 BYTES auxv, u64 brk, u32 nmaps, nmaps x MAPPING
//   4 SYSCALL     EV, u64 number, BYTES regs(216), i64 result, u32 noReturn, u32 nwrites,
//                 nwrites x WRITE, u32 nmaps, nmaps x MAPPING, u32 hasOutput, [BYTES output],
//                 u32 outputTarget (for writes to fd 1/2: 0 that fd of the recording, 1/2 the recording's
//                 stdout/stderr through the other fd, 3 not the recording's output at all)
//   5 RDTSC       EV, u64 rip, u32 isRdtscp, u64 value, u32 aux
//   6 SIGNAL      EV, u32 signo, i32 code, u32 synchronous, u64 addr, BYTES regs, u32 fatal,
//                 u32 nwrites, nwrites x WRITE, u32 hasHandlerRegs, [BYTES handlerRegs]
//   7 EXIT        EV, u32 signaled, u32 codeOrSignal, u32 processExit
//   8 EXEC_FAILED u32 errno, STR message         (the program could not be started)
//   9 STOPPED     STR message   (recording stopped on something unsupported; the program was killed)
//  10 ERROR       STR message   (helper failure)
//  11 END         (clean end of the stream: the recorded process tree is gone)
//  12 CLONE       EV (creating thread), u32 childPid, u32 childTid, u64 flags, BYTES regs(216),
//                 BYTES fpregs(512), u32 nwrites, nwrites x WRITE (into the child's memory)
// The stream is buffered and flushed at event boundaries before the tracee may block, so a killed
// helper loses at most the events of the last few milliseconds, never half a record that the
// reader would take for whole (a truncated record is detected by its length).
#include "ra.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>

static int out_fd = -1;
static struct buf out;
static struct timespec last_flush;

void buf_reserve(struct buf *b, size_t more) {
  if (b->len + more <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more) cap *= 2;
  b->p = realloc(b->p, cap);
  if (!b->p) { fprintf(stderr, "ra-recorder: out of memory\n"); _exit(70); }
  b->cap = cap;
}
uint8_t *buf_grow(struct buf *b, size_t n) { buf_reserve(b, n); uint8_t *p = b->p + b->len; b->len += n; return p; }
void buf_raw(struct buf *b, const void *p, size_t n) { if (n) memcpy(buf_grow(b, n), p, n); }
void buf_u32(struct buf *b, uint32_t v) { buf_raw(b, &v, 4); }
void buf_u64(struct buf *b, uint64_t v) { buf_raw(b, &v, 8); }
void buf_bytes(struct buf *b, const void *p, size_t n) { buf_u64(b, n); buf_raw(b, p, n); }
void buf_str(struct buf *b, const char *s) { buf_bytes(b, s, strlen(s)); }

void stream_init(int fd) { out_fd = fd; clock_gettime(CLOCK_MONOTONIC_COARSE, &last_flush); }

static void write_all(const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(out_fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      _exit(71);  // the reader is gone; EXITKILL takes the tracee with us
    }
    p += w; n -= (size_t)w;
  }
}

void stream_flush(void) {
  if (out.len) write_all(out.p, out.len);
  out.len = 0;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &last_flush);
}

// Flush when much is buffered or the last flush is older than 20 ms.
bool stream_should_flush(void) {
  if (out.len == 0) return false;
  if (out.len >= 64 * 1024) return true;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  long ms = (now.tv_sec - last_flush.tv_sec) * 1000 + (now.tv_nsec - last_flush.tv_nsec) / 1000000;
  return ms >= 20;
}

void stream_record(uint32_t type, struct buf *payload) {
  uint32_t hdr[4] = { type, 0, (uint32_t)payload->len, (uint32_t)((uint64_t)payload->len >> 32) };
  if (payload->len >= (1u << 20)) {  // big record: write straight through
    stream_flush();
    write_all((uint8_t *)hdr, sizeof hdr);
    write_all(payload->p, payload->len);
  } else {
    buf_raw(&out, hdr, sizeof hdr);
    buf_raw(&out, payload->p, payload->len);
  }
  payload->len = 0;
}

void stream_message(uint32_t type, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  struct buf b = {0};
  buf_str(&b, msg);
  stream_record(type, &b);
  free(b.p);
  stream_flush();
}
