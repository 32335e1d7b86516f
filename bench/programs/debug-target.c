// Debugger benchmark workload: one write to a global near the start (what reverse-continue with a
// watchpoint looks for from the end), then a long compute loop, then exit.
#include <stdio.h>
#include <stdlib.h>

volatile long marker;

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 20000000;
  marker = n;
  unsigned long h = 1469598103934665603UL;
  for (long i = 0; i < n; i++) {
    h ^= (unsigned long)i;
    h *= 1099511628211UL;
    if ((h & 7) == 3) h += i >> 3;
  }
  printf("hash %lx\n", h);
  return 0;
}
