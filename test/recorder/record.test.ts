// Recording real programs under real ptrace, then reading the traces back.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { record } from '../../src/recorder/record.ts';
import { TraceReader } from '../../src/trace/reader.ts';
import { isBlobRef, userReg, type Bytes, type TraceEvent, type SyscallEvent, type SignalEvent, type ExecEvent, type RdtscEvent, type ExitEvent } from '../../src/trace/schema.ts';
import { fixture } from '../helpers/fixtures.ts';

const CLI = join(import.meta.dirname, '..', '..', 'bin', 'replay-anywhere.js');
const work = mkdtempSync(join(tmpdir(), 'ra-record-'));
let n = 0;
const out = (name: string) => join(work, `${name}-${n++}.rrz`);

function cli(args: string[], opts: { cwd?: string } = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: opts.cwd, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function load(path: string) {
  const r = TraceReader.open(path);
  const events = [...r.events()] as TraceEvent[];
  const bytes = (b: Bytes): Uint8Array => (isBlobRef(b) ? r.bytes(b) : b);
  return { r, events, bytes, syscalls: (nr: number) => events.filter((e): e is SyscallEvent => e.kind === 'syscall' && e.number === nr) };
}

test('/bin/true: exec with ld.so and libc mappings, exit_group, exit code 0', async (t) => {
  const path = out('true');
  const res = await record({ command: ['/bin/true'], output: path, onWarning: () => {} });
  t.deepEqual({ ...res, tracePath: undefined }, { exitStatus: 0, events: res.events, complete: true, tracePath: undefined });
  const { r, events, bytes } = load(path);
  t.true(r.complete);
  t.is(r.header.tickMode.kind === 'pmu' || r.header.tickMode.kind === 'no-pmu', true);
  t.true(r.header.cpuid.some((l) => l.leaf === 0 && l.subleaf === 0));
  t.true(r.header.cpuid.some((l) => l.leaf === 0x80000000));
  t.true(r.header.maskedFeatures.includes('AVX2'));
  const exec = events[0] as ExecEvent;
  t.is(exec.kind, 'exec');
  t.is(exec.path, '/usr/bin/true');
  t.deepEqual(exec.argv, ['/bin/true']);
  t.is(exec.regs.length, 216);
  t.is(exec.fpregs.length, 512);
  t.is(exec.auxv.length % 16, 0);
  t.true(exec.brk > 0);
  const names = exec.mappings.map((m) => m.name);
  t.true(names.some((s) => s.includes('ld-linux-x86-64')), names.join(' '));
  t.true(names.includes('[stack]'));
  t.true(names.includes('[vdso]'));
  t.false(names.includes('[vsyscall]'));
  // Entry point of the program is ld.so's, inside an executable ld.so mapping with data.
  const rip = Number(userReg(exec.regs, 'rip'));
  const m = exec.mappings.find((x) => rip >= x.start && rip < x.end)!;
  t.true(m.name.includes('ld-linux') && (m.prot & 4) !== 0 && m.data !== undefined);
  t.is(bytes(m.data!).length, m.end - m.start);
  // libc is mapped later, by mmap: a syscall event with the mapped contents.
  const libc = events.flatMap((e) => (e.kind === 'syscall' && e.mappings ? e.mappings : [])).filter((x) => x.name.includes('libc.so.6'));
  t.true(libc.length > 0);
  const last = events.slice(-2);
  t.like(last[0], { kind: 'syscall', number: 231, noReturn: true });
  t.like(last[1], { kind: 'exit', code: 0, signal: null, processExit: true });
  // rseq never registers: the kernel would write its area behind our back.
  t.true(events.every((e) => e.kind !== 'syscall' || e.number !== 334 || e.result === -38));
  r.close();
});

test('echo: the write syscall carries the buffer; output is live on stdout', (t) => {
  const path = out('echo');
  const res = cli(['record', '-o', path, '--', 'echo', 'hello']);
  t.is(res.status, 0, res.stderr);
  t.is(res.stdout, 'hello\n');
  const { syscalls } = load(path);
  const writes = syscalls(1);
  t.is(writes.length, 1);
  t.is(Number(userReg(writes[0].regs, 'rdi')), 1);
  t.is(Number(userReg(writes[0].regs, 'rdx')), 6);
  t.is(writes[0].result, 6);
  t.deepEqual(writes[0].writes, []);
});

test('cat: read results and the bytes the kernel wrote equal the file', (t) => {
  const file = join(work, 'data.bin');
  const content = randomBytes(200_000);
  writeFileSync(file, content);
  const path = out('cat');
  const res = cli(['record', '-o', path, '--', 'cat', file]);
  t.is(res.status, 0, res.stderr);
  t.is(res.stdout.length > 0, true);
  const { events, bytes } = load(path);
  // The file is the last one cat opens; its reads follow.
  let openAt = events.length - 1;
  while (openAt > 0 && !(events[openAt].kind === 'syscall' && (events[openAt] as SyscallEvent).number === 257 && (events[openAt] as SyscallEvent).result >= 0)) openAt--;
  const fd = (events[openAt] as SyscallEvent).result;
  const reads = events.slice(openAt).filter((e): e is SyscallEvent => e.kind === 'syscall' && e.number === 0 && Number(userReg(e.regs, 'rdi')) === fd);
  const got = Buffer.concat(reads.filter((e) => e.result > 0).map((e) => {
    t.is(e.writes.length, 1);
    t.is(e.writes[0].addr, Number(userReg(e.regs, 'rsi')));
    const d = bytes(e.writes[0].data);
    t.is(d.length, e.result);
    return d;
  }));
  t.true(Buffer.from(got).equals(content));
  t.is(reads.at(-1)!.result, 0);
});

test('vDSO time functions become recorded syscalls', (t) => {
  const path = out('clock');
  const res = cli(['record', '-o', path, '--', fixture('clock')]);
  t.is(res.status, 0, res.stderr);
  const [sec, nsec, tvsec, tsec] = res.stdout.trim().split(' ').map(Number);
  const { syscalls, bytes } = load(path);
  const cg = syscalls(228);
  t.is(cg.length, 1);
  const ts = Buffer.from(bytes(cg[0].writes[0].data));
  t.is(ts.length, 16);
  t.is(Number(ts.readBigInt64LE(0)), sec);
  t.is(Number(ts.readBigInt64LE(8)), nsec);
  const gtod = syscalls(96);
  t.is(gtod.length, 1);
  t.is(Number(Buffer.from(bytes(gtod[0].writes[0].data)).readBigInt64LE(0)), tvsec);
  const time = syscalls(201);
  t.is(time.length, 1);
  t.is(time[0].result, tsec);
});

test('rdtsc and rdtscp trap and are recorded with increasing values', (t) => {
  const path = out('rdtsc');
  const res = cli(['record', '-o', path, '--', fixture('rdtsc')]);
  t.is(res.status, 0, res.stderr);
  const [a, b, c, aux] = res.stdout.trim().split(' ').map((s) => BigInt(`0x${s}`));
  const { events } = load(path);
  const tsc = events.filter((e): e is RdtscEvent => e.kind === 'rdtsc');
  const mine = tsc.slice(-3);
  t.deepEqual(mine.map((e) => e.value), [a, b, c]);
  t.deepEqual(mine.map((e) => e.insn), ['rdtsc', 'rdtsc', 'rdtscp']);
  t.is(BigInt(mine[2].aux!), aux);
  t.true(a < b && b < c);
});

test('exit status 3 is the program\'s', (t) => {
  const path = out('exit3');
  const res = cli(['record', '-o', path, '--json', '--', fixture('exit3')]);
  t.is(res.status, 3);
  const j = JSON.parse(res.stdout);
  t.like(j, { trace: path, exitStatus: 3, complete: true });
  const { events } = load(path);
  t.like(events.at(-1), { kind: 'exit', code: 3, signal: null });
  t.is(j.events, events.length);
});

test('SIGSEGV: fatal synchronous signal event, exit status 139', (t) => {
  const path = out('segv');
  const res = cli(['record', '-o', path, '--', fixture('segv')]);
  t.is(res.status, 139);
  const { r, events } = load(path);
  t.true(r.complete);
  const sig = events.at(-2) as SignalEvent;
  t.like(sig, { kind: 'signal', signo: 11, fatal: true, synchronous: true, addr: 0, code: 1 });
  t.deepEqual(sig.writes, []);
  t.like(events.at(-1), { kind: 'exit', code: null, signal: 11, processExit: true } as Partial<ExitEvent>);
});

test('a handled signal records its frame and the handler registers', (t) => {
  const path = out('sig');
  const res = cli(['record', '-o', path, '--', fixture('sighandler')]);
  t.is(res.status, 0, res.stderr);
  t.is(res.stdout, 'handled\n');
  const { events } = load(path);
  const i = events.findIndex((e) => e.kind === 'signal');
  const sig = events[i] as SignalEvent;
  t.like(sig, { signo: 10, fatal: false, synchronous: false });
  t.like(events[i - 1], { kind: 'syscall', number: 234 });  // tgkill: delivered right at its exit
  t.truthy(sig.handlerRegs);
  t.is(userReg(sig.handlerRegs!, 'rdi'), 10n);
  const rsp = Number(userReg(sig.handlerRegs!, 'rsp'));
  t.is(sig.writes.length, 1);
  t.is(sig.writes[0].addr, rsp);
  t.true(sig.writes[0].addr + (sig.writes[0].data as Uint8Array).length <= Number(userReg(sig.regs, 'rsp')) - 128 || isBlobRef(sig.writes[0].data));
  // After the handler: rt_sigreturn, then the program goes on and exits 0.
  t.true(events.slice(i).some((e) => e.kind === 'syscall' && e.number === 15));
  t.like(events.at(-1), { kind: 'exit', code: 0 });
});

test('a missing program: one line, exit status 127, no trace left', (t) => {
  const path = out('missing');
  const res = cli(['record', '-o', path, '--', 'no-such-program-xyz']);
  t.is(res.status, 127);
  t.regex(res.stderr, /^replay-anywhere: record: program not found: no-such-program-xyz$/m);
  t.false(existsSync(path));
});

test('getrandom: the random bytes are in the trace', (t) => {
  const path = out('getrandom');
  const res = cli(['record', '-o', path, '--', fixture('getrandom')]);
  t.is(res.status, 0, res.stderr);
  const { syscalls, bytes } = load(path);
  const g = syscalls(318).filter((e) => Number(userReg(e.regs, 'rsi')) === 16);
  t.is(g.length, 1);
  t.is(g[0].result, 16);
  t.is(Buffer.from(bytes(g[0].writes[0].data)).toString('hex'), res.stdout.trim());
});

test('stat family and getdents64 record the structures', (t) => {
  const dir = join(work, 'listing');
  mkdirSync(dir, { recursive: true });
  for (const f of ['alpha', 'beta', 'gamma']) writeFileSync(join(dir, f), f.repeat(7));
  const target = join(dir, 'beta');
  const path = out('stat');
  const res = cli(['record', '-o', path, '--', fixture('stat'), target, dir]);
  t.is(res.status, 0, res.stderr);
  t.true(res.stdout.startsWith('28 28 28\n'));
  const { syscalls, bytes } = load(path);
  const st = syscalls(262).filter((e) => e.result === 0 && e.writes.length === 1 && e.writes[0].addr === Number(userReg(e.regs, 'rdx')));
  const sizes = st.map((e) => Buffer.from(bytes(e.writes[0].data))).filter((b) => b.length === 144).map((b) => Number(b.readBigInt64LE(48)));
  t.true(sizes.filter((s) => s === 28).length >= 3, String(sizes));
  const gd = syscalls(217).filter((e) => e.result > 0);
  t.true(gd.length >= 1);
  const listing = Buffer.from(bytes(gd[0].writes[0].data));
  t.is(listing.length, gd[0].result);
  for (const f of ['alpha', 'beta', 'gamma']) t.true(listing.includes(Buffer.from(f)));
});

test('the program runs with the CPU mask in its environment', (t) => {
  const path = out('env');
  const res = cli(['record', '-o', path, '--', 'env']);
  t.is(res.status, 0, res.stderr);
  const line = res.stdout.split('\n').find((l) => l.startsWith('GLIBC_TUNABLES='))!;
  t.truthy(line);
  t.regex(line, /glibc\.cpu\.hwcaps=-AVX,-AVX2,/);
  t.regex(line, /-XSAVE,/);
  t.regex(line, /-POPCNT/);
  t.regex(line, /glibc\.pthread\.rseq=0/);
  t.regex(res.stdout, /^OPENSSL_ia32cap=~0x[0-9a-f]+:~0x[0-9a-f]+$/m);
  // And ld.so takes it: no xsave state, AVX2 inactive.
  const tun = line.slice('GLIBC_TUNABLES='.length);
  const diag = spawnSync('/lib64/ld-linux-x86-64.so.2', ['--list-diagnostics'], { encoding: 'utf8', env: { GLIBC_TUNABLES: tun } }).stdout;
  t.regex(diag, /xsave_state_size=0x0\n/);
});

test('CPUID is masked for the program: by CPUID faulting where the CPU has it, by patched sites where not', async (t) => {
  const leaf = (cpuid: { leaf: number; subleaf: number; ecx: number; ebx: number }[], l: number) => cpuid.find((x) => x.leaf === l && x.subleaf === 0)!;
  const l1mask = (1 << 1) | (1 << 12) | (1 << 22) | (1 << 23) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 29) | (1 << 30);
  const masked = 'parent: avx=0 fma=0 osxsave=0 avx2=0 sse2=1\nchild: avx=0 fma=0 osxsave=0 avx2=0 sse2=1\n';
  const plain = cli(['record', '-o', out('cpuid'), '--', fixture('cpuid_probe')]);
  t.is(plain.status, 0, plain.stderr);
  t.is(plain.stdout, masked);
  t.notRegex(plain.stderr, /CPUID/);
  const warned: string[] = [];
  const path = out('cpuid-no-faulting');
  const r = await record({ command: [fixture('cpuid_probe')], output: path, noCpuidFaulting: true, onWarning: (m) => warned.push(m) });
  t.is(r.exitStatus, 0);
  t.deepEqual(warned, []);
  const tr = TraceReader.open(path), h = tr.header;
  tr.close();
  t.false(h.cpuidFaulting);
  t.true(h.patchedInstructions!.includes('cpuid'));
  // The table replay answers from is the one the program saw: the masked features cleared.
  t.is(leaf(h.cpuid, 1).ecx & l1mask, 0);
  t.is(leaf(h.cpuid, 7).ebx & (1 << 5), 0);
  t.true(leaf(h.cpuid, 0).ebx !== 0);
});

test('patched sites: real rdtsc, rdtscp and cpuid are trapped, the same bytes as data or inside an immediate are not', (t) => {
  const path = out('decoys');
  const res = cli(['record', '--patch-sites', '-o', path, '--', fixture('patch_decoys')]);
  t.is(res.status, 0, res.stderr);
  t.is(res.stdout, 'table 0f31 0f01f9 0fa2\nimmediate 310f\navx 0\nadvances 1\n');
  const { r, events } = load(path);
  t.deepEqual(r.header.patchedInstructions, ['rdtsc', 'rdtscp', 'cpuid']);
  const exec = events[0] as ExecEvent;
  const main = exec.mappings.find((m) => m.name === exec.path && m.prot & 4)!;
  const mine = events.filter((e): e is RdtscEvent => e.kind === 'rdtsc' && e.rip >= main.start && e.rip < main.end);
  t.deepEqual(mine.map((e) => e.insn), ['rdtsc', 'rdtscp', 'rdtsc']);
  t.true(mine[0].value < mine[1].value && mine[1].value < mine[2].value);
  // ld.so's own rdtsc (start-up timing) is trapped too.
  t.true(events.some((e) => e.kind === 'rdtsc' && !(e.rip >= main.start && e.rip < main.end)));
});

test('fork: every process of the tree is recorded, each clone before any event of its child', async (t) => {
  const path = out('fork');
  const res = cli(['record', '-o', path, '--', '/bin/sh', '-c', '/bin/true; /bin/true']);
  t.is(res.status, 0, res.stderr);
  const { r, events } = load(path);
  t.true(r.complete);
  t.is(events[0].kind, 'exec');
  const clones = events.filter((e) => e.kind === 'clone');
  t.is(clones.length, 2);
  for (const c of clones) {
    if (c.kind !== 'clone') continue;
    const at = events.indexOf(c);
    t.false(events.slice(0, at).some((e) => e.pid === c.childPid));
    t.true(events.slice(at + 1).some((e) => e.pid === c.childPid && e.kind === 'exec'));
  }
  const exits = events.filter((e) => e.kind === 'exit');
  t.is(exits.length, 3);
  t.true(exits.every((e) => e.kind === 'exit' && e.processExit && e.code === 0));
});

test('SIGINT to record during sleep leaves an incomplete trace that opens', async (t) => {
  const path = out('sleep');
  const child = spawn(process.execPath, [CLI, 'record', '-o', path, '--', 'sleep', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const started = Date.now();
  while (!existsSync(path) && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 700));
  child.kill('SIGINT');
  const status = await new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.true(Date.now() - started < 4500, 'record ended before sleep would have');
  t.is(status, 130, stderr);
  const { r, events } = load(path);
  t.false(r.complete);
  t.regex(r.incompleteReason!, /SIGINT/);
  t.is(events[0].kind, 'exec');
  t.true(events.some((e) => e.kind === 'syscall' && (e.number === 230 || e.number === 35)) || events.length > 1);
});

test('PMU: every event carries ticks when a PMU exists', async (t) => {
  const path = out('pmu');
  await record({ command: ['/bin/true'], output: path, onWarning: () => {} });
  const { r, events } = load(path);
  if (r.header.tickMode.kind === 'no-pmu') {
    t.log(`skipped: no PMU on this machine (${r.header.tickMode.reason}); events carry no ticks`);
    t.true(events.every((e) => e.ticks === undefined));
    return;
  }
  t.true(events.every((e) => typeof e.ticks === 'number'));
});
