// Views over user_regs_struct images (the layout the trace stores and the emulator accepts).
import { USER_REGS, USER_REGS_SIZE, type UserRegName } from '../trace/schema.ts';

export type RegisterImage = Uint8Array;

export function regIndex(name: UserRegName): number {
  return USER_REGS.indexOf(name);
}

export function getReg(regs: RegisterImage, name: UserRegName): bigint {
  return new DataView(regs.buffer, regs.byteOffset, USER_REGS_SIZE).getBigUint64(regIndex(name) * 8, true);
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
