// A stop asked for by the block hook (instruction budget, tick target) exits before the block, but
// Unicorn 2.0.1 leaves RIP where QEMU last stored it: cpu_tb_exec skips synchronize_from_tb when a
// stop was requested, and chained TBs (direct jumps) do not store EIP. After a `ret` (which stores
// EIP = its return address) a loop of direct jumps ran with a stale RIP, and the run resumed at the
// return address with the loop's registers (bc -l: r15 = 0xcccccccd used as a pointer).
import test from 'ava';
import { Machine, PROT_EXEC, PROT_READ, PROT_WRITE } from '../../src/emulator/machine.ts';
import { asm } from './asm.ts';

const CODE = 0x400000;
const STACK = 0x7f0000;

// f returns to `after` (EIP stored there by the ret); the loop then runs 1000 times through two
// blocks joined by direct jumps: ecx counts down, eax sums 1000 + 999 + ... + 1 = 500500.
const SRC = `
    call f
after:
    mov ecx, 1000
    xor eax, eax
1:  add eax, ecx
    jmp 2f
2:  dec ecx
    jnz 1b
    mov r15, 0x1234
    syscall
f:  mov r15, 0xcccccccd
    ret
`;

function machine(counting = true): Machine {
  const m = new Machine({ counting });
  m.map(CODE, 0x1000, PROT_READ | PROT_EXEC);
  m.write(CODE, asm(SRC));
  m.map(STACK, 0x10000, PROT_READ | PROT_WRITE);
  m.setReg('rsp', BigInt(STACK + 0x8000));
  m.setReg('rip', BigInt(CODE));
  return m;
}

test('budget stop in a loop of chained blocks leaves RIP at the next block, and resuming is exact', (t) => {
  const m = machine();
  // call, mov r15, ret, mov ecx, xor eax = 5; then 4 per iteration.
  t.deepEqual(m.run({ instructionBudget: 5 + 4 * 300 + 2 }), { kind: 'budget' });
  t.is(m.instructions, 5 + 4 * 300 + 2);
  t.is(m.getReg('rip'), BigInt(CODE + 5 + 5 + 2 + 2 + 2)); // at `2:` (call, mov, xor, add, jmp) (dec ecx)
  t.is(m.getReg('rcx'), 700n);
  t.is(m.getReg('r15'), 0xcccccccdn);
  let stops = 1;
  for (;;) {
    const s = m.run({ instructionBudget: 333 });
    if (s.kind !== 'budget') {
      t.deepEqual(s, { kind: 'syscall' });
      break;
    }
    stops++;
  }
  t.true(stops > 5);
  t.is(m.getReg('rax'), 500500n);
  t.is(m.getReg('r15'), 0x1234n);
  t.is(m.instructions, 5 + 4 * 1000 + 2);
  m.close();
});

test('tick target stop in a loop of chained blocks leaves RIP at the next block', (t) => {
  const m = machine();
  t.deepEqual(m.run({ tickTarget: 250 }), { kind: 'tick-target' });
  t.is(m.ticks, 250);
  t.is(m.getReg('rip'), BigInt(CODE + 5 + 5 + 2)); // at `1:` after 250 jnz
  t.is(m.getReg('rcx'), 750n);
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.getReg('rax'), 500500n);
  m.close();
});

// The same stale RIP on a data fault: the faulting block is reached by a chained jump after a
// `ret` stored EIP, so RIP holds the return address, not the block's start (a SIGSEGV probe after
// a call replayed as a fault at the call's return address). Pages STACK + n*4096 are read for
// n = 0, 1...; n = 16 is past the mapping.
test('a data fault in a block reached by chained jumps after a ret is placed at the faulting instruction', (t) => {
  const m = new Machine();
  m.map(CODE, 0x1000, PROT_READ | PROT_EXEC);
  const code = asm(`
    xor ecx, ecx
    mov rsi, ${STACK}
1:  call f
    jmp 2f
2:  mov rax, rcx
    shl rax, 12
    mov rbx, qword ptr [rsi + rax]
    inc ecx
    jmp 1b
f:  ret
`);
  m.write(CODE, code);
  m.map(STACK, 0x10000, PROT_READ | PROT_WRITE);
  m.setReg('rsp', BigInt(STACK + 0x8000));
  m.setReg('rip', BigInt(CODE));
  const load = CODE + code.indexOf(Buffer.from([0x48, 0x8b, 0x1c, 0x06]));
  t.deepEqual(m.run(), { kind: 'memory-fault', rip: load, address: STACK + 0x10000, access: 'read', cause: 'unmapped' });
  t.is(m.getReg('rip'), BigInt(load));
  t.is(m.getReg('rcx'), 16n);
  t.is(m.instructions, 2 + 16 * 8 + 5);
  m.close();
});

// After a fault RIP holds what we set (the faulting instruction). When a later fault comes in a
// chained block that contains that address, RIP is inside the block but stale: a stack grown by
// faults (as replay does) had a call's push fault placed at the earlier store, which re-ran
// `add rdi, 1` (a stack overflow SIGSEGV then came at a different depth than recorded).
test('stack growth by faults: every fault is placed at its instruction, even with a stale RIP inside the block', (t) => {
  const m = new Machine();
  const TOP = 0x7f0000000, R0 = TOP - 0x100;
  m.map(CODE, 0x1000, PROT_READ | PROT_EXEC);
  const code = asm(`
    xor edi, edi
    call recurse
    syscall
recurse:
    sub rsp, 0x408
    mov byte ptr [rsp], dil
    add rdi, 1
    call recurse
    add rsp, 0x408
    ret
`);
  m.write(CODE, code);
  const store = CODE + code.indexOf(Buffer.from([0x40, 0x88, 0x3c, 0x24]));
  const call = store + 4 + 4;
  m.map(TOP - 0x2000, 0x2000, PROT_READ | PROT_WRITE);
  m.setReg('rsp', BigInt(R0));
  m.setReg('rip', BigInt(CODE));
  let low = TOP - 0x2000, callFaults = 0;
  for (let i = 0; i < 300; i++) {
    const s = m.run();
    if (s.kind !== 'memory-fault') return t.fail(`stop ${s.kind}`);
    const rsp = m.getReg('rsp'), rdi = m.getReg('rdi');
    const frames = (BigInt(R0) - rsp) / 1040n;
    if (s.rip === call) {
      callFaults++;
      t.is(s.address, Number(rsp) - 8);
      if (rdi !== frames) return t.fail(`fault ${i} at the call: rdi ${rdi}, ${frames} frames`);
    } else {
      t.is(s.rip, store);
      if (rdi !== frames - 1n) return t.fail(`fault ${i} at the store: rdi ${rdi}, ${frames} frames`);
    }
    const page = Math.floor(s.address / 4096) * 4096;
    m.map(page, low - page, PROT_READ | PROT_WRITE);
    low = page;
  }
  t.true(callFaults >= 3);
  m.close();
});
