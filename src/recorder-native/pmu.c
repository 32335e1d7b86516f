// PMU detection: the retired-conditional-branch counter (rr's "RCB") for this CPU, user mode only.
// Where perf_event_open of the raw event fails (most VMs, this machine) the recorder runs in
// no-PMU mode and events carry no ticks.
#include "ra.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <linux/perf_event.h>

// Intel models from Ice Lake on count branches with 0x5111c4 (rr's table).
static const uint32_t intel_icelake_plus[] = {
  0x6a, 0x6c, 0x7d, 0x7e, 0x8c, 0x8d, 0x8f, 0x97, 0x9a, 0xa7, 0xaa, 0xac, 0xad, 0xae, 0xb7, 0xba,
  0xbd, 0xbe, 0xbf, 0xc5, 0xc6, 0xcf, 0xdd,
};

static int rcb_config(uint64_t *config, char *desc, size_t desclen) {
  char vendor[13];
  uint32_t family, model;
  cpuid_vendor(vendor, &family, &model);
  if (strcmp(vendor, "GenuineIntel") == 0 && family == 6) {
    *config = 0x5101c4;
    for (size_t i = 0; i < sizeof intel_icelake_plus / sizeof *intel_icelake_plus; i++)
      if (intel_icelake_plus[i] == model) *config = 0x5111c4;
    return 0;
  }
  if (strcmp(vendor, "AuthenticAMD") == 0 && family >= 0x17) { *config = 0x5100d1; return 0; }
  snprintf(desc, desclen, "no known retired-conditional-branch event for %s family 0x%x model 0x%x", vendor, family, model);
  return -1;
}

static int open_counter(pid_t tid, uint64_t config) {
  struct perf_event_attr a;
  memset(&a, 0, sizeof a);
  a.size = sizeof a;
  a.type = PERF_TYPE_RAW;
  a.config = config;
  a.exclude_kernel = 1;
  a.exclude_hv = 1;
  a.exclude_guest = 1;
  a.pinned = 1;
  return (int)syscall(SYS_perf_event_open, &a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

int pmu_detect(char *desc, size_t desclen, uint64_t *config) {
  if (rcb_config(config, desc, desclen) < 0) return 0;
  int fd = open_counter(0, *config);
  if (fd < 0) {
    snprintf(desc, desclen, "perf_event_open of raw event 0x%llx failed: %s", (unsigned long long)*config, strerror(errno));
    return 0;
  }
  // The counter must really count: a pinned event that cannot be scheduled reads 0 forever.
  volatile int sink = 0;
  for (int i = 0; i < 1000; i++) if (i % 3 == 0) sink++;
  uint64_t v = pmu_read(fd);
  close(fd);
  if (v == 0 || v == UINT64_MAX) {
    snprintf(desc, desclen, "raw event 0x%llx opened but counted nothing", (unsigned long long)*config);
    return 0;
  }
  snprintf(desc, desclen, "raw:0x%llx", (unsigned long long)*config);
  return 1;
}

int pmu_attach(pid_t tid, uint64_t config) { return open_counter(tid, config); }

uint64_t pmu_read(int fd) {
  uint64_t v = 0;
  if (read(fd, &v, sizeof v) != sizeof v) return UINT64_MAX;
  return v;
}
