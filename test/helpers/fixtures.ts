// C fixtures (test/fixtures/*.c) compiled with gcc at test time. Each binary is built once per
// source content into a shared temp folder, so test files (ava runs each in its own process) and
// repeated runs reuse it.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const OUT_DIR = join(tmpdir(), 'replay-anywhere-fixtures');

/** Path of the compiled fixture `name` (test/fixtures/NAME.c), compiling it when needed. */
export function fixture(name: string, cflags: string[] = ['-O1']): string {
  const src = join(FIXTURES_DIR, `${name}.c`);
  const hash = createHash('sha256').update(readFileSync(src)).update(cflags.join(' ')).digest('hex').slice(0, 16);
  const out = join(OUT_DIR, `${name}-${hash}`);
  if (existsSync(out)) return out;
  mkdirSync(OUT_DIR, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  execFileSync('gcc', ['-o', tmp, src, ...cflags], { stdio: ['ignore', 'ignore', 'inherit'] });
  renameSync(tmp, out);  // atomic: concurrent test processes never see half a binary
  return out;
}
