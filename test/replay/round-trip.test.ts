// Record then replay real programs (C fixtures and Debian's) and compare: same stdout, same exit
// status, every event verified.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture } from '../helpers/fixtures.ts';
import { recordAndReplay, type RoundTrip } from '../helpers/round-trip.ts';
import { TraceReader } from '../../src/trace/reader.ts';

const work = mkdtempSync(join(tmpdir(), 'ra-rt-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

/** Asserts the replay reproduced the recording exactly; returns the round trip for more checks. */
function same(t: ExecutionContext, command: string[], opts: { input?: string; expectStatus?: number; recordArgs?: string[] } = {}): RoundTrip {
  const rt = recordAndReplay(command, { input: opts.input, recordArgs: opts.recordArgs });
  t.teardown(rt.cleanup);
  const expectStatus = opts.expectStatus ?? 0;
  t.is(rt.recorded.status, expectStatus, `record: ${rt.recorded.stderr}`);
  t.is(rt.summary.divergence, null, rt.replayed.stderr);
  t.true(rt.summary.verified);
  t.is(rt.replayed.status, expectStatus, rt.replayed.stderr);
  t.is(rt.summary.exitStatus, expectStatus);
  t.is(rt.replayed.stdout.toString('latin1'), rt.recorded.stdout.toString('latin1'));
  t.true(rt.summary.instructions > 0 && rt.summary.ticks > 0 && rt.summary.ticks < rt.summary.instructions);
  return rt;
}

test.serial('hello world', (t) => {
  const rt = same(t, [fixture('hello')]);
  t.is(rt.replayed.stdout.toString(), 'hello, world\n');
});

test.serial('file I/O on a temp file', (t) => {
  const rt = same(t, [fixture('fileio'), join(work, 'fileio.txt')]);
  t.regex(rt.replayed.stdout.toString(), /^read 1990 bytes, checksum [0-9a-f]{8}, at 100: 5 of the file\nli\n$/);
});

test.serial('replay makes no host syscall: a file the program wrote is not written again', (t) => {
  const path = join(work, 'kept.txt');
  const rt = recordAndReplay([fixture('fileio'), path, 'keep'], { beforeReplay: () => rmSync(path) });
  t.teardown(rt.cleanup);
  t.true(rt.summary.verified, rt.replayed.stderr);
  t.is(rt.replayed.stdout.toString(), rt.recorded.stdout.toString());
  t.false(existsSync(path));
});

test.serial('mmap of a file, anonymous mmap, mprotect, mremap', (t) => {
  const data = join(work, 'mapped.bin');
  writeFileSync(data, Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 13) & 0xff)));
  const rt = same(t, [fixture('mmapfile'), data]);
  t.regex(rt.replayed.stdout.toString(), /^size 100000 weighted sum \d+ remapped byte 7 9\n$/);
});

test.serial('heavy malloc: brk and mmap', (t) => {
  const rt = same(t, [fixture('malloc')]);
  t.regex(rt.replayed.stdout.toString(), /^allocated \d+ bytes, check \d+\n$/);
});

test.serial('clock_gettime, gettimeofday and time come back from the trace', (t) => {
  same(t, [fixture('clock')]);
});

test.serial('rdtsc values come back from the trace', (t) => {
  same(t, [fixture('rdtsc')]);
});

test.serial('rdtsc, rdtscp and cpuid trapped by patched sites replay from the trace; decoy bytes stay data', (t) => {
  const rt = same(t, [fixture('patch_decoys')], { recordArgs: ['--patch-sites'] });
  t.is(rt.replayed.stdout.toString(), 'table 0f31 0f01f9 0fa2\nimmediate 310f\navx 0\nadvances 1\n');
});

test.serial('getrandom', (t) => {
  same(t, [fixture('getrandom')]);
});

test.serial('stat family and getdents', (t) => {
  same(t, [fixture('stat'), '/etc/passwd', '/usr/bin']);
});

test.serial('a pipe to itself', (t) => {
  const rt = same(t, [fixture('pipe')]);
  t.is(rt.replayed.stdout.toString(), '25: through the pipe and back\n');
});

test.serial('floating point printf', (t) => {
  same(t, [fixture('float', ['-O1', '-lm'])]);
});

test.serial('a program reading stdin', (t) => {
  const rt = same(t, [fixture('stdin')], { input: 'one\ntwo\nthree\n' });
  t.is(rt.replayed.stdout.toString(), '3 lines, 14 chars\n');
});

test.serial('exit status 3', (t) => {
  same(t, [fixture('exit3')], { expectStatus: 3 });
});

test.serial('killed by SIGSEGV: replay faults at the same instruction and exits 139', (t) => {
  same(t, [fixture('segv')], { expectStatus: 139 });
});

// Debian's programs.
/** Whether the program's own CPUID was masked: by CPUID faulting (Intel) or patched sites (elsewhere). */
function cpuidMasked(rt: RoundTrip): boolean {
  const r = TraceReader.open(rt.trace);
  try { return r.header.cpuidFaulting || (r.header.patchedInstructions ?? []).includes('cpuid'); } finally { r.close(); }
}

test.serial('CPUID run by the program itself: masked (faulting or patched sites), replayed identically', (t) => {
  const rt = same(t, [fixture('cpuid_probe')]);
  const out = rt.replayed.stdout.toString();
  t.regex(out, /^parent: .*\nchild: .*\n$/);
  t.true(cpuidMasked(rt));
  // The forked child inherits faulting from its parent.
  t.is(out, 'parent: avx=0 fma=0 osxsave=0 avx2=0 sse2=1\nchild: avx=0 fma=0 osxsave=0 avx2=0 sse2=1\n');
});

test.serial('a program switching CPUID faulting off itself still sees the masked CPUID', (t) => {
  const rt = same(t, [fixture('cpuid_probe'), 'off']);
  t.true(cpuidMasked(rt));
  // Where the CPU has no CPUID faulting the kernel refuses the call (ENODEV): -1.
  const r = TraceReader.open(rt.trace), faulting = r.header.cpuidFaulting;
  r.close();
  t.is(rt.replayed.stdout.toString(), `ARCH_SET_CPUID(1) = ${faulting ? 0 : -1}\nparent: avx=0 fma=0 osxsave=0 avx2=0 sse2=1\nchild: avx=0 fma=0 osxsave=0 avx2=0 sse2=1\n`);
});

test.serial('__builtin_cpu_supports sees no AVX2 (CPUID masked)', (t) => {
  const rt = same(t, [fixture('cpu_supports')]);
  t.true(cpuidMasked(rt));
  t.is(rt.replayed.stdout.toString(), 'avx2=0 avx=0 fma=0 sse2=1\n');
});

test.serial('wc (picks AVX2 through its own CPUID probe where it can)', (t) => {
  const file = join(work, 'lines.txt');
  writeFileSync(file, Array.from({ length: 50_000 }, (_, i) => `line ${i} ${'x'.repeat(i % 70)}`).join('\n') + '\n');
  let rt = same(t, ['/usr/bin/wc', '-l', file]);
  t.is(rt.replayed.stdout.toString(), `50000 ${file}\n`);
  rt = same(t, ['/bin/sh', '-c', `cat ${file} | wc -lw`]);
  t.regex(rt.replayed.stdout.toString(), /^\s*50000\s+149285\n$/);
});

test.serial('true', (t) => {
  same(t, ['/bin/true']);
});

test.serial('echo', (t) => {
  const rt = same(t, ['/bin/echo', 'hello', 'from', 'echo']);
  t.is(rt.replayed.stdout.toString(), 'hello from echo\n');
});

test.serial('ls -la /usr', (t) => {
  const rt = same(t, ['/bin/ls', '-la', '/usr']);
  t.regex(rt.replayed.stdout.toString(), /\bshare\n/);
});

test.serial('cat of files (copy_file_range to stdout)', (t) => {
  const rt = same(t, ['/bin/cat', '/etc/passwd', '/etc/hostname']);
  t.true(rt.replayed.stdout.toString().startsWith('root:'));
});

test.serial('sha256sum of a file', (t) => {
  const file = join(work, 'hash-me.bin');
  writeFileSync(file, Buffer.alloc(300_000, 'abc'));
  const rt = same(t, ['/usr/bin/sha256sum', file]);
  const expected = execFileSync('/usr/bin/sha256sum', [file]).toString();
  t.is(rt.replayed.stdout.toString(), expected);
});

test.serial('sort of a generated file', (t) => {
  const file = join(work, 'unsorted.txt');
  writeFileSync(file, Array.from({ length: 5000 }, (_, i) => `${(i * 7919) % 5003} item\n`).join(''));
  const rt = same(t, ['/usr/bin/sort', '-n', file]);
  t.true(rt.replayed.stdout.toString().startsWith('0 item\n'));
});

test.serial('gzip -c', (t) => {
  const file = join(work, 'gzip-me.txt');
  writeFileSync(file, Array.from({ length: 20000 }, (_, i) => `line ${i} ${i % 17}\n`).join(''));
  const rt = same(t, ['/bin/gzip', '-c', file]);
  t.deepEqual(execFileSync('/bin/gzip', ['-dc'], { input: rt.replayed.stdout }).toString().split('\n').length, 20001);
});

test.serial('python3 -c', (t) => {
  const rt = same(t, ['/usr/bin/python3', '-c', 'print(sum(range(10**6)))']);
  t.is(rt.replayed.stdout.toString(), '499999500000\n');
});
