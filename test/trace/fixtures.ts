// Shared by the trace tests and bench/trace.ts: a header, one event of every kind, and a realistic
// event mix (many small syscalls whose 216-byte register images differ in a few bytes, read()
// outputs with text, mmap'd ELF files from the system as blobs).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Bytes, TraceEvent, TraceHeader } from '../../src/trace/schema.ts';
import { USER_REGS_SIZE, FXSAVE_SIZE } from '../../src/trace/schema.ts';

export const HEADER: Omit<TraceHeader, 'formatMajor' | 'formatMinor'> = {
  producer: 'replay-anywhere 0.1.0',
  recordedAt: '2025-01-02T03:04:05.000Z',
  hostname: 'testhost',
  kernel: '6.1.0-test',
  command: ['ls', '-la', '/etc'],
  cwd: '/home/user',
  tickMode: { kind: 'no-pmu', reason: 'perf_event_open: ENOENT (no hardware counters in this VM)' },
  maskedFeatures: ['AVX', 'AVX2', 'XSAVE', 'POPCNT'],
  cpuidFaulting: false,
  cpuid: [
    { leaf: 0, subleaf: 0, eax: 0x10, ebx: 0x68747541, ecx: 0x444d4163, edx: 0x69746e65 },
    { leaf: 1, subleaf: 0, eax: 0x830f10, ebx: 0x800, ecx: 0x7ed8320b, edx: 0x178bfbff },
  ],
};

export function regs(seed: number): Uint8Array {
  const r = new Uint8Array(USER_REGS_SIZE);
  const v = new DataView(r.buffer);
  for (let i = 0; i < 27; i++) v.setBigUint64(i * 8, BigInt(0x7ffff7dd0000 + i * 0x1000), true);
  v.setBigUint64(10 * 8, BigInt(seed & 0xffff), true); // rax
  v.setBigUint64(16 * 8, BigInt(0x7ffff7e9a000 + (seed % 64) * 16), true); // rip
  v.setBigUint64(19 * 8, BigInt(0x7fffffffd000 - (seed % 32) * 8), true); // rsp
  return r;
}

const bytes = (n: number, f = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + f) & 0xff);

/** One event of every kind, with optional fields present, nested mappings, a bigint and a BlobRef. */
export function everyKind(blob: Bytes): TraceEvent[] {
  return [
    {
      kind: 'exec', tid: 100, pid: 100, path: '/usr/bin/ls', argv: ['ls', '-la', '/etc'], regs: regs(1), fpregs: bytes(FXSAVE_SIZE, 3),
      mappings: [
        { start: 0x555555554000, end: 0x555555558000, prot: 5, flags: 2, name: '/usr/bin/ls', fileOffset: 0, data: blob },
        { start: 0x7ffffffde000, end: 0x7ffffffff000, prot: 3, flags: 2, name: '[stack]', fileOffset: 0, data: bytes(64, 9) },
        { start: 0xffffffffff600000, end: 0xffffffffff601000, prot: 4, flags: 2, name: '[vsyscall]', fileOffset: 0 },
      ],
      auxv: bytes(48), brk: 0x555555559000,
    },
    {
      kind: 'syscall', tid: 100, pid: 100, number: 0, regs: regs(2), result: 12,
      writes: [{ addr: 0x7fffffffd000, data: new TextEncoder().encode('hello world\n') }, { addr: 0x555555559000, data: blob }],
    },
    {
      kind: 'syscall', tid: 100, pid: 100, ticks: 12345, number: 9, regs: regs(3), result: 0x7ffff7fc0000, writes: [],
      mappings: [{ start: 0x7ffff7fc0000, end: 0x7ffff7fc4000, prot: 1, flags: 2, name: '/usr/lib/x86_64-linux-gnu/libc.so.6', fileOffset: 4096, data: blob }],
    },
    { kind: 'syscall', tid: 100, pid: 100, number: 231, regs: regs(4), result: -38, writes: [], noReturn: true },
    { kind: 'rdtsc', tid: 100, pid: 100, rip: 0x7ffff7e9a010, insn: 'rdtsc', value: 0n },
    { kind: 'rdtsc', tid: 100, pid: 100, rip: 0x7ffff7e9a020, insn: 'rdtscp', value: 0xfedcba9876543210n, aux: 3 },
    {
      kind: 'signal', tid: 100, pid: 100, signo: 11, code: 1, synchronous: true, addr: 0, regs: regs(5), fatal: false,
      writes: [{ addr: 0x7fffffffc000, data: bytes(40) }], handlerRegs: regs(6),
    },
    { kind: 'signal', tid: 100, pid: 100, signo: 2, code: 0, synchronous: false, regs: regs(7), fatal: true, writes: [] },
    { kind: 'clone', tid: 100, pid: 100, childPid: 101, childTid: 101, flags: 0x11, regs: regs(8), fpregs: bytes(FXSAVE_SIZE, 5) },
    { kind: 'switch', tid: 101, pid: 101 },
    { kind: 'switch', tid: 100, pid: 100, regs: regs(9) },
    { kind: 'exit', tid: 101, pid: 101, code: 0, signal: null, processExit: true },
    { kind: 'exit', tid: 100, pid: 100, code: null, signal: 9, processExit: true },
  ];
}

/** ELF files from the system, for blob contents (the largest few under 4 MiB). */
export function systemElfs(max = 6): Uint8Array[] {
  const dir = '/usr/lib/x86_64-linux-gnu';
  const out: Uint8Array[] = [];
  for (const name of ['libc.so.6', 'libm.so.6', 'libstdc++.so.6', 'libz.so.1', 'libcrypto.so.3', 'libpthread.so.0', 'libssl.so.3']) {
    if (out.length >= max) break;
    try {
      const p = fs.realpathSync(path.join(dir, name));
      const st = fs.statSync(p);
      if (st.size > 0 && st.size < 8 << 20) out.push(new Uint8Array(fs.readFileSync(p)));
    } catch { /* not on this system */ }
  }
  if (out.length === 0) out.push(bytes(1 << 20));
  return out;
}

const WORDS = 'the quick brown fox jumps over lazy dog total drwxr-xr-x root etc passwd group hosts 4096 Jan 12:00 .conf'.split(' ');

/**
 * A realistic mix for `n` events: ~85% small syscalls (regs differ in rax/rip/rsp), ~10% read()
 * with text output, a few clone/switch/rdtsc, and an exec with mmaps of ELF files every 2,000 events.
 * `addBlob` stores big contents (the writer's) so the same ELF is deduplicated across processes.
 */
export function* realisticMix(n: number, addBlob: (d: Uint8Array) => Bytes, elfs: Uint8Array[]): Generator<TraceEvent> {
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / (1 << 24);
  for (let i = 0; i < n; i++) {
    const pid = 1000 + Math.floor(i / 2000);
    const r = rnd();
    if (i % 2000 === 0) {
      const elf = elfs[Math.floor(i / 2000) % elfs.length];
      yield {
        kind: 'exec', tid: pid, pid, path: '/usr/bin/prog', argv: ['prog', String(i)], regs: regs(i), fpregs: new Uint8Array(FXSAVE_SIZE),
        mappings: elfs.map((e, k) => ({ start: 0x7ffff7000000 + k * 0x1000000, end: 0x7ffff7000000 + k * 0x1000000 + e.length, prot: 5, flags: 2, name: `/usr/lib/lib${k}.so`, fileOffset: 0, data: addBlob(k === 0 ? elf : e) })),
        auxv: new Uint8Array(368), brk: 0x555555559000,
      };
    } else if (r < 0.1) {
      const words: string[] = [];
      const len = 5 + Math.floor(rnd() * 120);
      for (let k = 0; k < len; k++) words.push(WORDS[Math.floor(rnd() * WORDS.length)]);
      const text = new TextEncoder().encode(words.join(' ') + '\n');
      yield { kind: 'syscall', tid: pid, pid, number: 0, regs: regs(i), result: text.length, writes: [{ addr: 0x7fffffffd000, data: text }] };
    } else if (r < 0.11) {
      yield { kind: 'rdtsc', tid: pid, pid, rip: 0x7ffff7e9a010, insn: 'rdtsc', value: BigInt(i) * 1000003n };
    } else if (r < 0.115) {
      yield { kind: 'switch', tid: pid, pid, regs: regs(i) };
    } else {
      const nr = [1, 3, 5, 8, 9, 10, 11, 12, 13, 14, 16, 17, 39, 60, 72, 202, 228, 257, 262][Math.floor(rnd() * 19)];
      const stat = nr === 5 || nr === 262 ? [{ addr: 0x7fffffffd100, data: regs(i).subarray(0, 144) }] : [];
      yield { kind: 'syscall', tid: pid, pid, number: nr, regs: regs(i), result: Math.floor(rnd() * 100), writes: stat };
    }
  }
}
