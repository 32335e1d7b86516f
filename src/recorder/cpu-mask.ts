// CPU features the recorded program must not use because the replay CPU (Unicorn 2.0.1) cannot run
// them, and the environment that keeps glibc and OpenSSL away from them. Kept as data: the list will
// later be derived by probing the emulator.

export type CpuidReg = 'eax' | 'ebx' | 'ecx' | 'edx';

export interface MaskableFeature {
  /** Name as glibc's glibc.cpu.hwcaps tunable spells it (or the usual name, when glibc has none). */
  name: string;
  /** Bit in OPENSSL_ia32cap: word 0 = CPUID.1 EDX | ECX<<32, word 1 = CPUID.7.0 EBX | ECX<<32. */
  openssl?: [word: 0 | 1, bit: number];
  /** Where CPUID reports it: cleared in the CPUID table the program sees under CPUID faulting. */
  cpuid?: [leaf: number, subleaf: number, reg: CpuidReg, bit: number];
  /** false: glibc's hwcaps tunable does not know the name; it is masked through CPUID only. */
  tunable?: false;
}

type Row = [name: string, openssl?: [0 | 1, number] | null, cpuid?: [number, number, CpuidReg, number] | null, tunable?: false];
const L1 = (bit: number): [number, number, CpuidReg, number] => [1, 0, 'ecx', bit];
const L7 = (reg: CpuidReg, bit: number): [number, number, CpuidReg, number] => [7, 0, reg, bit];

/** Every feature we know how to mask, by name. */
export const KNOWN_FEATURES: Record<string, MaskableFeature> = Object.fromEntries(
  ([
    ['AVX', [0, 32 + 28], L1(28)], ['AVX2', [1, 5], L7('ebx', 5)], ['FMA', [0, 32 + 12], L1(12)],
    ['FMA4', null, [0x80000001, 0, 'ecx', 16]], ['F16C', [0, 32 + 29], L1(29)],
    ['AVX512F', [1, 16], L7('ebx', 16)], ['AVX512DQ', [1, 17], L7('ebx', 17)], ['AVX512_IFMA', [1, 21], L7('ebx', 21)],
    ['AVX512PF', [1, 26], L7('ebx', 26)], ['AVX512ER', [1, 27], L7('ebx', 27)],
    ['AVX512CD', [1, 28], L7('ebx', 28)], ['AVX512BW', [1, 30], L7('ebx', 30)], ['AVX512VL', [1, 31], L7('ebx', 31)],
    ['AVX512_VBMI', [1, 32 + 1], L7('ecx', 1)],
    ['AVX512_VBMI2', [1, 32 + 6], L7('ecx', 6)], ['AVX512_VNNI', [1, 32 + 11], L7('ecx', 11)], ['AVX512_BITALG', [1, 32 + 12], L7('ecx', 12)],
    ['AVX512_VPOPCNTDQ', [1, 32 + 14], L7('ecx', 14)], ['AVX512_FP16', null, L7('edx', 23)],
    ['AVX512_BF16', null, [7, 1, 'eax', 5]], ['AVX_VNNI', null, [7, 1, 'eax', 4]],
    ['POPCNT', [0, 32 + 23], L1(23)], ['XSAVE', [0, 32 + 26], L1(26)], ['XSAVEC'], ['OSXSAVE', [0, 32 + 27], L1(27)],
    ['MOVBE', [0, 32 + 22], L1(22)],
    ['RDRAND', [0, 32 + 30], L1(30)], ['RDSEED', [1, 18], L7('ebx', 18)], ['SHA', [1, 29], L7('ebx', 29)],
    ['PCLMULQDQ', [0, 32 + 1], L1(1)],
    ['VPCLMULQDQ', [1, 32 + 10], L7('ecx', 10)], ['VAES', [1, 32 + 9], L7('ecx', 9)], ['GFNI', [1, 32 + 8], L7('ecx', 8)],
    // A glibc 'preferred' bit derived from AVX2 before the tunables apply: memmove/memcpy pick
    // their AVX versions from it, so it has to be masked by name too.
    ['AVX_Fast_Unaligned_Load'],
    // Known to CPUID only (glibc's tunable has no name for them).
    ['AVX512_4VNNIW', null, L7('edx', 2), false], ['AVX512_4FMAPS', null, L7('edx', 3), false],
    ['AVX512_VP2INTERSECT', null, L7('edx', 8), false], ['AMX_BF16', null, L7('edx', 22), false],
    ['AMX_TILE', null, L7('edx', 24), false], ['AMX_INT8', null, L7('edx', 25), false],
    ['XOP', null, [0x80000001, 0, 'ecx', 11], false],
  ] as Row[]).map(([name, openssl, cpuid, tunable]): [string, MaskableFeature] => {
    const f: MaskableFeature = { name };
    if (openssl) f.openssl = openssl;
    if (cpuid) f.cpuid = cpuid;
    if (tunable === false) f.tunable = false;
    return [name, f];
  }),
);

/**
 * What Unicorn 2.0.1 cannot execute (measured, see docs/design): AVX and everything above it, FMA,
 * F16C, POPCNT, XSAVE*, MOVBE, RDRAND/RDSEED, SHA-NI, PCLMULQDQ and its vector forms. BMI1/2, ADX,
 * LZCNT, AES-NI, SSE4.2, ERMS and FSRM run and are kept.
 */
export const DEFAULT_MASKED_FEATURES: readonly string[] = Object.keys(KNOWN_FEATURES);

function checkKnown(features: readonly string[]) {
  const unknown = features.filter((f) => !KNOWN_FEATURES[f]);
  if (unknown.length) throw new Error(`unknown CPU feature(s) to mask: ${unknown.join(', ')} (known: ${Object.keys(KNOWN_FEATURES).join(', ')})`);
}

/** Environment variables that apply the mask, merged with what `env` already sets. */
export function maskEnv(features: readonly string[], env: NodeJS.ProcessEnv): Record<string, string> {
  checkKnown(features);
  // glibc.pthread.rseq=0: glibc does not register rseq, whose area the kernel writes at any
  // preemption (the helper also makes a program's own rseq registration fail with ENOSYS).
  const ours = [`glibc.cpu.hwcaps=${features.filter((f) => KNOWN_FEATURES[f].tunable !== false).map((f) => `-${f}`).join(',')}`, 'glibc.pthread.rseq=0'];
  const tunables = [env.GLIBC_TUNABLES, ...ours].filter((s) => s).join(':');
  const words = [0n, 0n];
  for (const f of features) {
    const o = KNOWN_FEATURES[f].openssl;
    if (o) words[o[0]] |= 1n << BigInt(o[1]);
  }
  const hex = (w: bigint) => `~0x${w.toString(16)}`;
  return { GLIBC_TUNABLES: tunables, OPENSSL_ia32cap: env.OPENSSL_ia32cap ?? `${hex(words[0])}:${hex(words[1])}` };
}

export interface CpuidMaskEntry { leaf: number; subleaf: number; reg: CpuidReg; mask: number }

/** The CPUID bits to clear for `features`, one entry per (leaf, subleaf, register), in a stable order. */
export function cpuidMask(features: readonly string[]): CpuidMaskEntry[] {
  checkKnown(features);
  const byKey = new Map<string, CpuidMaskEntry>();
  for (const f of features) {
    const c = KNOWN_FEATURES[f].cpuid;
    if (!c) continue;
    const [leaf, subleaf, reg, bit] = c;
    const key = `${leaf}:${subleaf}:${reg}`;
    const e = byKey.get(key) ?? { leaf, subleaf, reg, mask: 0 };
    e.mask = (e.mask | (1 << bit)) >>> 0;
    byKey.set(key, e);
  }
  return [...byKey.values()];
}

/** The helper's `--cpuid-mask` argument: `leaf:subleaf:reg:hexmask,...` (leaf and subleaf in hex). */
export function cpuidMaskArg(mask: readonly CpuidMaskEntry[]): string {
  return mask.map((e) => `${e.leaf.toString(16)}:${e.subleaf.toString(16)}:${e.reg}:${e.mask.toString(16)}`).join(',');
}
