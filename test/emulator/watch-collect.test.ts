// Collect-mode watchpoints (setWatchpoints(list, { collect: true }), takeWatchHits()): run()
// never stops for a hit; the hits are counted and the last one kept with the exact instruction
// count. Every case is checked against the precise mode: the same number of hits as precise stops,
// the same last one, and for each hit, collecting up to its `instructions` ends on it.
import test, { type ExecutionContext } from 'ava';
import { Machine, PROT_EXEC, PROT_READ, PROT_WRITE, type StopReason, type Watchpoint, type WatchHits } from '../../src/emulator/machine.ts';
import { asm } from './asm.ts';

const CODE = 0x400000;
const STACK = 0x7f0000;
const DATA = 0x600000;
const RX = PROT_READ | PROT_EXEC;
const RWX = PROT_READ | PROT_WRITE | PROT_EXEC;

type Setup = (m: Machine) => void;
function machine(code: Buffer, setup?: Setup, prot = RX): Machine {
  const m = new Machine();
  m.map(CODE, 0x10000, prot);
  m.write(CODE, code);
  m.map(STACK, 0x10000, PROT_READ | PROT_WRITE);
  m.map(DATA, 0x1000, PROT_READ | PROT_WRITE);
  m.setReg('rsp', BigInt(STACK + 0x8000));
  m.setReg('rip', BigInt(CODE));
  m.setReg('rdi', BigInt(DATA + 0x100));
  setup?.(m);
  return m;
}
/** Where `needle` (assembled) starts in `code`. */
const at = (code: Buffer, needle: string) => {
  const i = code.indexOf(asm(needle));
  if (i < 0) throw new Error(`not found: ${needle}`);
  return CODE + i;
};
type WatchStop = Extract<StopReason, { kind: 'watchpoint' }>;
const hitOf = (s: WatchStop) => ({ rip: s.rip, address: s.address, size: s.size, access: s.access, instructions: s.instructions });

/** The precise mode's stops up to the first other stop. */
function precise(code: Buffer, watches: Watchpoint[], setup?: Setup, prot = RX): { stops: WatchStop[]; end: StopReason } {
  const m = machine(code, setup, prot);
  m.setWatchpoints(watches);
  const stops: WatchStop[] = [];
  for (;;) {
    const s = m.run();
    if (s.kind !== 'watchpoint') {
      m.close();
      return { stops, end: s };
    }
    stops.push(s);
  }
}

/** One collect-mode run, and the hits it collected. */
function collect(code: Buffer, watches: Watchpoint[], limits: Parameters<Machine['run']>[0] = {}, setup?: Setup, prot = RX): { end: StopReason; hits: WatchHits; instructions: number } {
  const m = machine(code, setup, prot);
  m.setWatchpoints(watches, { collect: true });
  const end = m.run(limits);
  const r = { end, hits: m.takeWatchHits(), instructions: m.instructions };
  m.close();
  return r;
}

/** Collect mode gives what the precise mode stops for, hit by hit. Returns the precise stops. */
function agree(t: ExecutionContext, src: string, watches: Watchpoint[], setup?: Setup, prot = RX): WatchStop[] {
  const code = asm(src);
  const p = precise(code, watches, setup, prot);
  const c = collect(code, watches, {}, setup, prot);
  t.deepEqual(c.end, p.end, 'the same stop ends the run');
  t.is(c.hits.count, p.stops.length, 'as many hits as precise stops');
  t.deepEqual(c.hits.last, p.stops.length ? hitOf(p.stops[p.stops.length - 1]) : undefined, 'the last hit is the last precise stop');
  for (const n of new Set(p.stops.map((s) => s.instructions))) {
    const upTo = p.stops.filter((s) => s.instructions <= n);
    const r = collect(code, watches, { instructionTarget: n }, setup, prot);
    t.deepEqual(r.end, { kind: 'instruction-target' }, `target ${n}`);
    t.is(r.hits.count, upTo.length, `hits up to ${n}`);
    t.deepEqual(r.hits.last, hitOf(upTo[upTo.length - 1]), `last hit up to ${n}`);
  }
  return p.stops;
}

test('hits in the middle of blocks, several per block: exact count and last hit, for each access kind', (t) => {
  const src = `
    mov ecx, 3
  1:
    mov [rdi], eax
    inc eax
    add [rdi], eax
    mov ebx, [rdi]
    inc edx
    dec ecx
    jnz 1b
    syscall`;
  const code = asm(src);
  const store = at(code, 'mov [rdi], eax'), add = at(code, 'add [rdi], eax'), load = at(code, 'mov ebx, [rdi]');
  const w = (kind: Watchpoint['kind']): Watchpoint[] => [{ address: DATA + 0x100, length: 4, kind }];
  // 1 + 7 per iteration; the third iteration's add is instruction 1 + 14 + 3, its load 1 + 14 + 4
  t.deepEqual(collect(code, w('write')).hits, { count: 6, last: { rip: add, address: DATA + 0x100, size: 4, access: 'write', instructions: 18 } });
  t.deepEqual(collect(code, w('read')).hits, { count: 6, last: { rip: load, address: DATA + 0x100, size: 4, access: 'read', instructions: 19 } });
  t.deepEqual(collect(code, w('access')).hits, { count: 9, last: { rip: load, address: DATA + 0x100, size: 4, access: 'read', instructions: 19 } });
  t.is(store, CODE + 5);
  for (const kind of ['write', 'read', 'access'] as const) agree(t, src, w(kind));
});

test('a hit in a block that ends with a syscall; the syscall stops as usual, hits accumulate until taken', (t) => {
  const code = asm('mov [rdi], eax\n inc eax\n syscall\n mov ebx, [rdi]\n mov [rdi], ebx\n syscall');
  const m = machine(code);
  m.setWatchpoints([{ address: DATA + 0x100, length: 1, kind: 'access' }], { collect: true });
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.instructions, 3);
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.instructions, 6);
  t.deepEqual(m.takeWatchHits(), { count: 3, last: { rip: at(code, 'mov [rdi], ebx'), address: DATA + 0x100, size: 4, access: 'write', instructions: 5 } });
  t.deepEqual(m.takeWatchHits(), { count: 0 });
  m.close();
  agree(t, 'mov [rdi], eax\n inc eax\n syscall', [{ address: DATA + 0x100, length: 1, kind: 'access' }]);
});

test('rep movsb/stosb: one hit per iteration that touches the range, as the precise mode', (t) => {
  const src = `
    lea rsi, [rip + src]
    mov ecx, 8
    rep movsb
    mov ecx, 8
    sub rdi, 8
    rep stosb
    syscall
  src:
    .ascii "ABCDEFGH"`;
  const code = asm(src);
  const setup: Setup = (m) => m.setReg('rdi', BigInt(DATA + 0x10));
  const w: Watchpoint[] = [{ address: DATA + 0x13, length: 2, kind: 'write' }];
  t.deepEqual(collect(code, w, {}, setup).hits, { count: 4, last: { rip: at(code, 'rep stosb'), address: DATA + 0x14, size: 1, access: 'write', instructions: 6 } });
  const stops = agree(t, src, w, setup);
  t.deepEqual(stops.map((s) => s.instructions), [3, 3, 6, 6]);
  // reads of the source, and the whole rep with a wider range
  agree(t, src, [{ address: CODE + code.length - 6, length: 3, kind: 'read' }], setup);
  agree(t, src, [{ address: DATA + 0x10, length: 8, kind: 'access' }], setup);
});

test('accesses straddling a range edge; a read crossing a page is one access (not its aligned halves)', (t) => {
  const w = DATA + 0x40;
  const src = `
    mov [rdi - 8], rax
    mov [rdi + 4], rax
    mov [rdi - 4], rax
    mov word ptr [rdi + 3], ax
    mov rbx, [rdi + 3]
    syscall`;
  const code = asm(src);
  const setup: Setup = (m) => m.setReg('rdi', BigInt(w));
  t.deepEqual(collect(code, [{ address: w, length: 4, kind: 'access' }], {}, setup).hits, {
    count: 3,
    last: { rip: at(code, 'mov rbx, [rdi + 3]'), address: w + 3, size: 8, access: 'read', instructions: 5 },
  });
  agree(t, src, [{ address: w, length: 4, kind: 'access' }], setup);
  // An 8-byte read at page end - 3: Unicorn's read hook also sees the aligned 8 bytes below the
  // page end and above it, which are not accesses.
  const page = DATA + 0x1000;
  const cross = asm('mov rax, [rdi]\n syscall');
  const setup2: Setup = (m) => {
    m.map(page, 0x1000, PROT_READ | PROT_WRITE);
    m.setReg('rdi', BigInt(page - 3));
  };
  t.deepEqual(collect(cross, [{ address: page - 8, length: 4, kind: 'read' }], {}, setup2).hits, { count: 0 });
  t.deepEqual(collect(cross, [{ address: page + 5, length: 3, kind: 'read' }], {}, setup2).hits, { count: 0 });
  t.deepEqual(collect(cross, [{ address: page + 4, length: 1, kind: 'read' }], {}, setup2).hits, {
    count: 1,
    last: { rip: CODE, address: page - 3, size: 8, access: 'read', instructions: 1 },
  });
  t.deepEqual(collect(cross, [{ address: page - 3, length: 1, kind: 'read' }], {}, setup2).hits.count, 1);
  for (const [address, length] of [[page - 8, 4], [page + 5, 3], [page + 4, 1], [page - 12, 24]]) {
    agree(t, 'mov rax, [rdi]\n movdqu xmm0, [rdi - 8]\n syscall', [{ address, length, kind: 'read' }], setup2);
  }
});

test('a run stopped by an instruction target before a later hit does not count it', (t) => {
  const code = asm('mov [rdi], eax\n inc eax\n inc eax\n mov [rdi], eax\n inc ebx\n syscall');
  const m = machine(code);
  m.setWatchpoints([{ address: DATA + 0x100, length: 4, kind: 'write' }], { collect: true });
  t.deepEqual(m.run({ instructionTarget: 3 }), { kind: 'instruction-target' });
  t.deepEqual(m.takeWatchHits(), { count: 1, last: { rip: CODE, address: DATA + 0x100, size: 4, access: 'write', instructions: 1 } });
  // the target is the store itself: it retired, its hit counts
  t.deepEqual(m.run({ instructionTarget: 4 }), { kind: 'instruction-target' });
  t.deepEqual(m.takeWatchHits(), { count: 1, last: { rip: CODE + 6, address: DATA + 0x100, size: 4, access: 'write', instructions: 4 } });
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.deepEqual(m.takeWatchHits(), { count: 0 });
  m.close();
  // budget and tick targets stop at block starts: hits before them only
  const loop = asm('mov ecx, 10\n1: mov [rdi], ecx\n inc eax\n dec ecx\n jnz 1b\n syscall');
  const n = machine(loop);
  n.setWatchpoints([{ address: DATA + 0x100, length: 4, kind: 'write' }], { collect: true });
  t.deepEqual(n.run({ tickTarget: 3 }), { kind: 'tick-target' });
  t.like(n.takeWatchHits(), { count: 3, last: { instructions: 1 + 2 * 4 + 1 } });
  t.deepEqual(n.run({ instructionBudget: 5 }), { kind: 'budget' });
  t.like(n.takeWatchHits(), { count: 2, last: { instructions: 1 + 4 * 4 + 1 } });
  t.deepEqual(n.run(), { kind: 'syscall' });
  t.like(n.takeWatchHits(), { count: 5, last: { instructions: 1 + 9 * 4 + 1 } });
  n.close();
});

test('SSE, x87, LOCK and xchg accesses (Unicorn does not store RIP for them) are attributed exactly', (t) => {
  const src = `
    mov ecx, 2
  1:
    movdqu xmm0, [rdi]
    movq [rdi + 8], xmm0
    fld qword ptr [rdi + 8]
    fstp qword ptr [rdi]
    lock xadd [rdi + 8], eax
    xchg [rdi], rbx
    mov edx, [rdi + 8]
    pextrd [rdi + 12], xmm0, 1
    dec ecx
    jnz 1b
    syscall`;
  const code = asm(src);
  const w8 = [{ address: DATA + 0x108, length: 8, kind: 'access' as const }];
  // per iteration: movdqu's second piece, movq, fld, lock xadd, mov edx, pextrd
  t.deepEqual(collect(code, w8).hits, { count: 12, last: { rip: at(code, 'pextrd [rdi + 12], xmm0, 1'), address: DATA + 0x10c, size: 4, access: 'write', instructions: 19 } });
  const w0 = [{ address: DATA + 0x100, length: 4, kind: 'write' as const }];
  t.deepEqual(collect(code, w0).hits, { count: 4, last: { rip: at(code, 'xchg [rdi], rbx'), address: DATA + 0x100, size: 8, access: 'write', instructions: 17 } });
  agree(t, src, w8);
  agree(t, src, w0);
  agree(t, src, [{ address: DATA + 0x104, length: 8, kind: 'read' }]);
  // the same address read by an SSE and an integer instruction of one block, the pointer moving
  agree(t, `mov ecx, 3\n1: movq xmm1, [rdi]\n mov eax, [rdi]\n add rdi, 8\n movq xmm2, [rdi]\n add [rdi], eax\n dec ecx\n jnz 1b\n syscall`, [
    { address: DATA + 0x108, length: 8, kind: 'access' },
  ]);
});

test('cmpxchg16b, FXSAVE/FXRSTOR (helpers), MOVBE (emulated) and the bytes FXSAVE leaves to us', (t) => {
  const src = `
    mov rax, 0x0102030405060708
    movbe [rdi], rax
    cmpxchg16b [rdi + 16]
    lock cmpxchg16b [rdi + 16]
    fxsave [rdi + 0x100]
    inc ebx
    fxrstor [rdi + 0x100]
    movbe rcx, [rdi + 4]
    fxsave [rdi + 0x100]
    syscall`;
  agree(t, src, [{ address: DATA + 0x104, length: 2, kind: 'access' }]);
  agree(t, src, [{ address: DATA + 0x118, length: 8, kind: 'access' }]);
  agree(t, src, [{ address: DATA + 0x200 + 160 + 16, length: 4, kind: 'access' }]); // xmm1 in the FXSAVE area
  // bytes 10-15 of ST0's slot: zeroed by the addon before each FXSAVE (a write by that FXSAVE)
  const stops = agree(t, src, [{ address: DATA + 0x200 + 32 + 12, length: 2, kind: 'write' }]);
  t.deepEqual(stops.map((s) => s.instructions), [5, 9]);
});

test('an instruction that faults or raises #DE after touching the range is not counted; earlier hits are', (t) => {
  // movsq reads the watched source, then its store faults
  let code = asm('mov eax, [rsi]\n mov rdi, 0x10\n movsq\n syscall');
  const setSrc: Setup = (m) => m.setReg('rsi', BigInt(DATA + 0x100));
  const w: Watchpoint[] = [{ address: DATA + 0x100, length: 8, kind: 'read' }];
  let r = collect(code, w, {}, setSrc);
  t.like(r.end, { kind: 'memory-fault', rip: CODE + 2 + 7, address: 0x10, access: 'write' });
  t.deepEqual(r.hits, { count: 1, last: { rip: CODE, address: DATA + 0x100, size: 4, access: 'read', instructions: 1 } });
  t.deepEqual(r.end, precise(code, w, setSrc).end);
  // run again after mapping the destination: now it retires and counts
  const m = machine(code, setSrc);
  m.setWatchpoints(w, { collect: true });
  t.like(m.run(), { kind: 'memory-fault' });
  t.is(m.takeWatchHits().count, 1);
  m.map(0, 0x1000, PROT_READ | PROT_WRITE);
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.deepEqual(m.takeWatchHits(), { count: 1, last: { rip: CODE + 9, address: DATA + 0x100, size: 8, access: 'read', instructions: 3 } });
  m.close();
  // div by a watched zero: #DE at the div, not counted
  code = asm('mov eax, [rdi]\n div dword ptr [rdi]\n syscall');
  r = collect(code, [{ address: DATA + 0x100, length: 4, kind: 'read' }]);
  t.deepEqual(r.end, { kind: 'interrupt', rip: CODE + 2, vector: 0 });
  t.deepEqual(r.hits, { count: 1, last: { rip: CODE, address: DATA + 0x100, size: 4, access: 'read', instructions: 1 } });
  // an SSE load then a faulting SSE store in the same block
  code = asm('movdqu xmm0, [rdi]\n movdqu xmm1, [rdi]\n movdqu [rsi], xmm0\n syscall');
  r = collect(code, [{ address: DATA + 0x100, length: 8, kind: 'read' }], {}, (mm) => mm.setReg('rsi', 0x20n));
  t.like(r.end, { kind: 'memory-fault', access: 'write', address: 0x20 });
  t.like(r.hits, { count: 2, last: { rip: CODE + 4, instructions: 2 } });
});

test('write() never counts; a store into its own block (QEMU runs it again alone) counts once', (t) => {
  const code = asm('mov eax, [rdi]\n mov [rdi], eax\n syscall');
  const m = machine(code);
  m.setWatchpoints([{ address: DATA + 0x100, length: 8, kind: 'access' }], { collect: true });
  m.write(DATA + 0x100, Buffer.from('0102030405060708', 'hex'));
  t.deepEqual(m.run(), { kind: 'syscall' });
  m.write(DATA + 0x100, Buffer.from('aa', 'hex'));
  t.like(m.takeWatchHits(), { count: 2, last: { access: 'write', instructions: 2 } });
  m.close();
  const src = 'mov byte ptr [rip + 1f + 1], 7\n inc ebx\n1: mov eax, 1\n inc ebx\n syscall';
  const imm = at(asm(src), 'mov eax, 1') + 1;
  const stops = agree(t, src, [{ address: imm, length: 1, kind: 'write' }], undefined, RWX);
  t.deepEqual(stops.map(hitOf), [{ rip: CODE, address: imm, size: 1, access: 'write', instructions: 1 }]);
});

test('breakpoints, rdtsc, step() and instruction targets work as without watchpoints; the mode can switch between runs', (t) => {
  const code = asm('1: inc eax\n mov [rdi], eax\n rdtsc\n inc ebx\n cmp ebx, 4\n jne 1b\n syscall');
  const store = CODE + 2, rdtsc = at(code, 'rdtsc'), incEbx = at(code, 'inc ebx');
  const m = machine(code);
  const skip = () => m.setReg('rip', BigInt(rdtsc + 2));
  const w: Watchpoint[] = [{ address: DATA + 0x100, length: 4, kind: 'write' }];
  m.setBreakpoints([incEbx]);
  m.setWatchpoints(w, { collect: true });
  t.deepEqual(m.run(), { kind: 'rdtsc', rip: rdtsc, insn: 'rdtsc' });
  t.deepEqual(m.takeWatchHits(), { count: 1, last: { rip: store, address: DATA + 0x100, size: 4, access: 'write', instructions: 2 } });
  skip();
  t.deepEqual(m.run(), { kind: 'breakpoint', rip: incEbx });
  // precise now: stops after the store
  m.setWatchpoints(w);
  t.like(m.run(), { kind: 'watchpoint', rip: store, instructions: 7 });
  t.deepEqual(m.takeWatchHits(), { count: 0 });
  // collect again: step() over the store counts it and stops as a step
  m.setWatchpoints(w, { collect: true });
  t.deepEqual(m.run(), { kind: 'rdtsc', rip: rdtsc, insn: 'rdtsc' });
  t.deepEqual(m.takeWatchHits(), { count: 0 }); // (the store was reported by the precise stop)
  skip();
  t.deepEqual(m.run(), { kind: 'breakpoint', rip: incEbx });
  t.deepEqual(m.step(), { kind: 'budget' });
  t.deepEqual(m.step(), { kind: 'budget' });
  t.deepEqual(m.step(), { kind: 'budget' });
  t.deepEqual(m.step(), { kind: 'budget' }); // inc eax
  t.deepEqual(m.step(), { kind: 'budget' }); // the store
  t.deepEqual(m.takeWatchHits(), { count: 1, last: { rip: store, address: DATA + 0x100, size: 4, access: 'write', instructions: 12 } });
  // an instruction target at the store, then cleared: later stores are not collected
  m.setBreakpoints([]);
  t.deepEqual(m.run(), { kind: 'rdtsc', rip: rdtsc, insn: 'rdtsc' });
  skip();
  t.deepEqual(m.run({ instructionTarget: 16 }), { kind: 'instruction-target' }); // before the store
  t.deepEqual(m.takeWatchHits(), { count: 0 });
  t.deepEqual(m.run({ instructionTarget: 17 }), { kind: 'instruction-target' }); // after it
  t.like(m.takeWatchHits(), { count: 1, last: { instructions: 17 } });
  m.setWatchpoints([]);
  t.deepEqual(m.run(), { kind: 'rdtsc', rip: rdtsc, insn: 'rdtsc' });
  skip();
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.deepEqual(m.takeWatchHits(), { count: 0 });
  t.is(m.getReg('rbx'), 4n);
  m.close();
});

test('a long loop: exact count and last hit', (t) => {
  const code = asm('mov ecx, 100000\n1: mov eax, [rsp - 8]\n add eax, ecx\n mov [rsp - 8], eax\n movq xmm0, [rsp - 8]\n dec ecx\n jnz 1b\n syscall');
  const slot = STACK + 0x8000 - 8;
  const r = collect(code, [{ address: slot, length: 4, kind: 'write' }]);
  t.deepEqual(r.end, { kind: 'syscall' });
  t.deepEqual(r.hits, { count: 100000, last: { rip: at(code, 'mov [rsp - 8], eax'), address: slot, size: 4, access: 'write', instructions: 1 + 99999 * 6 + 3 } });
  t.like(collect(code, [{ address: slot + 4, length: 4, kind: 'read' }]).hits, { count: 100000, last: { rip: at(code, 'movq xmm0, [rsp - 8]'), instructions: 1 + 99999 * 6 + 4 } });
});

test('random blocks of integer, SSE, x87, LOCK and string instructions agree with the precise mode', (t) => {
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const pick = <T>(a: T[]): T => a[rnd(a.length)];
  const mem = () => `[${pick(['rdi', 'rsi', 'rbx'])} + ${pick([0, 4, 8, 12, 16, 24, -8])}]`;
  const pool: (() => string)[] = [
    () => `mov rax, ${mem()}`, () => `mov ${mem()}, rax`, () => `add ${mem()}, eax`, () => `inc qword ptr ${mem()}`,
    () => `movzx eax, word ptr ${mem()}`, () => `push qword ptr ${mem()}\n pop rdx`, () => `movdqu xmm0, ${mem()}`,
    () => `movdqu ${mem()}, xmm1`, () => `movq xmm2, ${mem()}`, () => `movq ${mem()}, xmm2`, () => `movss ${mem()}, xmm3`,
    () => `paddd xmm1, ${mem()}`, () => `pextrd ${mem()}, xmm1, 2`, () => `fld qword ptr ${mem()}\n fstp qword ptr ${mem()}`,
    () => `lock xadd ${mem()}, eax`, () => `xchg ${mem()}, rcx`, () => `cmpxchg ${mem()}, rcx`, () => `add rdi, ${pick([4, 8, 16])}`,
    () => `sub rsi, 8`, () => `mov rbx, rdi`, () => `xchg rsi, rdi`, () => `movsq`, () => `stosd`, () => `lodsq`,
    () => `mov ecx, 3\n rep movsb`,
  ];
  for (let p = 0; p < 4; p++) {
    const body = Array.from({ length: 8 + rnd(8) }, (_, i) => pool[rnd(pool.length)]() + (rnd(4) === 0 ? `\n jmp ${i}f\n${i}:` : ''));
    const src = ['mov r15d, 2', '0:', 'mov rdi, 0x600100', 'mov rsi, 0x600140', 'mov rbx, 0x600180', ...body, 'dec r15d', 'jnz 0b', 'syscall'].join('\n');
    for (let i = 0; i < 3; i++) {
      const kind = pick(['read', 'write', 'access'] as const);
      const w = [{ address: pick([DATA + 0x100, DATA + 0x140, DATA + 0x180]) - 8 + rnd(40), length: pick([1, 4, 8]), kind }];
      agree(t, src, w, (m) => m.setReg('rax', 0x1234n));
      t.falsy(collect(asm(src), w).hits.last?.ambiguous, src);
    }
  }
});

test('an access two instructions of a block could have made, with nothing to tell which, is marked ambiguous', (t) => {
  // Unicorn does not store RIP for SSE loads. The first movq read far away (not in the hooks'
  // range); by the time the second reads the watched bytes, rdi holds their address, so both
  // compute to it.
  const code = asm('movq xmm0, [rdi]\n mov rdi, rsi\n movq xmm1, [rdi]\n syscall');
  const setup: Setup = (m) => {
    m.setReg('rdi', BigInt(DATA + 0x800));
    m.setReg('rsi', BigInt(DATA + 0x100));
  };
  const w: Watchpoint[] = [{ address: DATA + 0x100, length: 8, kind: 'read' }];
  const r = collect(code, w, {}, setup);
  t.is(r.hits.count, 1);
  t.is(r.hits.ambiguous, 1);
  t.is(r.hits.last?.ambiguous, true);
  t.like(precise(code, w, setup).stops, [{ rip: CODE + 4 + 3, instructions: 3 }]); // (the real one)
  // an access inside the hooks' range in between tells
  const code2 = asm('movq xmm0, [rdi]\n mov rdi, rsi\n mov eax, [rsi + 8]\n movq xmm1, [rdi]\n syscall');
  t.deepEqual(collect(code2, w, {}, setup).hits, { count: 1, last: { rip: CODE + 4 + 3 + 3, address: DATA + 0x100, size: 8, access: 'read', instructions: 4 } });
});

test('takeWatchHits and setWatchpoints check their input; the collect option is off by default', (t) => {
  const m = new Machine();
  t.deepEqual(m.takeWatchHits(), { count: 0 });
  t.throws(() => m.setWatchpoints([{ address: 0x1000, length: 0, kind: 'write' }], { collect: true }), { message: /length/ });
  t.notThrows(() => m.setWatchpoints([], { collect: true }));
  m.close();
  t.throws(() => m.takeWatchHits(), { message: /closed/ });
  const code = asm('mov [rdi], eax\n syscall');
  const n = machine(code);
  n.setWatchpoints([{ address: DATA + 0x100, length: 4, kind: 'write' }], {});
  t.like(n.run(), { kind: 'watchpoint', instructions: 1 });
  n.close();
});
