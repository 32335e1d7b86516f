// Compute-bound workload: integer hashing and a sieve, few syscalls.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 20000000;
  unsigned long h = 1469598103934665603UL;
  for (long i = 0; i < n; i++) {
    h ^= (unsigned long)i;
    h *= 1099511628211UL;
    if ((h & 7) == 3) h += i >> 3;
  }
  int size = 2000000;
  char *sieve = calloc(size, 1);
  int primes = 0;
  for (int i = 2; i < size; i++) {
    if (sieve[i]) continue;
    primes++;
    for (long j = (long)i * i; j < size; j += i) sieve[j] = 1;
  }
  printf("hash %lx primes %d\n", h, primes);
  free(sieve);
  return 0;
}
