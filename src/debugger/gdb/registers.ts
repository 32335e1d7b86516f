// gdb's register numbering for x86-64 Linux (the order of the target description, which is also
// the order of the `g` packet and the number in `p`), and the conversion between it and what the
// replay keeps: user_regs_struct (Linux order, 8 bytes each) and the 512-byte FXSAVE area.
//
// Numbers: 0-15 rax rbx rcx rdx rsi rdi rbp rsp r8-r15, 16 rip, 17 eflags, 18-23 cs ss ds es fs gs,
// 24-31 st0-st7, 32-39 fctrl fstat ftag fiseg fioff foseg fooff fop, 40-55 xmm0-15, 56 mxcsr,
// 57 orig_rax, 58 fs_base, 59 gs_base: the layout gdbserver uses for a Linux process, so gdb's own
// amd64-linux expectations hold.
import { FXSAVE_SIZE, USER_REGS, USER_REGS_SIZE, type UserRegName } from '../../trace/schema.ts';

export type Feature = 'core' | 'sse' | 'linux' | 'segments';

export interface GdbRegister {
  name: string;
  /** Size in bits, as in the target description. */
  bits: number;
  /** Target-description type. */
  type: string;
  feature: Feature;
  group?: 'float' | 'vector' | 'general' | 'system';
  /** Where the value lives: a user_regs_struct slot or FXSAVE bytes (or a derived x87 field). */
  source: { regs: UserRegName } | { fxsave: number; bytes: number } | { x87: 'ftag' | 'fop' };
}

const GPR_ORDER: UserRegName[] = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];

// FXSAVE (64-bit layout, Linux's user_fpregs_struct): FCW 0, FSW 2, abridged FTW 4, FOP 6,
// FPU IP 8 (offset 32 bits, then selector 16 bits at 12), FPU DP 16 (offset, selector at 20),
// MXCSR 24, ST0-7 at 32 + 16*i (10 bytes used), XMM0-15 at 160 + 16*i.
const FX = { fcw: 0, fsw: 2, ftw: 4, fop: 6, fioff: 8, fiseg: 12, fooff: 16, foseg: 20, mxcsr: 24, st: 32, xmm: 160 };

function build(): GdbRegister[] {
  const regs: GdbRegister[] = [];
  for (const name of GPR_ORDER) {
    const type = name === 'rbp' || name === 'rsp' ? 'data_ptr' : 'int64';
    regs.push({ name, bits: 64, type, feature: 'core', source: { regs: name } });
  }
  regs.push({ name: 'rip', bits: 64, type: 'code_ptr', feature: 'core', source: { regs: 'rip' } });
  regs.push({ name: 'eflags', bits: 32, type: 'i386_eflags', feature: 'core', source: { regs: 'eflags' } });
  for (const name of ['cs', 'ss', 'ds', 'es', 'fs', 'gs'] as const) regs.push({ name, bits: 32, type: 'int32', feature: 'core', source: { regs: name } });
  for (let i = 0; i < 8; i++) regs.push({ name: `st${i}`, bits: 80, type: 'i387_ext', feature: 'core', source: { fxsave: FX.st + 16 * i, bytes: 10 } });
  const x87 = (name: string, source: GdbRegister['source']) => regs.push({ name, bits: 32, type: 'int', feature: 'core', group: 'float', source });
  x87('fctrl', { fxsave: FX.fcw, bytes: 2 });
  x87('fstat', { fxsave: FX.fsw, bytes: 2 });
  x87('ftag', { x87: 'ftag' });
  x87('fiseg', { fxsave: FX.fiseg, bytes: 2 });
  x87('fioff', { fxsave: FX.fioff, bytes: 4 });
  x87('foseg', { fxsave: FX.foseg, bytes: 2 });
  x87('fooff', { fxsave: FX.fooff, bytes: 4 });
  x87('fop', { x87: 'fop' });
  for (let i = 0; i < 16; i++) regs.push({ name: `xmm${i}`, bits: 128, type: 'vec128', feature: 'sse', source: { fxsave: FX.xmm + 16 * i, bytes: 16 } });
  regs.push({ name: 'mxcsr', bits: 32, type: 'i386_mxcsr', feature: 'sse', group: 'vector', source: { fxsave: FX.mxcsr, bytes: 4 } });
  regs.push({ name: 'orig_rax', bits: 64, type: 'int', feature: 'linux', source: { regs: 'orig_rax' } });
  regs.push({ name: 'fs_base', bits: 64, type: 'int', feature: 'segments', source: { regs: 'fs_base' } });
  regs.push({ name: 'gs_base', bits: 64, type: 'int', feature: 'segments', source: { regs: 'gs_base' } });
  return regs;
}

/** Every register gdb sees, index = gdb's remote register number. */
export const GDB_REGISTERS: readonly GdbRegister[] = build();

/** Number of a register by name (for expedited registers in stop replies, tests). */
export function gdbRegNumber(name: string): number {
  const n = GDB_REGISTERS.findIndex((r) => r.name === name);
  if (n < 0) throw new Error(`no gdb register named ${name}`);
  return n;
}

/** Byte offset of each register in the `g` packet's data, and the total size. */
const OFFSETS: number[] = [];
export const G_PACKET_BYTES = GDB_REGISTERS.reduce((at, r) => (OFFSETS.push(at), at + r.bits / 8), 0);

const USER_INDEX = new Map<UserRegName, number>(USER_REGS.map((n, i) => [n, i]));

export interface RegisterState {
  regs: Uint8Array;
  fxsave: Uint8Array;
}

/** The x87 tag word gdb expects (two bits per physical register: 0 valid, 1 zero, 2 special, 3
 * empty) from FXSAVE's abridged one (one bit per physical register: in use or not), classifying
 * each register in use from its contents as the CPU would. */
export function fullTagWord(fxsave: Uint8Array): number {
  const abridged = fxsave[FX.ftw];
  const top = (fxsave[FX.fsw + 1] >> 3) & 7;
  let tag = 0;
  for (let phys = 0; phys < 8; phys++) {
    let t = 3;
    if (abridged & (1 << phys)) {
      const at = FX.st + 16 * ((phys - top + 8) & 7);
      const exponent = (fxsave[at + 8] | (fxsave[at + 9] << 8)) & 0x7fff;
      const integerBit = fxsave[at + 7] & 0x80;
      let mantissaZero = true;
      for (let k = 0; k < 8; k++) if (fxsave[at + k] !== 0) mantissaZero = false;
      if (exponent === 0x7fff) t = 2;
      else if (exponent === 0) t = mantissaZero ? 1 : 2;
      else t = integerBit ? 0 : 2;
    }
    tag |= t << (2 * phys);
  }
  return tag;
}

/** The abridged tag (one bit per register in use) from the full tag word. */
export function abridgedTag(full: number): number {
  let ftw = 0;
  for (let phys = 0; phys < 8; phys++) if (((full >> (2 * phys)) & 3) !== 3) ftw |= 1 << phys;
  return ftw;
}

/** The value of register `n` as gdb wants it: little-endian bytes of bits/8 length. */
export function readRegister(state: RegisterState, n: number): Uint8Array {
  const r = GDB_REGISTERS[n];
  if (!r) throw new RangeError(`no register number ${n}`);
  const out = new Uint8Array(r.bits / 8);
  const src = r.source;
  if ('regs' in src) {
    const at = USER_INDEX.get(src.regs)! * 8;
    out.set(state.regs.subarray(at, at + out.length));
  } else if ('fxsave' in src) {
    out.set(state.fxsave.subarray(src.fxsave, src.fxsave + src.bytes));
  } else if (src.x87 === 'ftag') {
    const tag = fullTagWord(state.fxsave);
    out[0] = tag & 0xff;
    out[1] = tag >> 8;
  } else {
    out[0] = state.fxsave[FX.fop];
    out[1] = state.fxsave[FX.fop + 1] & 0x07; // the opcode is 11 bits
  }
  return out;
}

/** All registers in `g` packet order. */
export function encodeRegisters(state: RegisterState): Uint8Array {
  if (state.regs.length < USER_REGS_SIZE) throw new RangeError(`user_regs_struct image is ${state.regs.length} bytes, expected ${USER_REGS_SIZE}`);
  if (state.fxsave.length < FXSAVE_SIZE) throw new RangeError(`FXSAVE image is ${state.fxsave.length} bytes, expected ${FXSAVE_SIZE}`);
  const out = new Uint8Array(G_PACKET_BYTES);
  for (let n = 0; n < GDB_REGISTERS.length; n++) out.set(readRegister(state, n), OFFSETS[n]);
  return out;
}

/** The inverse of encodeRegisters, onto copies of `base` (which supplies what gdb's numbering
 * does not carry: the upper halves of eflags and segment slots, FXSAVE's reserved bytes). */
export function decodeRegisters(g: Uint8Array, base: RegisterState): RegisterState {
  if (g.length !== G_PACKET_BYTES) throw new RangeError(`register data is ${g.length} bytes, expected ${G_PACKET_BYTES}`);
  const regs = Uint8Array.from(base.regs);
  const fxsave = Uint8Array.from(base.fxsave);
  for (let n = 0; n < GDB_REGISTERS.length; n++) {
    const r = GDB_REGISTERS[n];
    const value = g.subarray(OFFSETS[n], OFFSETS[n] + r.bits / 8);
    const src = r.source;
    if ('regs' in src) {
      const at = USER_INDEX.get(src.regs)! * 8;
      regs.set(value, at);
    } else if ('fxsave' in src) {
      fxsave.set(value.subarray(0, src.bytes), src.fxsave);
    } else if (src.x87 === 'ftag') {
      fxsave[FX.ftw] = abridgedTag(value[0] | (value[1] << 8));
    } else {
      fxsave[FX.fop] = value[0];
      fxsave[FX.fop + 1] = value[1] & 0x07;
    }
  }
  return { regs, fxsave };
}

/** Lower-case hex of bytes, as registers and memory travel in packets. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}
