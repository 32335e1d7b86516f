// What watchpoints and instruction targets cost (not a test: node --import=tsx test/emulator/watch-bench.ts).
// Two loops: a register-only one (bench/emulator.ts's) and an -O0-style one that keeps its
// variables on the stack. Each is run without watchpoints, with a watchpoint on an address it
// never touches, on a stack slot next to its variables (same page, never touched), and on a
// variable it writes every iteration (a stop per iteration: the cost per hit), in the precise
// mode and in collect mode (setWatchpoints(list, { collect: true }): no stop, hits counted).
import { Machine, PROT_EXEC, PROT_READ, PROT_WRITE, type Watchpoint } from '../../src/emulator/machine.ts';
import { asm } from './asm.ts';

const CODE = 0x400000, STACK = 0x7f0000, DATA = 0x600000, SP = STACK + 0x8000;

const LOOPS = {
  registers: { src: '1: add eax, ebx\n xor ebx, ecx\n lea edx, [rax+rbx]\n imul esi, edx, 3\n sub edi, esi\n ror eax, 3\n dec rcx\n jnz 1b\n syscall', perIter: 8, iters: 20_000_000 },
  stack: {
    src: `mov dword ptr [rsp - 4], 0
      mov qword ptr [rsp - 16], 0
    1:
      mov eax, [rsp - 4]
      cdqe
      add [rsp - 16], rax
      mov rax, [rsp - 16]
      shr rax, 1
      xor rbx, rax
      add dword ptr [rsp - 4], 1
      cmp dword ptr [rsp - 4], ecx
      jl 1b
      syscall`,
    perIter: 9,
    iters: 2_000_000,
  },
  // SSE loads and stores: Unicorn stores no RIP for them, collect mode decodes the block to tell
  // which instruction made an access (only measured with a hit every iteration, below).
  sse: { src: '1: movq xmm0, [rsp - 16]\n paddq xmm0, xmm1\n movq [rsp - 16], xmm0\n movq xmm2, [rsp - 32]\n dec rcx\n jnz 1b\n syscall', perIter: 6, iters: 2_000_000 },
};

function once(loop: keyof typeof LOOPS, watches: Watchpoint[], iters = LOOPS[loop].iters, collect = false): { seconds: number; stops: number; hits: number; instructions: number } {
  const m = new Machine();
  m.map(CODE, 0x1000, PROT_READ | PROT_EXEC);
  m.write(CODE, asm(LOOPS[loop].src));
  m.map(STACK, 0x10000, PROT_READ | PROT_WRITE);
  m.map(DATA, 0x1000, PROT_READ | PROT_WRITE);
  m.setReg('rsp', BigInt(SP));
  m.setReg('rip', BigInt(CODE));
  m.setReg('rcx', BigInt(iters));
  m.setWatchpoints(watches, { collect });
  const t0 = process.hrtime.bigint();
  let stops = 0;
  for (;;) {
    const s = m.run();
    if (s.kind === 'syscall') break;
    if (s.kind !== 'watchpoint' || collect) throw new Error(JSON.stringify(s));
    stops++;
  }
  const hits = m.takeWatchHits().count;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const r = { seconds, stops, hits, instructions: m.instructions };
  m.close();
  return r;
}

function best(loop: keyof typeof LOOPS, watches: Watchpoint[], iters?: number, collect = false) {
  let b = once(loop, watches, iters, collect);
  for (let i = 1; i < Number(process.env.BENCH_REPS ?? 3); i++) {
    const r = once(loop, watches, iters, collect);
    if (r.seconds < b.seconds) b = r;
  }
  return b;
}

const cases: [string, Watchpoint[], boolean][] = [
  ['no watchpoint', [], false],
  ['write watch, address never touched', [{ address: DATA + 0x800, length: 8, kind: 'write' }], false],
  ['access watch, address never touched', [{ address: DATA + 0x800, length: 8, kind: 'access' }], false],
  ['write watch on the stack page, next to the variables', [{ address: SP - 64, length: 8, kind: 'write' }], false],
  ['collect: write watch, address never touched', [{ address: DATA + 0x800, length: 8, kind: 'write' }], true],
  ['collect: access watch, address never touched', [{ address: DATA + 0x800, length: 8, kind: 'access' }], true],
  ['collect: write watch on the stack page, next to the variables', [{ address: SP - 64, length: 8, kind: 'write' }], true],
  ['collect: write watch on a variable written every iteration', [{ address: SP - 16, length: 8, kind: 'write' }], true],
  ['collect: access watch on a variable 3 instructions access an iteration', [{ address: SP - 4, length: 4, kind: 'access' }], true],
];
for (const loop of ['registers', 'stack'] as const) {
  const base = best(loop, []);
  console.log(`${loop} loop: ${(base.instructions / 1e6).toFixed(0)} M instructions`);
  for (const [name, w, collect] of cases) {
    const r = w.length ? best(loop, w, undefined, collect) : base;
    const hits = collect ? `  ${r.hits} hits` : '';
    console.log(`  ${name.padEnd(68)} ${r.seconds.toFixed(3)} s  ${((r.seconds / r.instructions) * 1e9).toFixed(2)} ns/insn  ${(r.seconds / base.seconds).toFixed(2)}x${hits}`);
  }
}
// A hit every iteration: the stop, the return to JavaScript and the resume (precise), or the
// attribution and count (collect).
const iters = 200_000;
const hit = best('stack', [{ address: SP - 16, length: 8, kind: 'write' }], iters);
const none = best('stack', [{ address: DATA + 0x800, length: 8, kind: 'write' }], iters);
console.log(`stack loop, a write watch hit every iteration (${hit.stops} stops): ${hit.seconds.toFixed(3)} s, ${(((hit.seconds - none.seconds) / hit.stops) * 1e6).toFixed(2)} us per stop`);
const chit = best('stack', [{ address: SP - 16, length: 8, kind: 'write' }], iters * 10, true);
const cnone = best('stack', [{ address: DATA + 0x800, length: 8, kind: 'write' }], iters * 10, true);
console.log(`stack loop, collect mode, a write watch hit every iteration (${chit.hits} hits): ${chit.seconds.toFixed(3)} s, ${(((chit.seconds - cnone.seconds) / chit.hits) * 1e9).toFixed(0)} ns per hit`);
const shit = best('sse', [{ address: SP - 16, length: 8, kind: 'access' }], undefined, true);
const snone = best('sse', [{ address: DATA + 0x800, length: 8, kind: 'access' }], undefined, true);
console.log(`SSE loop, collect mode, an access watch hit twice an iteration (${shit.hits} hits): ${shit.seconds.toFixed(3)} s, ${(((shit.seconds - snone.seconds) / shit.hits) * 1e9).toFixed(0)} ns per hit`);

// A reverse-continue scan: 2.4e8 instructions of the register loop, collect mode against precise.
for (const collect of [true, false]) {
  const r = best('registers', [{ address: SP - 64, length: 8, kind: 'write' }], 30_000_000, collect);
  console.log(`2.4e8 instructions (register loop), a write watch, ${collect ? 'collect' : 'precise'} mode: ${r.seconds.toFixed(3)} s`);
}

// Instruction targets: a target in the middle of a block, from the start of the register loop.
{
  const m = new Machine();
  m.map(CODE, 0x1000, PROT_READ | PROT_EXEC);
  m.write(CODE, asm(LOOPS.registers.src));
  m.setReg('rip', BigInt(CODE));
  m.setReg('rcx', BigInt(1e9));
  const t0 = process.hrtime.bigint();
  const n = 2000;
  for (let i = 1; i <= n; i++) {
    const s = m.run({ instructionTarget: i * 1003 });
    if (s.kind !== 'instruction-target' || m.instructions !== i * 1003) throw new Error(JSON.stringify(s));
  }
  const us = Number(process.hrtime.bigint() - t0) / 1e3 / n;
  console.log(`instruction targets 1003 apart, inside blocks: ${us.toFixed(1)} us per run (of which about 1003 instructions run)`);
  m.close();
}
