// CPUID answers during replay come from the leaves the recording machine gave the program.
import type { CpuidLeaf } from '../trace/schema.ts';

export interface CpuidAnswer {
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

export class CpuidTable {
  private readonly byKey = new Map<string, CpuidLeaf>();
  /** Leaves with more than one subleaf recorded are indexed by ECX; the others ignore it, as the CPU does. */
  private readonly subleafIndexed = new Set<number>();

  constructor(leaves: readonly CpuidLeaf[]) {
    for (const l of leaves) {
      this.byKey.set(`${l.leaf >>> 0}:${l.subleaf >>> 0}`, l);
      if (l.subleaf !== 0) this.subleafIndexed.add(l.leaf >>> 0);
    }
  }

  answer(leaf: number, subleaf: number): CpuidAnswer {
    const l = leaf >>> 0;
    const key = this.subleafIndexed.has(l) ? `${l}:${subleaf >>> 0}` : `${l}:0`;
    // A leaf the recording CPU did not list reads as zeros (AMD's behaviour for out-of-range leaves).
    return this.byKey.get(key) ?? { eax: 0, ebx: 0, ecx: 0, edx: 0 };
  }
}
