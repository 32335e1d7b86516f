// What watchpoints and instruction targets cost (not a test: node --import=tsx test/emulator/watch-bench.ts).
// Two loops: a register-only one (bench/emulator.ts's) and an -O0-style one that keeps its
// variables on the stack. Each is run without watchpoints, with a watchpoint on an address it
// never touches, on a stack slot next to its variables (same page, never touched), and on a
// variable it writes every iteration (a stop per iteration: the cost per hit).
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
};

function once(loop: keyof typeof LOOPS, watches: Watchpoint[], iters = LOOPS[loop].iters): { seconds: number; stops: number; instructions: number } {
  const m = new Machine();
  m.map(CODE, 0x1000, PROT_READ | PROT_EXEC);
  m.write(CODE, asm(LOOPS[loop].src));
  m.map(STACK, 0x10000, PROT_READ | PROT_WRITE);
  m.map(DATA, 0x1000, PROT_READ | PROT_WRITE);
  m.setReg('rsp', BigInt(SP));
  m.setReg('rip', BigInt(CODE));
  m.setReg('rcx', BigInt(iters));
  m.setWatchpoints(watches);
  const t0 = process.hrtime.bigint();
  let stops = 0;
  for (;;) {
    const s = m.run();
    if (s.kind === 'syscall') break;
    if (s.kind !== 'watchpoint') throw new Error(JSON.stringify(s));
    stops++;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const r = { seconds, stops, instructions: m.instructions };
  m.close();
  return r;
}

function best(loop: keyof typeof LOOPS, watches: Watchpoint[], iters?: number) {
  let b = once(loop, watches, iters);
  for (let i = 1; i < Number(process.env.BENCH_REPS ?? 3); i++) {
    const r = once(loop, watches, iters);
    if (r.seconds < b.seconds) b = r;
  }
  return b;
}

const cases: [string, Watchpoint[]][] = [
  ['no watchpoint', []],
  ['write watch, address never touched', [{ address: DATA + 0x800, length: 8, kind: 'write' }]],
  ['access watch, address never touched', [{ address: DATA + 0x800, length: 8, kind: 'access' }]],
  ['write watch on the stack page, next to the variables', [{ address: SP - 64, length: 8, kind: 'write' }]],
];
for (const loop of Object.keys(LOOPS) as (keyof typeof LOOPS)[]) {
  const base = best(loop, []);
  console.log(`${loop} loop: ${(base.instructions / 1e6).toFixed(0)} M instructions`);
  for (const [name, w] of cases) {
    const r = w.length ? best(loop, w) : base;
    console.log(`  ${name.padEnd(56)} ${r.seconds.toFixed(3)} s  ${((r.seconds / r.instructions) * 1e9).toFixed(2)} ns/insn  ${(r.seconds / base.seconds).toFixed(2)}x`);
  }
}
// A hit every iteration: the stop, the return to JavaScript and the resume.
const iters = 200_000;
const hit = best('stack', [{ address: SP - 16, length: 8, kind: 'write' }], iters);
const none = best('stack', [{ address: DATA + 0x800, length: 8, kind: 'write' }], iters);
console.log(`stack loop, a write watch hit every iteration (${hit.stops} stops): ${hit.seconds.toFixed(3)} s, ${(((hit.seconds - none.seconds) / hit.stops) * 1e6).toFixed(2)} us per stop`);

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
