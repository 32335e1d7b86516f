// FXSAVE/FXRSTOR must save and restore MXCSR and XMM0-15 as on Linux (CR4.OSFXSR set). Unicorn
// 2.0.1 starts with CR4 = 0, where QEMU's FXSAVE/FXRSTOR leave them out: glibc's lazy-binding
// trampoline (_dl_runtime_resolve_fxsave, the one used when XSAVE is masked) then lost a double
// passed to printf on its first call, and __printf_fp printed garbage in the replay.
// Also: step() after run() over the same code executes one instruction, not the cached blocks.
import test from 'ava';
import { Machine, PROT_EXEC, PROT_READ, PROT_WRITE } from '../../src/emulator/machine.ts';
import { asm } from './asm.ts';

const CODE = 0x400000;
const STACK = 0x7f0000;
const AREA = STACK + 0x8000; // 16-byte aligned FXSAVE area

function machine(src: string, counting: boolean): Machine {
  const m = new Machine({ counting });
  m.map(CODE, 0x10000, PROT_READ | PROT_WRITE | PROT_EXEC);
  m.write(CODE, asm(src));
  m.map(STACK, 0x10000, PROT_READ | PROT_WRITE);
  m.setReg('rsp', BigInt(AREA));
  m.setReg('rip', BigInt(CODE));
  return m;
}

// xmm0 = 0x1122334455667788 (low) / 0x0123456789abcdef (high), xmm15 = 0x99aabbccddeeff00 (low),
// MXCSR = 0x3f80 (all masked, round down); FXSAVE, clobber them, FXRSTOR, read them back.
const SAVE_CLOBBER_RESTORE = `
    mov rax, 0x1122334455667788
    movq xmm0, rax
    mov rax, 0x0123456789abcdef
    movq xmm1, rax
    punpcklqdq xmm0, xmm1
    mov rax, 0x99aabbccddeeff00
    movq xmm15, rax
    mov dword ptr [rsp - 16], 0x3f80
    ldmxcsr [rsp - 16]
    fxsave [rsp]
    pxor xmm0, xmm0
    pxor xmm15, xmm15
    mov dword ptr [rsp - 16], 0x1f80
    ldmxcsr [rsp - 16]
    fxrstor [rsp]
    movq rbx, xmm0
    pextrq r8, xmm0, 1
    movq rdx, xmm15
    stmxcsr [rsp - 16]
    mov esi, dword ptr [rsp - 16]
    syscall`;

for (const counting of [true, false]) {
  test(`FXSAVE stores MXCSR and XMM0-15, FXRSTOR restores them (counting ${counting})`, (t) => {
    const m = machine(SAVE_CLOBBER_RESTORE, counting);
    t.deepEqual(m.run(), { kind: 'syscall' });
    t.is(m.getReg('rbx'), 0x1122334455667788n);
    t.is(m.getReg('r8'), 0x0123456789abcdefn);
    t.is(m.getReg('rdx'), 0x99aabbccddeeff00n);
    t.is(m.getReg('rsi'), 0x3f80n);
    const area = m.read(AREA, 512);
    t.is(area.readUInt32LE(24), 0x3f80); // MXCSR
    t.is(area.readBigUInt64LE(160), 0x1122334455667788n); // XMM0
    t.is(area.readBigUInt64LE(168), 0x0123456789abcdefn);
    t.is(area.readBigUInt64LE(160 + 15 * 16), 0x99aabbccddeeff00n); // XMM15
    m.close();
  });
}

test('the lazy-binding trampoline shape keeps a double argument in xmm0', (t) => {
  // _dl_runtime_resolve_fxsave: fxsave, a call that uses SSE, fxrstor, then the callee reads xmm0.
  const m = machine(
    `
    mov rax, 0x401b7d32fefbe38b
    movq xmm0, rax
    push rbx
    mov rbx, rsp
    and rsp, -16
    sub rsp, 0x240
    fxsave [rsp + 0x40]
    call fixup
    fxrstor [rsp + 0x40]
    mov rsp, rbx
    pop rbx
    movq rdi, xmm0
    syscall
  fixup:
    pxor xmm0, xmm0
    mov eax, 0xff
    movd xmm0, eax
    pslldq xmm0, 11
    ret`,
    true,
  );
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.getReg('rdi'), 0x401b7d32fefbe38bn);
  m.close();
});

test('step after run over the same code executes exactly one instruction', (t) => {
  const m = machine('lea rax, [rip + 1f]\n jmp rax\n1: mov ebx, 1\n add ebx, 2\n add ebx, 3\n syscall', true);
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.instructions, 6);
  m.setReg('rip', BigInt(CODE));
  m.setReg('rbx', 0n);
  m.setCounters(0, 0);
  const seen: Array<[number, bigint]> = [];
  for (let i = 0; i < 5; i++) {
    t.deepEqual(m.step(), { kind: 'budget' });
    seen.push([Number(m.getReg('rip')) - CODE, m.getReg('rbx')]);
  }
  t.deepEqual(seen, [[7, 0n], [9, 0n], [14, 1n], [17, 3n], [20, 6n]]);
  t.is(m.instructions, 5);
  t.deepEqual(m.step(), { kind: 'syscall' });
  t.is(m.instructions, 6);
  // and a run after the steps is a normal run again
  m.setReg('rip', BigInt(CODE));
  m.setCounters(0, 0);
  t.deepEqual(m.run(), { kind: 'syscall' });
  t.is(m.instructions, 6);
  t.is(m.getReg('rbx'), 6n);
  m.close();
});
