// FXSAVE writes bytes 10-15 of each 16-byte ST0-7/MM0-7 slot as zeros on the CPU; QEMU 5.0's
// helper_fxsave stores only the 10-byte register and leaves them as they were. glibc's
// lazy-binding trampoline (_dl_runtime_resolve_fxsave) FXSAVEs on the stack, and a long double
// stored later in that stack slot (fstp m80 writes 10 bytes of 16) carried the stale bytes: seq -w
// pushed it to printf as two qwords and r9 at the next write was 0x7f....400c instead of 0x400c.
// The addon puts a hook before every FXSAVE that zeroes those bytes; QEMU writes the rest.
import test from 'ava';
import { Machine, PROT_EXEC, PROT_READ, PROT_WRITE } from '../../src/emulator/machine.ts';
import { asm } from './asm.ts';

const CODE = 0x400000;
const STACK = 0x7f0000;
const AREA = STACK + 0x8000;

function run(src: string, counting: boolean): { m: Machine; area: Buffer } {
  const m = new Machine({ counting });
  m.map(CODE, 0x10000, PROT_READ | PROT_WRITE | PROT_EXEC);
  m.write(CODE, asm(src));
  m.map(STACK, 0x10000, PROT_READ | PROT_WRITE);
  m.write(AREA, Buffer.alloc(512, 0xaa));
  m.setReg('rsp', BigInt(AREA));
  m.setReg('rip', BigInt(CODE));
  return { m, area: Buffer.alloc(0) };
}

const SRC = (insn: string) => `
    fld1
    fldpi
    ${insn} [rsp]
    mov eax, 1
    syscall`;

for (const insn of ['fxsave', 'fxsave64']) {
  // counting: false (measurement only) has no block hook, so no hook before FXSAVE either.
  for (const counting of [true]) {
    test(`${insn} zeroes the reserved bytes of ST0-7`, (t) => {
      const { m } = run(SRC(insn), counting);
      t.is(m.run().kind, 'syscall');
      const a = m.read(AREA, 512);
      // ST0 = pi, ST1 = 1.0: 10 bytes each, then six zero bytes; ST2-7 empty: all 16 bytes zero.
      t.is(a.subarray(32, 42).toString('hex'), '35c26821a2da0fc90040');
      t.is(a.subarray(48, 58).toString('hex'), '0000000000000080ff3f');
      for (let i = 0; i < 8; i++) t.is(a.subarray(32 + 16 * i + 10, 32 + 16 * i + 16).toString('hex'), '000000000000', `ST${i} bytes 10-15`);
      t.is(m.instructions, counting ? 5 : 0);
      m.close();
    });
  }
}

test('step() over fxsave zeroes them too', (t) => {
  const { m } = run(SRC('fxsave'), true);
  for (let i = 0; i < 3; i++) t.is(m.step().kind, 'budget');
  t.is(Number(m.getReg('rip')), CODE + 8);
  const a = m.read(AREA, 512);
  for (let i = 0; i < 8; i++) t.is(a.subarray(32 + 16 * i + 10, 32 + 16 * i + 16).toString('hex'), '000000000000');
  m.close();
});

test('a misaligned fxsave still faults and writes nothing', (t) => {
  const { m } = run(`
    add rsp, 8
    fxsave [rsp]
    mov eax, 1
    syscall`, true);
  const s = m.run();
  t.not(s.kind, 'syscall');
  t.is(m.read(AREA + 8, 504).toString('hex'), 'aa'.repeat(504));
  m.close();
});
