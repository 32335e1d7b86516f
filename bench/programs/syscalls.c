// Syscall-heavy workload: many small writes and reads, like a chatty program.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 30000;
  int out = open("/dev/null", O_WRONLY);
  int in = open("/dev/zero", O_RDONLY);
  char buf[64];
  long total = 0;
  for (int i = 0; i < n; i++) {
    total += write(out, "x", 1);
    total += read(in, buf, sizeof buf);
  }
  printf("%ld bytes\n", total);
  return 0;
}
