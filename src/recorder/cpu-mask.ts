// CPU features the recorded program must not use because the replay CPU (Unicorn 2.0.1) cannot run
// them, and the environment that keeps glibc and OpenSSL away from them. Kept as data: the list will
// later be derived by probing the emulator.

export interface MaskableFeature {
  /** Name as glibc's glibc.cpu.hwcaps tunable spells it. */
  name: string;
  /** Bit in OPENSSL_ia32cap: word 0 = CPUID.1 EDX | ECX<<32, word 1 = CPUID.7.0 EBX | ECX<<32. */
  openssl?: [word: 0 | 1, bit: number];
}

/** Every feature we know how to mask, by name. */
export const KNOWN_FEATURES: Record<string, MaskableFeature> = Object.fromEntries(
  ([
    ['AVX', [0, 32 + 28]], ['AVX2', [1, 5]], ['FMA', [0, 32 + 12]], ['FMA4'], ['F16C', [0, 32 + 29]],
    ['AVX512F', [1, 16]], ['AVX512DQ', [1, 17]], ['AVX512_IFMA', [1, 21]], ['AVX512PF', [1, 26]], ['AVX512ER', [1, 27]],
    ['AVX512CD', [1, 28]], ['AVX512BW', [1, 30]], ['AVX512VL', [1, 31]], ['AVX512_VBMI', [1, 32 + 1]],
    ['AVX512_VBMI2', [1, 32 + 6]], ['AVX512_VNNI', [1, 32 + 11]], ['AVX512_BITALG', [1, 32 + 12]],
    ['AVX512_VPOPCNTDQ', [1, 32 + 14]], ['AVX512_FP16'], ['AVX512_BF16'], ['AVX_VNNI'],
    ['POPCNT', [0, 32 + 23]], ['XSAVE', [0, 32 + 26]], ['XSAVEC'], ['OSXSAVE', [0, 32 + 27]], ['MOVBE', [0, 32 + 22]],
    ['RDRAND', [0, 32 + 30]], ['RDSEED', [1, 18]], ['SHA', [1, 29]], ['PCLMULQDQ', [0, 32 + 1]],
    ['VPCLMULQDQ', [1, 32 + 10]], ['VAES', [1, 32 + 9]], ['GFNI', [1, 32 + 8]],
    // A glibc 'preferred' bit derived from AVX2 before the tunables apply: memmove/memcpy pick
    // their AVX versions from it, so it has to be masked by name too.
    ['AVX_Fast_Unaligned_Load'],
  ] as Array<[string, [0 | 1, number]?]>).map(([name, openssl]) => [name, { name, openssl }]),
);

/**
 * What Unicorn 2.0.1 cannot execute (measured, see docs/design): AVX and everything above it, FMA,
 * F16C, POPCNT, XSAVE*, MOVBE, RDRAND/RDSEED, SHA-NI, PCLMULQDQ and its vector forms. BMI1/2, ADX,
 * LZCNT, AES-NI, SSE4.2, ERMS and FSRM run and are kept.
 */
export const DEFAULT_MASKED_FEATURES: readonly string[] = Object.keys(KNOWN_FEATURES);

/** Environment variables that apply the mask, merged with what `env` already sets. */
export function maskEnv(features: readonly string[], env: NodeJS.ProcessEnv): Record<string, string> {
  const unknown = features.filter((f) => !KNOWN_FEATURES[f]);
  if (unknown.length) throw new Error(`unknown CPU feature(s) to mask: ${unknown.join(', ')} (known: ${Object.keys(KNOWN_FEATURES).join(', ')})`);
  // glibc.pthread.rseq=0: glibc does not register rseq, whose area the kernel writes at any
  // preemption (the helper also makes a program's own rseq registration fail with ENOSYS).
  const ours = [`glibc.cpu.hwcaps=${features.map((f) => `-${f}`).join(',')}`, 'glibc.pthread.rseq=0'];
  const tunables = [env.GLIBC_TUNABLES, ...ours].filter((s) => s).join(':');
  const words = [0n, 0n];
  for (const f of features) {
    const o = KNOWN_FEATURES[f].openssl;
    if (o) words[o[0]] |= 1n << BigInt(o[1]);
  }
  const hex = (w: bigint) => `~0x${w.toString(16)}`;
  return { GLIBC_TUNABLES: tunables, OPENSSL_ia32cap: env.OPENSSL_ia32cap ?? `${hex(words[0])}:${hex(words[1])}` };
}
