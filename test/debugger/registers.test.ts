// gdb's x86-64 Linux register numbering over user_regs_struct and FXSAVE, and the target
// description: well-formed, and read by the real gdb with the numbering and offsets we send.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  abridgedTag, decodeRegisters, encodeRegisters, fullTagWord, G_PACKET_BYTES, GDB_REGISTERS, gdbRegNumber, readRegister,
} from '../../src/debugger/gdb/registers.ts';
import { featureDocument, TARGET_XML } from '../../src/debugger/gdb/target-description.ts';
import { USER_REGS } from '../../src/trace/schema.ts';

/** A register state where user_regs_struct slot i holds 0x1100+i (and segment/eflags fit 32 bits),
 * FXSAVE byte k holds k & 0xff. */
function sample() {
  const regs = new Uint8Array(216);
  const dv = new DataView(regs.buffer);
  USER_REGS.forEach((_, i) => dv.setBigUint64(i * 8, 0x1100n + BigInt(i) + (i === 16 ? 0x7f0000000000n : 0n), true));
  const fxsave = Uint8Array.from({ length: 512 }, (_, k) => k & 0xff);
  return { regs, fxsave };
}

const u64 = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(0, true);

test('numbering: gdbserver order, 60 registers, 560 bytes of g data', (t) => {
  t.is(GDB_REGISTERS.length, 60);
  t.is(G_PACKET_BYTES, 560);
  const names = GDB_REGISTERS.map((r) => r.name);
  t.deepEqual(names.slice(0, 18), ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'eflags']);
  t.is(gdbRegNumber('st0'), 24);
  t.is(gdbRegNumber('fop'), 39);
  t.is(gdbRegNumber('xmm0'), 40);
  t.is(gdbRegNumber('mxcsr'), 56);
  t.is(gdbRegNumber('orig_rax'), 57);
  t.is(gdbRegNumber('fs_base'), 58);
  t.is(gdbRegNumber('gs_base'), 59);
});

test('general registers come from their user_regs_struct slots', (t) => {
  const s = sample();
  const slot = (name: string) => 0x1100n + BigInt(USER_REGS.indexOf(name as (typeof USER_REGS)[number]));
  for (const name of ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r15', 'orig_rax', 'fs_base', 'gs_base']) {
    t.is(u64(readRegister(s, gdbRegNumber(name))), slot(name), name);
  }
  t.is(u64(readRegister(s, gdbRegNumber('rip'))), 0x7f0000000000n + slot('rip'));
  const eflags = readRegister(s, gdbRegNumber('eflags'));
  t.is(eflags.length, 4);
  t.deepEqual([...eflags], [Number(slot('eflags') & 0xffn), Number(slot('eflags') >> 8n), 0, 0]);
  t.is(readRegister(s, gdbRegNumber('gs')).length, 4);
  const g = encodeRegisters(s);
  t.is(g.length, 560);
  t.is(u64(g.subarray(536, 544)), slot('orig_rax'));
  t.is(u64(g.subarray(544, 552)), slot('fs_base'));
  t.is(u64(g.subarray(552, 560)), slot('gs_base'));
});

test('x87 and SSE registers come from the FXSAVE area', (t) => {
  const s = sample();
  t.deepEqual([...readRegister(s, gdbRegNumber('st0'))], [32, 33, 34, 35, 36, 37, 38, 39, 40, 41]);
  t.deepEqual([...readRegister(s, gdbRegNumber('st7'))], Array.from({ length: 10 }, (_, k) => 32 + 7 * 16 + k));
  t.deepEqual([...readRegister(s, gdbRegNumber('xmm0'))], Array.from({ length: 16 }, (_, k) => 160 + k));
  t.deepEqual([...readRegister(s, gdbRegNumber('xmm15'))], Array.from({ length: 16 }, (_, k) => (160 + 15 * 16 + k) & 0xff));
  t.deepEqual([...readRegister(s, gdbRegNumber('mxcsr'))], [24, 25, 26, 27]);
  t.deepEqual([...readRegister(s, gdbRegNumber('fctrl'))], [0, 1, 0, 0]);
  t.deepEqual([...readRegister(s, gdbRegNumber('fstat'))], [2, 3, 0, 0]);
  t.deepEqual([...readRegister(s, gdbRegNumber('fioff'))], [8, 9, 10, 11]);
  t.deepEqual([...readRegister(s, gdbRegNumber('fiseg'))], [12, 13, 0, 0]);
  t.deepEqual([...readRegister(s, gdbRegNumber('fooff'))], [16, 17, 18, 19]);
  t.deepEqual([...readRegister(s, gdbRegNumber('foseg'))], [20, 21, 0, 0]);
  t.deepEqual([...readRegister(s, gdbRegNumber('fop'))], [6, 7 & 7, 0, 0]);
});

test('the x87 tag word: empty, valid, zero and special registers', (t) => {
  const fx = new Uint8Array(512);
  fx[0] = 0x7f;
  fx[1] = 0x03; // FCW 0x037f
  t.is(fullTagWord(fx), 0xffff, 'all empty');
  // One value pushed: TOP = 7, ST0 is physical register 7, holding 1.0.
  fx[3] = 7 << 3;
  fx[4] = 0x80;
  fx[32 + 7] = 0x80;
  fx[32 + 8] = 0xff;
  fx[32 + 9] = 0x3f;
  t.is(fullTagWord(fx), 0x3fff, 'ST0 valid');
  // Two more: TOP = 5; ST0 (phys 5) is +0.0, ST1 (phys 6) a NaN.
  fx[3] = 5 << 3;
  fx[4] = 0xe0;
  fx.copyWithin(64, 32, 48); // 1.0 moves to ST2 (phys 7)
  fx.fill(0, 32, 48); // ST0 = +0.0
  fx.fill(0xff, 48, 58); // ST1 = NaN
  fx[48 + 9] = 0x7f;
  t.is(fullTagWord(fx), 0b00_10_01_11_11_11_11_11);
  t.is(abridgedTag(fullTagWord(fx)), 0xe0);
  t.deepEqual([...readRegister({ regs: new Uint8Array(216), fxsave: fx }, gdbRegNumber('ftag'))], [0xff, 0x27, 0, 0]);
});

test('g data decodes back to the same user_regs_struct and FXSAVE', (t) => {
  const s = sample();
  s.fxsave.fill(0, 464); // the reserved tail is not in gdb's view: compare what is
  s.fxsave[4] = 0; // abridged tag: all empty, as its full form says
  s.fxsave[7] &= 7; // the opcode is 11 bits
  for (const reserved of [5, 14, 15, 22, 23]) s.fxsave[reserved] = 0;
  for (let i = 0; i < 8; i++) s.fxsave.fill(0, 32 + 16 * i + 10, 32 + 16 * i + 16); // bytes 10-15 of each x87 slot
  const back = decodeRegisters(encodeRegisters(s), { regs: new Uint8Array(216), fxsave: new Uint8Array(512) });
  // Slots gdb sees as 32 bits (eflags, segments) come back with what fits.
  t.deepEqual(back.regs, s.regs);
  for (const [at, len] of [[0, 8], [8, 16], [24, 4], [32, 128], [160, 256]]) {
    t.deepEqual(back.fxsave.subarray(at, at + len), s.fxsave.subarray(at, at + len), `FXSAVE ${at}`);
  }
});

test('target.xml: x86-64 GNU/Linux with core, sse, linux and segments, every register once', (t) => {
  t.is(featureDocument('target.xml'), TARGET_XML);
  t.is(featureDocument('other.xml'), undefined);
  t.true(TARGET_XML.includes('<architecture>i386:x86-64</architecture>'));
  t.true(TARGET_XML.includes('<osabi>GNU/Linux</osabi>'));
  for (const f of ['core', 'sse', 'linux', 'segments']) t.true(TARGET_XML.includes(`<feature name="org.gnu.gdb.i386.${f}">`), f);
  // Well-formed: every element closes in order.
  const stack: string[] = [];
  for (const m of TARGET_XML.matchAll(/<(\/?)([a-zA-Z][\w-]*)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m;
    if (selfClosing) continue;
    if (closing) t.is(stack.pop(), name);
    else stack.push(name);
  }
  t.deepEqual(stack, []);
  const regs = [...TARGET_XML.matchAll(/<reg name="([^"]+)" bitsize="(\d+)" type="([^"]+)" regnum="(\d+)"/g)];
  t.deepEqual(regs.map((m) => m[1]), GDB_REGISTERS.map((r) => r.name));
  t.deepEqual(regs.map((m) => Number(m[4])), GDB_REGISTERS.map((_, i) => i));
  // Types used are defined or gdb's predefined ones.
  const defined = new Set([...TARGET_XML.matchAll(/ id="([^"]+)"/g)].map((m) => m[1]));
  for (const m of regs) t.true(defined.has(m[3]) || ['int', 'int32', 'int64', 'data_ptr', 'code_ptr', 'i387_ext'].includes(m[3]), m[3]);
});

test('real gdb reads target.xml as amd64 Linux with our remote numbers and g offsets', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ra-tdesc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const xml = join(dir, 'target.xml');
  writeFileSync(xml, TARGET_XML);
  const out = execFileSync('gdb', ['-batch', '-nx', '-ex', `set tdesc filename ${xml}`, '-ex', 'file /bin/true', '-ex', 'show architecture', '-ex', 'show osabi', '-ex', 'maint print remote-registers'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.regex(out, /currently "i386:x86-64"/);
  t.regex(out, /currently "GNU\/Linux"/);
  // " Name Nr Rel Offset Size Type RmtNr g/G-Offset"
  const rows = new Map<string, { size: number; remote: number; offset: number }>();
  for (const line of out.split('\n')) {
    const m = /^ (\S+)\s+\d+\s+\d+\s+\d+\s+(\d+)\s+\S+\s+(\d+)\s+(\d+)\s*$/.exec(line);
    if (m) rows.set(m[1], { size: Number(m[2]), remote: Number(m[3]), offset: Number(m[4]) });
  }
  let offset = 0;
  const sorted = GDB_REGISTERS.map((r, n) => ({ r, n }));
  for (const { r, n } of sorted) {
    const row = rows.get(r.name);
    t.truthy(row, `${r.name} missing from gdb's remote registers`);
    if (!row) continue;
    t.is(row.remote, n, r.name);
    t.is(row.size, r.bits / 8, r.name);
    t.is(row.offset, offset, r.name);
    offset += r.bits / 8;
  }
});
