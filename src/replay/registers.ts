// Views over user_regs_struct images (the layout the trace stores and the emulator accepts).
import { USER_REGS, USER_REGS_SIZE, type UserRegName } from '../trace/schema.ts';

export type RegisterImage = Uint8Array;

const REG_INDEX = Object.fromEntries(USER_REGS.map((name, i) => [name, i])) as Record<UserRegName, number>;

export function regIndex(name: UserRegName): number {
  return REG_INDEX[name];
}

/** Little-endian u32 at byte offset `at` (no DataView: this runs several times per event). */
function u32(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

export function getReg(regs: RegisterImage, name: UserRegName): bigint {
  const at = REG_INDEX[name] * 8;
  return (BigInt(u32(regs, at + 4)) << 32n) | BigInt(u32(regs, at));
}

/** Whether two register images hold the same value for `name`, without making bigints. */
export function sameReg(a: RegisterImage, b: RegisterImage, name: UserRegName): boolean {
  const at = REG_INDEX[name] * 8;
  for (let i = at; i < at + 8; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function setReg(regs: RegisterImage, name: UserRegName, value: bigint): void {
  new DataView(regs.buffer, regs.byteOffset, USER_REGS_SIZE).setBigUint64(regIndex(name) * 8, BigInt.asUintN(64, value), true);
}

/** Signed 64-bit view, for syscall arguments and results. */
export function getSignedReg(regs: RegisterImage, name: UserRegName): bigint {
  return BigInt.asIntN(64, getReg(regs, name));
}

export const SYSCALL_ARG_REGS: readonly UserRegName[] = ['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'];

/** The six syscall arguments as numbers (exact for addresses and small values; sizes above 2^53 lose precision, which only display uses). */
export function syscallArgs(regs: RegisterImage): number[] {
  return SYSCALL_ARG_REGS.map((r) => Number(getSignedReg(regs, r)));
}

export function hex(v: bigint | number): string {
  const b = typeof v === 'number' ? BigInt(v) : v;
  return (b < 0n ? '-0x' + (-b).toString(16) : '0x' + b.toString(16));
}
