// What a reverse debugger needs from the engine: run({ instructionTarget }) stops with exactly that
// many retired instructions (in the middle of blocks too), and watchpoints stop just after the
// instruction that touched a watched range, with the exact counter value.
import test from 'ava';
import { Machine, PROT_EXEC, PROT_READ, PROT_WRITE, type StopReason } from '../../src/emulator/machine.ts';
import { asm } from './asm.ts';

const CODE = 0x400000;
const STACK = 0x7f0000;
const DATA = 0x600000;
const RX = PROT_READ | PROT_EXEC;
const RWX = PROT_READ | PROT_WRITE | PROT_EXEC;

function machine(src: string, prot = RX): { m: Machine; code: Buffer } {
  const m = new Machine();
  const code = asm(src);
  m.map(CODE, 0x10000, prot);
  m.write(CODE, code);
  m.map(STACK, 0x10000, PROT_READ | PROT_WRITE);
  m.map(DATA, 0x1000, PROT_READ | PROT_WRITE);
  m.setReg('rsp', BigInt(STACK + 0x8000));
  m.setReg('rip', BigInt(CODE));
  return { m, code };
}
const rip = (m: Machine) => Number(m.getReg('rip'));
/** Everything a stop leaves: registers, x87/SSE, counters, the stack and data pages. */
function state(m: Machine): string {
  return [m.getUserRegs().toString('hex'), m.getFxsave().toString('hex'), m.ticks, m.instructions, m.read(STACK, 0x10000).toString('hex'), m.read(DATA, 0x1000).toString('hex')].join('/');
}
/** Reference for "n retired instructions": step() one instruction at a time (a rep instruction
 * steps one iteration at a time and counts when it starts: step on while it is still iterating). */
function stepTo(m: Machine, n: number): void {
  const iterating = () => (m.saveContext() as unknown as { rep: number }).rep === rip(m);
  while (m.instructions < n || (m.instructions === n && iterating())) {
    const s = m.step();
    if (s.kind !== 'budget' && !(s.kind === 'syscall' && m.instructions === n)) throw new Error(`stepTo: ${JSON.stringify(s)} at ${m.instructions}`);
  }
}

// Blocks of several sizes, a Jcc loop, rep movsb, call/ret, LOOP, a not-taken Jcc, push/pop.
const PROGRAM = `
    mov ecx, 5
    lea rsi, [rip + src]
    lea rdi, [rip + 0x200000]   # in DATA
  1:
    inc eax
    add ebx, eax
    imul edx, ebx, 3
    dec ecx
    jnz 1b
    mov ecx, 7
    rep movsb
    call fn
    xor r8, r8
    mov ecx, 3
  2:
    add r8, rcx
    loop 2b
    cmp eax, 5
    je 3f
    nop
  3:
    push rax
    pop r9
    syscall
  fn:
    mov r10, 42
    ret
  src:
    .ascii "abcdefgh"
`;

const program = (prot = RX): Machine => machine(PROGRAM, prot).m;
const PROGRAM_INSNS = 3 + 5 * 5 + 1 + 1 + 1 + 2 + 1 + 1 + 3 * 2 + 2 + 3;

for (const [name, prot] of [['read-only code (trusted blocks)', RX], ['writable code (compared blocks)', RWX]] as const) {
  test(`instructionTarget N lands exactly after N instructions, for every N (${name})`, (t) => {
    const ref = program(prot);
    t.deepEqual(ref.run(), { kind: 'syscall' });
    const total = ref.instructions;
    const totalTicks = ref.ticks;
    t.is(total, PROGRAM_INSNS);
    t.is(totalTicks, 5 + 1);
    ref.close();
    for (let n = 0; n <= total; n++) {
      const a = program(prot);
      const s = a.run({ instructionTarget: n });
      t.deepEqual(s, n === total ? { kind: 'syscall' } : { kind: 'instruction-target' }, `n = ${n}`);
      t.is(a.instructions, n);
      const b = program(prot);
      stepTo(b, n);
      t.is(state(a), state(b), `n = ${n}`);
      // and it runs on from there to the same end
      if (n < total) {
        t.deepEqual(a.run(), { kind: 'syscall' });
        t.is(a.instructions, total);
        t.is(a.ticks, totalTicks);
      }
      a.close();
      b.close();
    }
  });
}

test('instructionTarget from one stop to the next, one instruction at a time, gives the same states as step()', (t) => {
  const a = program();
  const b = program();
  for (let n = 1; ; n++) {
    const s = a.run({ instructionTarget: n });
    if (s.kind === 'syscall') break;
    t.deepEqual(s, { kind: 'instruction-target' });
    stepTo(b, n);
    t.is(state(a), state(b), `n = ${n}`);
  }
  t.is(a.instructions, PROGRAM_INSNS);
  a.close();
  b.close();
});

test('instructionTarget at or below the counter returns at once; a rep instruction lands before or after', (t) => {
  const { m, code } = machine(`mov ecx, 6\n mov edi, ${DATA}\n mov al, 0x5a\n rep stosb\n inc ebx\n syscall`);
  const rep = CODE + code.indexOf(Buffer.from([0xf3, 0xaa]));
  t.deepEqual(m.run({ instructionTarget: 3 }), { kind: 'instruction-target' });
  t.is(rip(m), rep);
  t.is(m.getReg('rcx'), 6n);
  t.deepEqual(m.run({ instructionTarget: 3 }), { kind: 'instruction-target' });
  t.deepEqual(m.run({ instructionTarget: 1 }), { kind: 'instruction-target' });
  t.is(m.instructions, 3);
  t.is(rip(m), rep);
  // the rep counts as one: target 4 is after its last iteration
  t.deepEqual(m.run({ instructionTarget: 4 }), { kind: 'instruction-target' });
  t.is(rip(m), rep + 2);
  t.is(m.getReg('rcx'), 0n);
  t.is(m.read(DATA, 8).toString('hex'), '5a5a5a5a5a5a0000');
  t.is(m.instructions, 4);
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.instructions, 6);
  m.close();
});

test('instructionTarget combined with breakpoints, tick targets, budgets, faults and syscalls', (t) => {
  const src = 'mov ecx, 10\n1: inc eax\n inc ebx\n inc edx\n dec ecx\n jnz 1b\n mov rax, [0x10]\n syscall';
  // breakpoint before the target: the breakpoint; then the target
  let { m } = machine(src);
  m.setBreakpoints([CODE + 5 + 4]); // inc edx
  t.deepEqual(m.run({ instructionTarget: 20 }), { kind: 'breakpoint', rip: CODE + 9 });
  t.is(m.instructions, 3);
  t.deepEqual(m.run({ instructionTarget: 20 }), { kind: 'breakpoint', rip: CODE + 9 });
  t.is(m.instructions, 8);
  m.setBreakpoints([]);
  t.deepEqual(m.run({ instructionTarget: 20 }), { kind: 'instruction-target' });
  t.is(m.instructions, 20);
  t.is(m.ticks, 3);
  t.is(m.getReg('rax'), 4n);
  t.is(m.getReg('rdx'), 4n); // 1 + 3 * 5 + 4: the fourth iteration ran all but its jnz
  t.is(rip(m), CODE + 5 + 8);
  // a breakpoint exactly at the target point: the target wins, the next run stops at the breakpoint
  m.setBreakpoints([CODE + 5 + 2]);
  t.deepEqual(m.run({ instructionTarget: 22 }), { kind: 'instruction-target' });
  t.is(rip(m), CODE + 5 + 2);
  t.deepEqual(m.run({ instructionTarget: 30 }), { kind: 'breakpoint', rip: CODE + 7 });
  t.is(m.instructions, 22);
  m.setBreakpoints([]);
  // tick target first, then budget first, then the target
  t.deepEqual(m.run({ tickTarget: 6, instructionTarget: 40 }), { kind: 'tick-target' });
  t.is(m.instructions, 31);
  t.deepEqual(m.run({ instructionBudget: 3, instructionTarget: 40 }), { kind: 'budget' });
  t.is(m.instructions, 36);
  t.deepEqual(m.run({ instructionBudget: 100, instructionTarget: 40 }), { kind: 'instruction-target' });
  t.is(m.instructions, 40);
  t.is(m.ticks, 7);
  // a fault before the target: the fault, counters exact
  t.like(m.run({ instructionTarget: 100 }), { kind: 'memory-fault', address: 0x10, access: 'read' });
  t.is(m.instructions, 51);
  t.is(m.ticks, 10);
  m.close();
  // a syscall before the target
  ({ m } = machine('inc eax\n syscall\n inc eax\n inc eax\n inc eax\n syscall'));
  t.deepEqual(m.run({ instructionTarget: 4 }), { kind: 'syscall' });
  t.is(m.instructions, 2);
  t.deepEqual(m.run({ instructionTarget: 4 }), { kind: 'instruction-target' });
  t.is(m.instructions, 4);
  t.is(m.getReg('rax'), 3n);
  t.is(rip(m), CODE + 2 + 2 + 2 + 2);
  m.close();
});

test('instructionTarget over emulated POPCNT and inside blocks with rdtsc and cpuid', (t) => {
  const { m } = machine('mov ebx, 7\n popcnt eax, ebx\n inc eax\n inc eax\n rdtsc\n inc ecx\n cpuid\n inc ecx\n syscall');
  t.deepEqual(m.run({ instructionTarget: 2 }), { kind: 'instruction-target' });
  t.is(m.getReg('rax'), 3n);
  t.is(rip(m), CODE + 5 + 4);
  t.deepEqual(m.run({ instructionTarget: 3 }), { kind: 'instruction-target' });
  t.is(m.getReg('rax'), 4n);
  t.deepEqual(m.run({ instructionTarget: 7 }), { kind: 'rdtsc', rip: CODE + 13, insn: 'rdtsc' });
  t.is(m.instructions, 4);
  m.setReg('rip', BigInt(CODE + 15)); // the replayer answers rdtsc
  m.setCounters(m.ticks, 5);
  t.deepEqual(m.run({ instructionTarget: 6 }), { kind: 'instruction-target' });
  t.is(rip(m), CODE + 17);
  t.deepEqual(m.run({ instructionTarget: 7 }), { kind: 'cpuid', rip: CODE + 17 });
  m.close();
});

test('saveContext/restoreContext round-trip and re-execution to an instruction target is deterministic', (t) => {
  const a = program();
  const start = a.saveContext();
  t.deepEqual(a.run({ instructionTarget: 17 }), { kind: 'instruction-target' });
  const mid = a.saveContext();
  const at17 = state(a);
  t.deepEqual(a.run({ instructionTarget: 40 }), { kind: 'instruction-target' });
  const at40 = state(a);
  a.restoreContext(mid);
  t.is(state(a).split('/').slice(0, 4).join('/'), at17.split('/').slice(0, 4).join('/'));
  t.deepEqual(a.run({ instructionTarget: 40 }), { kind: 'instruction-target' });
  t.is(state(a), at40);
  a.restoreContext(start);
  t.deepEqual(a.run({ instructionTarget: 40 }), { kind: 'instruction-target' });
  t.is(state(a), at40);
  a.close();
});

export type { StopReason };

// ---- Watchpoints ----

/** Where `needle` (assembled) starts in `code`. */
const at = (code: Buffer, needle: string) => {
  const b = asm(needle);
  const i = code.indexOf(b);
  if (i < 0) throw new Error(`not found: ${needle}`);
  return CODE + i;
};

test('a write watchpoint on a stack slot in a loop stops just after each store, with the exact counter', (t) => {
  const src = `
    mov ecx, 4
  1:
    lea eax, [rcx*2]
    mov [rsp - 16], eax
    add ebx, eax
    mov edx, [rsp - 16]
    dec ecx
    jnz 1b
    syscall`;
  const { m, code } = machine(src);
  const slot = STACK + 0x8000 - 16;
  m.setWatchpoints([{ address: slot, length: 4, kind: 'write' }]);
  const store = at(code, 'mov [rsp - 16], eax');
  const start = m.saveContext();
  const hits: number[] = [];
  for (let i = 0; i < 4; i++) {
    const s = m.run();
    t.deepEqual(s, { kind: 'watchpoint', rip: store, address: slot, size: 4, access: 'write', instructions: 1 + i * 6 + 2 });
    hits.push(m.instructions);
    t.is(m.instructions, 1 + i * 6 + 2);
    t.is(m.ticks, i);
    t.is(rip(m), store + 4); // add ebx, eax has not run
    t.is(m.read(slot, 4).readUInt32LE(), (4 - i) * 2);
    t.is(m.getReg('rbx'), BigInt([0, 8, 14, 18][i]));
    // the same state as re-executing to that count without watchpoints
    const s2 = machine(src).m;
    t.deepEqual(s2.run({ instructionTarget: m.instructions }), { kind: 'instruction-target' });
    t.is(state(s2), state(m));
    s2.close();
  }
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.instructions, 1 + 4 * 6 + 1);
  // and from a checkpoint with the watchpoint still set: the same hits
  m.restoreContext(start);
  for (const n of hits) t.like(m.run(), { kind: 'watchpoint', instructions: n });
  m.setWatchpoints([]);
  m.restoreContext(start);
  t.deepEqual(m.run(), { kind: 'syscall' });
  m.close();
});

test('read, write and access kinds; reads do not trigger write watchpoints and the other way round', (t) => {
  const src = `
    mov rax, [rip + 0x200000 - 7]
    mov [rdi], rbx
    mov ecx, [rdi + 4]
    add dword ptr [rdi], 1
    syscall`;
  const run = (kind: 'read' | 'write' | 'access') => {
    const { m, code } = machine(src);
    m.setReg('rdi', BigInt(DATA + 0x100));
    m.setWatchpoints([{ address: DATA + 0x104, length: 2, kind }]);
    const out: StopReason[] = [];
    for (;;) {
      const s = m.run();
      if (s.kind === 'syscall') break;
      out.push(s);
    }
    m.close();
    return { out, code };
  };
  const { out: w, code } = run('write');
  const st = at(code, 'mov [rdi], rbx'), ld = at(code, 'mov ecx, [rdi + 4]'), rmw = at(code, 'add dword ptr [rdi], 1');
  t.deepEqual(w, [{ kind: 'watchpoint', rip: st, address: DATA + 0x100, size: 8, access: 'write', instructions: 2 }]);
  t.deepEqual(run('read').out, [{ kind: 'watchpoint', rip: ld, address: DATA + 0x104, size: 4, access: 'read', instructions: 3 }]);
  t.deepEqual(run('access').out, [
    { kind: 'watchpoint', rip: st, address: DATA + 0x100, size: 8, access: 'write', instructions: 2 },
    { kind: 'watchpoint', rip: ld, address: DATA + 0x104, size: 4, access: 'read', instructions: 3 },
  ]);
  t.is(rmw > 0, true); // add [rdi] touches bytes 0-3 only: never reported
});

test('unaligned accesses straddling the edge of a watched range are seen; adjacent ones are not', (t) => {
  const w = DATA + 0x40;
  const src = `
    mov [rdi - 8], rax
    mov [rdi + 4], rax
    mov [rdi - 4], rax
    mov word ptr [rdi + 3], ax
    mov rbx, [rdi + 3]
    syscall`;
  const { m, code } = machine(src);
  m.setReg('rdi', BigInt(w));
  m.setWatchpoints([{ address: w, length: 4, kind: 'access' }]);
  t.deepEqual(m.run(), { kind: 'watchpoint', rip: at(code, 'mov [rdi - 4], rax'), address: w - 4, size: 8, access: 'write', instructions: 3 });
  t.deepEqual(m.run(), { kind: 'watchpoint', rip: at(code, 'mov word ptr [rdi + 3], ax'), address: w + 3, size: 2, access: 'write', instructions: 4 });
  t.deepEqual(m.run(), { kind: 'watchpoint', rip: at(code, 'mov rbx, [rdi + 3]'), address: w + 3, size: 8, access: 'read', instructions: 5 });
  t.deepEqual(m.run(), { kind: 'syscall' });
  m.close();
});

test('rep movsb/stosb: a stop after each iteration that touches the range, then the copy goes on', (t) => {
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
  const { m, code } = machine(src);
  m.setReg('rdi', BigInt(DATA + 0x10));
  m.setWatchpoints([{ address: DATA + 0x13, length: 2, kind: 'write' }]);
  const movs = at(code, 'rep movsb'), stos = at(code, 'rep stosb');
  t.deepEqual(m.run(), { kind: 'watchpoint', rip: movs, address: DATA + 0x13, size: 1, access: 'write', instructions: 3 });
  t.is(rip(m), movs); // iterations remain
  t.is(m.getReg('rcx'), 4n);
  t.is(m.read(DATA + 0x10, 8).toString(), 'ABCD\0\0\0\0');
  t.like(m.run(), { kind: 'watchpoint', rip: movs, address: DATA + 0x14, instructions: 3 });
  t.is(m.getReg('rcx'), 3n);
  // re-executing to instructions = 3 lands after the whole rep movsb
  const r = machine(src).m;
  r.setReg('rdi', BigInt(DATA + 0x10));
  t.deepEqual(r.run({ instructionTarget: 3 }), { kind: 'instruction-target' });
  t.is(r.getReg('rcx'), 0n);
  t.is(rip(r), movs + 2);
  r.close();
  // a checkpoint inside the rep restores its progress: the rep is counted once
  const mid = m.saveContext();
  t.like(m.run(), { kind: 'watchpoint', rip: stos, address: DATA + 0x13, instructions: 6 });
  t.like(m.run(), { kind: 'watchpoint', rip: stos, address: DATA + 0x14, instructions: 6 });
  t.is(m.getReg('rcx'), 3n);
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.instructions, 7);
  t.is(m.read(DATA + 0x10, 8).toString('hex'), '00'.repeat(8)); // al = 0
  m.restoreContext(mid);
  m.setWatchpoints([]);
  t.deepEqual(m.run({ instructionTarget: 3 }), { kind: 'instruction-target' });
  t.is(rip(m), movs + 2);
  t.is(m.read(DATA + 0x10, 8).toString('latin1'), '\0\0\0\0\0FGH'); // (memory is not in the context)
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.instructions, 7);
  m.close();
});

test('FXSAVE and FXRSTOR touching the range are seen (the reserved bytes FXSAVE zeroes too)', (t) => {
  const src = `
    mov rax, 0x1122334455667788
    movq xmm2, rax
    fxsave [rdi]
    inc ebx
    fxrstor [rdi]
    inc ebx
    fxsave [rdi]
    inc ebx
    syscall`;
  const { m, code } = machine(src);
  m.setReg('rdi', BigInt(DATA + 0x200));
  const xmm2 = DATA + 0x200 + 160 + 2 * 16;
  m.setWatchpoints([{ address: xmm2 + 4, length: 1, kind: 'access' }]);
  t.like(m.run(), { kind: 'watchpoint', rip: at(code, 'fxsave [rdi]'), access: 'write', instructions: 3 });
  t.is(m.read(xmm2, 8).readBigUInt64LE(), 0x1122334455667788n);
  t.is(m.getReg('rbx'), 0n);
  t.like(m.run(), { kind: 'watchpoint', rip: at(code, 'fxrstor [rdi]'), access: 'read', instructions: 5 });
  t.is(m.getReg('rbx'), 1n);
  // bytes 10-15 of the ST0 slot: QEMU does not store them, the addon zeroes them before FXSAVE
  m.write(DATA + 0x200 + 32 + 10, Buffer.alloc(6, 0xff));
  m.setWatchpoints([{ address: DATA + 0x200 + 32 + 12, length: 2, kind: 'write' }]);
  const s = m.run();
  t.like(s, { kind: 'watchpoint', rip: at(code, 'fxsave [rdi]\n inc ebx\n syscall'), access: 'write', instructions: 7 });
  t.is(m.getReg('rbx'), 2n);
  t.is(rip(m), at(code, 'fxsave [rdi]\n inc ebx\n syscall') + 3);
  t.is(m.read(DATA + 0x200 + 32 + 10, 6).toString('hex'), '000000000000');
  t.deepEqual(m.run(), { kind: 'syscall' });
  m.close();
});

test('write() never triggers watchpoints; an emptied list removes them', (t) => {
  const { m } = machine('mov eax, [rdi]\n mov [rdi], eax\n syscall');
  m.setReg('rdi', BigInt(DATA));
  m.setWatchpoints([{ address: DATA, length: 8, kind: 'access' }]);
  m.write(DATA, Buffer.from('0102030405060708', 'hex'));
  t.deepEqual(m.read(DATA, 2), Buffer.from([1, 2]));
  t.like(m.run(), { kind: 'watchpoint', access: 'read', instructions: 1 });
  m.write(DATA, Buffer.from('aa', 'hex'));
  m.setWatchpoints([]);
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.read(DATA, 4).toString('hex'), '01020304'); // eax as read before the write()
  m.close();
});

test('a store ending its block (call, push then jmp): the stop is at the next block, before it runs', (t) => {
  const src = `
    mov ecx, 2
  1:
    call fn
    dec ecx
    jnz 1b
    syscall
  fn:
    inc eax
    ret`;
  const { m, code } = machine(src);
  const ret = STACK + 0x8000 - 8;
  m.setWatchpoints([{ address: ret, length: 8, kind: 'write' }]);
  const fn = at(code, 'inc eax\n ret');
  for (let i = 0; i < 2; i++) {
    t.deepEqual(m.run(), { kind: 'watchpoint', rip: CODE + 5, address: ret, size: 8, access: 'write', instructions: 2 + 5 * i });
    t.is(rip(m), fn);
    t.is(m.getReg('rax'), BigInt(i));
    t.is(m.ticks, i);
  }
  m.setWatchpoints([{ address: ret, length: 8, kind: 'read' }]);
  t.deepEqual(m.run(), { kind: 'watchpoint', rip: at(code, 'ret'), address: ret, size: 8, access: 'read', instructions: 9 });
  t.is(rip(m), at(code, 'dec ecx'));
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.instructions, 12);
  m.close();
});

test('watchpoints with breakpoints and instruction targets: each stop in order, nothing skipped', (t) => {
  const src = `
    mov ecx, 3
  1:
    mov [rdi], ecx
    inc eax
    inc ebx
    dec ecx
    jnz 1b
    syscall`;
  const { m, code } = machine(src);
  m.setReg('rdi', BigInt(DATA));
  const store = at(code, 'mov [rdi], ecx'), incEax = store + 2, incEbx = incEax + 2;
  m.setWatchpoints([{ address: DATA, length: 4, kind: 'write' }]);
  m.setBreakpoints([incEax]);
  t.like(m.run(), { kind: 'watchpoint', rip: store, instructions: 2 });
  t.is(rip(m), incEax);
  t.deepEqual(m.run(), { kind: 'breakpoint', rip: incEax });
  t.is(m.instructions, 2);
  // the instruction target is the store's own position: the watchpoint is reported
  t.like(m.run({ instructionTarget: 7 }), { kind: 'watchpoint', rip: store, instructions: 7 });
  t.is(m.instructions, 7);
  t.deepEqual(m.run({ instructionTarget: 7 }), { kind: 'instruction-target' }); // already there
  t.deepEqual(m.run({ instructionTarget: 8 }), { kind: 'breakpoint', rip: incEax });
  t.deepEqual(m.run({ instructionTarget: 8 }), { kind: 'instruction-target' });
  t.is(rip(m), incEbx);
  m.setBreakpoints([]);
  t.like(m.run({ instructionTarget: 100 }), { kind: 'watchpoint', instructions: 12 });
  t.deepEqual(m.run({ instructionTarget: 100 }), { kind: 'syscall' });
  t.is(m.instructions, 17);
  m.close();
});

test('emulated MOVBE stores are seen; an instruction that faults after a watched read is not reported', (t) => {
  const { m, code } = machine(`mov rax, 0x0102030405060708\n movbe [rdi], rax\n inc ebx\n mov rsi, rdi\n mov rdi, 0x10\n movsq\n syscall`);
  m.setReg('rdi', BigInt(DATA));
  m.setWatchpoints([{ address: DATA + 7, length: 1, kind: 'access' }]);
  t.deepEqual(m.run(), { kind: 'watchpoint', rip: at(code, 'movbe [rdi], rax'), address: DATA, size: 8, access: 'write', instructions: 2 });
  t.is(m.getReg('rbx'), 0n);
  t.is(m.read(DATA, 8).toString('hex'), '0102030405060708');
  // movsq reads DATA (watched) then writes 0x10 (unmapped): a fault, the read is not reported
  t.like(m.run(), { kind: 'memory-fault', rip: at(code, 'movsq'), address: 0x10, access: 'write' });
  t.is(m.instructions, 5);
  m.close();
});

test('step() reports a watchpoint hit by its instruction; a hit whose next fetch faults is reported first', (t) => {
  const { m, code } = machine('mov [rdi], eax\n inc ebx\n push 0x1234\n ret');
  m.setReg('rdi', BigInt(DATA));
  m.setWatchpoints([{ address: DATA, length: 4, kind: 'write' }, { address: STACK + 0x8000 - 8, length: 8, kind: 'read' }]);
  t.deepEqual(m.step(), { kind: 'watchpoint', rip: CODE, address: DATA, size: 4, access: 'write', instructions: 1 });
  t.is(rip(m), CODE + 2);
  t.deepEqual(m.step(), { kind: 'budget' });
  const ret = CODE + code.length - 1;
  t.deepEqual(m.run(), { kind: 'watchpoint', rip: ret, address: STACK + 0x8000 - 8, size: 8, access: 'read', instructions: 4 });
  t.is(rip(m), 0x1234);
  t.like(m.run(), { kind: 'memory-fault', rip: 0x1234, address: 0x1234, access: 'fetch' });
  t.is(m.instructions, 4);
  m.close();
});

test('a store into its own block on a watched code page (QEMU re-runs it alone): one stop, after it', (t) => {
  const { m, code } = machine('mov byte ptr [rip + 1f + 1], 7\n inc ebx\n1: mov eax, 1\n inc ebx\n syscall', RWX);
  const imm = at(code, 'mov eax, 1') + 1;
  m.setWatchpoints([{ address: imm, length: 1, kind: 'write' }]);
  t.deepEqual(m.run(), { kind: 'watchpoint', rip: CODE, address: imm, size: 1, access: 'write', instructions: 1 });
  t.is(rip(m), CODE + 7);
  t.is(m.getReg('rbx'), 0n);
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.getReg('rax'), 7n);
  t.is(m.getReg('rbx'), 2n);
  t.is(m.instructions, 5);
  m.close();
});

test('rep movsb faulting in its first or a later iteration is not counted yet, and counted once when it resumes', (t) => {
  for (const [offset, name] of [[0, 'first'], [3, 'later']] as const) {
    const { m, code } = machine('mov ecx, 6\n rep movsb\n inc ebx\n syscall');
    m.map(0x8ff000, 0x1000, PROT_READ | PROT_WRITE);
    m.setReg('rsi', BigInt(CODE));
    m.setReg('rdi', BigInt(0x900000 - offset)); // 0x900000 is not mapped yet
    const rep = at(code, 'rep movsb');
    t.like(m.run(), { kind: 'memory-fault', rip: rep, address: 0x900000, access: 'write' }, name);
    t.is(m.instructions, 1, name);
    t.is(m.getReg('rcx'), BigInt(6 - offset), name);
    m.map(0x900000, 0x1000, PROT_READ | PROT_WRITE);
    t.deepEqual(m.run(), { kind: 'syscall' }, name);
    t.is(m.instructions, 4, name);
    m.close();
  }
});

test('setWatchpoints checks its input', (t) => {
  const m = new Machine();
  t.throws(() => m.setWatchpoints([{ address: 0x1000, length: 0, kind: 'write' }]), { message: /length/ });
  t.throws(() => m.setWatchpoints([{ address: 0x1000, length: 4, kind: 'exec' as never }]), { message: /kind/ });
  t.throws(() => m.setWatchpoints([{ address: -1, length: 4, kind: 'read' }]), { message: /non-negative/ });
  t.throws(() => m.setWatchpoints({} as never), { message: /array/ });
  t.notThrows(() => m.setWatchpoints([]));
  t.throws(() => m.run({ instructionTarget: -5 }), { message: /instructionTarget/ });
  m.close();
  t.throws(() => m.setWatchpoints([]), { message: /closed/ });
});

test('breakpoints and rdtsc/cpuid stops keep working when watchpoints come and go (their hooks are folded meanwhile)', (t) => {
  const { m, code } = machine('1: inc eax\n mov [rdi], eax\n rdtsc\n inc ebx\n cmp ebx, 4\n jne 1b\n syscall');
  m.setReg('rdi', BigInt(DATA));
  const incEbx = at(code, 'inc ebx'), rdtsc = at(code, 'rdtsc');
  m.setBreakpoints([incEbx]);
  t.deepEqual(m.run(), { kind: 'rdtsc', rip: rdtsc, insn: 'rdtsc' });
  const skip = () => m.setReg('rip', BigInt(rdtsc + 2));
  skip();
  t.deepEqual(m.run(), { kind: 'breakpoint', rip: incEbx });
  m.setWatchpoints([{ address: DATA, length: 4, kind: 'write' }]);
  t.like(m.run(), { kind: 'watchpoint', rip: CODE + 2 });
  t.deepEqual(m.run(), { kind: 'rdtsc', rip: rdtsc, insn: 'rdtsc' });
  skip();
  t.deepEqual(m.run(), { kind: 'breakpoint', rip: incEbx });
  m.setBreakpoints([]);
  m.setBreakpoints([CODE]);
  t.deepEqual(m.run(), { kind: 'breakpoint', rip: CODE });
  m.setWatchpoints([]);
  t.deepEqual(m.run(), { kind: 'rdtsc', rip: rdtsc, insn: 'rdtsc' });
  skip();
  t.deepEqual(m.run(), { kind: 'breakpoint', rip: CODE });
  m.setBreakpoints([]);
  t.deepEqual(m.run(), { kind: 'rdtsc', rip: rdtsc, insn: 'rdtsc' });
  skip();
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.getReg('rbx'), 4n);
  m.close();
});

test('an unaligned store across a page boundary into a watched range at the start of the next page', (t) => {
  const { m } = machine('mov [rdi], rax\n syscall');
  m.map(DATA + 0x1000, 0x1000, PROT_READ | PROT_WRITE);
  m.setReg('rdi', BigInt(DATA + 0x1000 - 3));
  m.setReg('rax', 0x1122334455667788n);
  m.setWatchpoints([{ address: DATA + 0x1001, length: 1, kind: 'write' }]);
  t.deepEqual(m.run(), { kind: 'watchpoint', rip: CODE, address: DATA + 0x1000 - 3, size: 8, access: 'write', instructions: 1 });
  t.is(m.read(DATA + 0x1000 - 3, 8).readBigUInt64LE(), 0x1122334455667788n);
  t.is(rip(m), CODE + 3);
  m.close();
});

test('a read crossing a page stops only for the bytes it reads (Unicorn re-reads the aligned halves: not accesses)', (t) => {
  const page = DATA + 0x1000;
  const run = (address: number, length: number) => {
    const { m } = machine('mov rax, [rdi]\n inc ebx\n syscall');
    m.map(page, 0x1000, PROT_READ | PROT_WRITE);
    m.setReg('rdi', BigInt(page - 3));
    m.setWatchpoints([{ address, length, kind: 'read' }]);
    const s = m.run();
    m.close();
    return s;
  };
  const hit = { kind: 'watchpoint', rip: CODE, address: page - 3, size: 8, access: 'read', instructions: 1 };
  t.deepEqual(run(page - 8, 4), { kind: 'syscall' }); // only in the aligned lower half
  t.deepEqual(run(page + 5, 3), { kind: 'syscall' }); // only in the aligned upper half
  t.deepEqual(run(page - 4, 2), hit);
  t.deepEqual(run(page + 4, 1), hit);
});

test('instructionTarget for every N with a watchpoint set elsewhere (the target hook is folded into the watch hook)', (t) => {
  for (let n = 0; n <= PROGRAM_INSNS; n++) {
    const a = program();
    a.setWatchpoints([{ address: DATA + 0x800, length: 8, kind: 'access' }]);
    t.deepEqual(a.run({ instructionTarget: n }), n === PROGRAM_INSNS ? { kind: 'syscall' } : { kind: 'instruction-target' }, `n = ${n}`);
    a.setWatchpoints([]);
    const b = program();
    stepTo(b, n);
    t.is(state(a), state(b), `n = ${n}`);
    if (n < PROGRAM_INSNS) {
      t.deepEqual(a.run(), { kind: 'syscall' });
      t.is(a.instructions, PROGRAM_INSNS);
    }
    a.close();
    b.close();
  }
});
