// Assembles x86-64 (GNU as, Intel syntax) to flat bytes at test time.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function asm(source: string): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'ra-asm-'));
  try {
    writeFileSync(join(dir, 'a.s'), `.intel_syntax noprefix\n.text\n${source}\n`);
    execFileSync('as', ['--64', '-o', join(dir, 'a.o'), join(dir, 'a.s')]);
    execFileSync('objcopy', ['-O', 'binary', '-j', '.text', join(dir, 'a.o'), join(dir, 'a.bin')]);
    return readFileSync(join(dir, 'a.bin'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
