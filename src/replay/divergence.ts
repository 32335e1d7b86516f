// A divergence: the replay reached a state that disagrees with the trace. It carries the event
// number, a one-line reason and a report for people (registers side by side, last blocks run).
import { disassembleBytes, type Machine } from '../emulator/machine.ts';
import { USER_REGS, type UserRegName } from '../trace/schema.ts';
import { getReg, hex } from './registers.ts';

export class Divergence extends Error {
  constructor(
    readonly event: number,
    readonly reason: string,
    readonly report: string,
  ) {
    super(`divergence at event ${event}: ${reason}`);
    this.name = 'Divergence';
  }
}

/** Registers as two columns, expected (trace) and actual (emulator), marking the ones that differ. */
export function registersSideBySide(expected: Uint8Array, actual: Uint8Array, compared: ReadonlySet<UserRegName>): string {
  const lines = [`  ${'register'.padEnd(9)} ${'recorded'.padEnd(20)} replayed`];
  for (const name of USER_REGS) {
    const e = getReg(expected, name);
    const a = getReg(actual, name);
    const mark = compared.has(name) && e !== a ? '  <-- differs' : '';
    lines.push(`  ${name.padEnd(9)} ${hex(e).padEnd(20)} ${hex(a)}${mark}`);
  }
  return lines.join('\n');
}

/** Disassembly of the last blocks the emulator executed, oldest first. */
export function lastBlocks(machine: Machine, maxBlocks = 8): string {
  const out: string[] = [];
  for (const block of machine.recentBlocks().slice(-maxBlocks)) {
    out.push(`  block 0x${block.address.toString(16)} (${block.size} bytes):`);
    let code: Uint8Array;
    try {
      code = machine.read(block.address, block.size);
    } catch {
      out.push('    (no longer mapped)');
      continue;
    }
    for (const insn of disassembleBytes(code, block.address)) out.push(`    0x${insn.address.toString(16)}  ${insn.text}`);
  }
  return out.length > 0 ? out.join('\n') : '  (no block executed yet)';
}
