// One process's memory in the emulator: built from an exec event, then changed by the memory
// syscalls (mmap, munmap, mprotect, mremap, brk) and by stack growth, as Linux would change it.
import { Machine, PROT_READ, PROT_WRITE } from '../emulator/machine.ts';
import type { Bytes, ExecEvent, Mapping, SyscallEvent } from '../trace/schema.ts';
import { syscallArgs } from './registers.ts';

export const PAGE = 4096;
const pageDown = (a: number) => Math.floor(a / PAGE) * PAGE;
const pageUp = (a: number) => Math.ceil(a / PAGE) * PAGE;
/** Linux's default RLIMIT_STACK, how far below its end the stack may grow on a fault: for traces
 * whose exec events do not carry the limit. setrlimit/prlimit64 changes are followed. */
export const DEFAULT_STACK_LIMIT = 8 * 1024 * 1024;
const RLIMIT_STACK = 3;
const PROT_MASK = 7;
const MREMAP_DONTUNMAP = 4;

const SYS_MMAP = 9, SYS_MPROTECT = 10, SYS_MUNMAP = 11, SYS_BRK = 12, SYS_MREMAP = 25, SYS_SETRLIMIT = 160, SYS_PRLIMIT64 = 302;

const CHUNK = 1 << 22;
const ZEROS = Buffer.alloc(CHUNK);

export type ResolveBytes = (b: Bytes) => Uint8Array;

/** Bytes per chunk of a SpaceImage: the unit shared between consecutive images. */
const IMAGE_CHUNK = 1 << 16;

/** A process's memory and kernel-side memory state frozen at one moment (a replay checkpoint).
 * Chunks equal to those of the image it was captured after are shared, not copied. */
export interface SpaceImage {
  regions: { start: number; end: number; prot: number; chunks: (Buffer | null)[] }[];
  brk: number;
  brkMappedEnd: number;
  stack: { start: number; end: number } | undefined;
  stackLimit: number;
  /** Bytes this image holds that the previous one did not (its own cost). */
  ownBytes: number;
}

export class AddressSpace {
  readonly machine = new Machine();
  /** End of the pages mapped for the heap (brk rounds up to pages). */
  private brkMappedEnd: number;
  private brk: number;
  private stack: { start: number; end: number } | undefined;
  /** RLIMIT_STACK (soft) of the process: a process property, kept across fork and exec. */
  stackLimit: number;

  /** From an exec event (a new process image, with the limit the process had), a checkpoint's
   * image, or as a copy of `parent` (fork: same mappings, protections, contents, program break
   * and stack; registers are the caller's to set). */
  constructor(from: ExecEvent | AddressSpace | { image: SpaceImage }, resolve?: ResolveBytes, stackLimit = DEFAULT_STACK_LIMIT) {
    this.stackLimit = stackLimit;
    if ('image' in from) {
      const img = from.image;
      for (const r of img.regions) {
        this.machine.map(r.start, r.end - r.start, r.prot);
        r.chunks.forEach((c, i) => c && this.machine.write(r.start + i * IMAGE_CHUNK, c));
      }
      this.brk = img.brk;
      this.brkMappedEnd = img.brkMappedEnd;
      this.stack = img.stack && { ...img.stack };
      this.stackLimit = img.stackLimit;
      return;
    }
    if (from instanceof AddressSpace) {
      this.copyMemory(from.machine);
      this.brk = from.brk;
      this.brkMappedEnd = from.brkMappedEnd;
      this.stack = from.stack && { ...from.stack };
      this.stackLimit = from.stackLimit;
      return;
    }
    const exec = from;
    for (const m of exec.mappings) this.applyMapping(m, resolve!);
    const stack = exec.mappings.find((m) => m.name === '[stack]');
    this.stack = stack && { start: stack.start, end: stack.end };
    const heap = exec.mappings.find((m) => m.name === '[heap]');
    this.brk = exec.brk;
    this.brkMappedEnd = Math.max(pageUp(exec.brk), heap?.end ?? 0);
    this.machine.setUserRegs(exec.regs);
    this.machine.setFxsave(exec.fpregs);
  }

  /** Every region of `source` with its protection and contents (all-zero chunks are left as mapped). */
  private copyMemory(source: Machine): void {
    for (const r of source.regions()) {
      this.machine.map(r.start, r.end - r.start, r.prot);
      for (let a = r.start; a < r.end; a += CHUNK) {
        const data = source.read(a, Math.min(CHUNK, r.end - a));
        if (!data.equals(ZEROS.subarray(0, data.length))) this.machine.write(a, data);
      }
    }
  }

  close(): void {
    this.machine.close();
  }

  /** The memory as it is now (registers are the caller's to keep). All-zero chunks cost nothing;
   * chunks unchanged since `previous` are shared with it. */
  capture(previous?: SpaceImage): SpaceImage {
    const before = new Map<number, Buffer>();
    for (const r of previous?.regions ?? []) r.chunks.forEach((c, i) => c && before.set(r.start + i * IMAGE_CHUNK, c));
    let ownBytes = 0;
    const regions = this.machine.regions().map((r) => {
      const chunks: (Buffer | null)[] = [];
      for (let a = r.start; a < r.end; a += IMAGE_CHUNK) {
        const data = this.machine.read(a, Math.min(IMAGE_CHUNK, r.end - a));
        const old = before.get(a);
        if (old && old.equals(data)) chunks.push(old);
        else if (data.equals(ZEROS.subarray(0, data.length))) chunks.push(null);
        else {
          chunks.push(data);
          ownBytes += data.length;
        }
      }
      return { start: r.start, end: r.end, prot: r.prot, chunks };
    });
    return { regions, brk: this.brk, brkMappedEnd: this.brkMappedEnd, stack: this.stack && { ...this.stack }, stackLimit: this.stackLimit, ownBytes };
  }

  /** Map [start, end) afresh (replacing whatever was there, as MAP_FIXED does) and fill it. */
  private applyMapping(m: Mapping, resolve: ResolveBytes): void {
    this.mapFresh(m.start, m.end - m.start, m.prot);
    if (m.data) {
      const data = resolve(m.data);
      if (data.length > m.end - m.start) throw new Error(`mapping ${m.name || 'anonymous'} at 0x${m.start.toString(16)} has ${data.length} bytes of contents for ${m.end - m.start} bytes of memory`);
      if (data.length > 0) this.machine.write(m.start, data);
    }
  }

  private mapFresh(start: number, length: number, prot: number): void {
    if (length <= 0) return;
    this.machine.unmap(start, pageUp(length));
    this.machine.map(start, pageUp(length), prot & PROT_MASK);
  }

  private protOf(addr: number): number {
    const r = this.machine.regions().find((x) => x.start <= addr && addr < x.end);
    return r ? r.prot : PROT_READ | PROT_WRITE;
  }

  /** Apply the memory-map effects of a completed syscall; kernel writes are applied by the caller. */
  applySyscall(ev: SyscallEvent, resolve: ResolveBytes): void {
    const failed = ev.result < 0 && ev.result > -4096;
    if (!failed) {
      const [a0, a1, a2, a3, a4] = syscallArgs(ev.regs);
      switch (ev.number) {
        case SYS_MMAP:
          this.mapFresh(ev.result, a1, a2);
          break;
        case SYS_MUNMAP:
          this.machine.unmap(pageDown(a0), pageUp(a1 + (a0 - pageDown(a0))));
          break;
        case SYS_MPROTECT:
          if (a1 > 0) this.machine.protect(pageDown(a0), pageUp(a1 + (a0 - pageDown(a0))), a2);
          break;
        case SYS_BRK:
          this.moveBrk(ev.result);
          break;
        case SYS_MREMAP:
          this.remap(a0, a1, a2, a3, ev.result);
          void a4;
          break;
        case SYS_SETRLIMIT:
          if (a0 === RLIMIT_STACK) this.setStackLimit(a1);
          break;
        case SYS_PRLIMIT64:
          if (a0 === 0 && a1 === RLIMIT_STACK && a2 !== 0) this.setStackLimit(a2);
          break;
      }
    }
    for (const m of ev.mappings ?? []) this.applyMapping(m, resolve);
  }

  private moveBrk(newBrk: number): void {
    // brk(0) and failed moves return the current break: nothing changes.
    if (newBrk === this.brk) return;
    this.brk = newBrk;
    const want = pageUp(newBrk);
    if (want > this.brkMappedEnd) this.machine.map(this.brkMappedEnd, want - this.brkMappedEnd, PROT_READ | PROT_WRITE);
    else if (want < this.brkMappedEnd) this.machine.unmap(want, this.brkMappedEnd - want);
    this.brkMappedEnd = want;
  }

  private remap(oldAddr: number, oldSize: number, newSize: number, flags: number, result: number): void {
    const prot = this.protOf(oldAddr);
    oldSize = pageUp(oldSize);
    newSize = pageUp(newSize);
    if (result === oldAddr) {
      if (newSize > oldSize) this.mapFresh(oldAddr + oldSize, newSize - oldSize, prot);
      else if (newSize < oldSize) this.machine.unmap(oldAddr + newSize, oldSize - newSize);
      return;
    }
    const keep = Math.min(oldSize, newSize);
    const contents = keep > 0 ? this.machine.read(oldAddr, keep) : new Uint8Array(0);
    if (!(flags & MREMAP_DONTUNMAP)) this.machine.unmap(oldAddr, oldSize);
    this.mapFresh(result, newSize, prot);
    if (contents.length > 0) this.machine.write(result, contents);
  }

  /** The new soft limit from the struct rlimit the program passed (read before the kernel ran). */
  private setStackLimit(rlimitAddr: number): void {
    const cur = this.machine.read(rlimitAddr, 8).readBigUInt64LE(0);
    this.stackLimit = cur >= BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(cur);
  }

  /** A fault just below the stack grows it, as the kernel does within RLIMIT_STACK; returns whether it did. */
  growStack(faultAddress: number): boolean {
    const s = this.stack;
    if (!s || faultAddress >= s.start || faultAddress < s.end - this.stackLimit) return false;
    const newStart = pageDown(faultAddress);
    // Never grow over another mapping.
    if (this.machine.regions().some((r) => r.end > newStart && r.start < s.start)) return false;
    this.machine.map(newStart, s.start - newStart, PROT_READ | PROT_WRITE);
    s.start = newStart;
    return true;
  }
}
