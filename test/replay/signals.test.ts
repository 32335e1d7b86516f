// Signals, recorded for real (ptrace, no PMU) and replayed in the emulator: handlers and
// rt_sigreturn, synchronous faults recovered with siglongjmp, timers, signals to self, blocked and
// pending signals, interrupted and restarted syscalls, sigaltstack and stack overflow, signals that
// kill, SIGPIPE, nested handlers, a signal in a threaded program. Exact outputs, statuses, events.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setReg } from '../../src/replay/registers.ts';
import { TraceReader } from '../../src/trace/reader.ts';
import type { SignalEvent, TraceEvent } from '../../src/trace/schema.ts';
import { TraceWriter } from '../../src/trace/writer.ts';
import { fixture } from '../helpers/fixtures.ts';
import { CLI, cli, replaysExactly } from '../helpers/round-trip.ts';

const SIGHUP = 1, SIGABRT = 6, SIGUSR1 = 10, SIGSEGV = 11, SIGUSR2 = 12, SIGPIPE = 13, SIGALRM = 14, SIGTERM = 15;
const SIGVTALRM = 26, SIGPROF = 27;
const SI_KERNEL = 0x80, SI_TKILL = -6, SEGV_MAPERR = 1, SEGV_ACCERR = 2;

const same = replaysExactly;

interface DumpEvent {
  event: number; kind: string; pid: number; tid: number; syscall?: string; result?: number;
  signo?: number; code?: number; synchronous?: boolean; fatal?: boolean; addr?: number; beforeSyscall?: boolean; inUserCode?: boolean;
  stackLimit?: number;
}
function events(trace: string): DumpEvent[] {
  return JSON.parse(cli(['dump', '--json', trace]).stdout.toString());
}
const signals = (evs: DumpEvent[]) => evs.filter((e) => e.kind === 'signal');
/** The events right before and after `e` in the trace. */
const before = (evs: DumpEvent[], e: DumpEvent) => evs[evs.indexOf(e) - 1];
const after = (evs: DumpEvent[], e: DumpEvent) => evs[evs.indexOf(e) + 1];

test.serial('a SIGSEGV handler recovers with siglongjmp from five faults in a row, then the program goes on', (t) => {
  const rt = same(t, [fixture('sig_segv_jmp')], [
    'read of address 24: SIGSEGV at 0+24, code SEGV_MAPERR',
    'read of an unmapped page: SIGSEGV at page+100, code SEGV_MAPERR',
    'write to a PROT_NONE page: SIGSEGV at page+200, code SEGV_ACCERR',
    'write to a read-only page: SIGSEGV at page+300, code SEGV_ACCERR',
    'read of a read-only page: no fault',
    'read of address 8: SIGSEGV at 0+8, code SEGV_MAPERR',
    '5 faults handled, SIGSEGV blocked after: 0',
    'sum 499500',
    '',
  ].join('\n'));
  const sigs = signals(events(rt.trace));
  t.deepEqual(sigs.map((s) => [s.signo, s.code, s.synchronous, s.fatal]), [
    [SIGSEGV, SEGV_MAPERR, true, false], [SIGSEGV, SEGV_MAPERR, true, false], [SIGSEGV, SEGV_ACCERR, true, false],
    [SIGSEGV, SEGV_ACCERR, true, false], [SIGSEGV, SEGV_MAPERR, true, false],
  ]);
  t.is(sigs[0].addr, 24);
  t.is(sigs[4].addr, 8);
});

test.serial('SIGFPE (division by zero), SIGILL (ud2) and SIGTRAP (int3) arise again in replay at the same instruction', (t) => {
  const rt = same(t, [fixture('sig_sync')], '7 / 0: signal 8, FPE_INTDIV\nud2: signal 4, ILL_ILLOPN\nint3: signal 5, SI_KERNEL\n');
  t.deepEqual(signals(events(rt.trace)).map((s) => [s.signo, s.synchronous]), [[8, true], [4, true], [5, true]]);
});

test.serial('alarm() interrupts pause(); an ITIMER_REAL signal arriving in user code is held until just before the next syscall (only timing changes)', (t) => {
  const rt = same(t, [fixture('sig_alarm')], [
    'pause returned -1 after 1 alarm (SI_KERNEL)',
    // Natively the handler runs during the computation (phase 1); recorded without a PMU it runs
    // at the first syscall after it (phase 2), and replay delivers it there too.
    'computed c575f2c95fa65f01, 2 alarms, the handler ran in phase 2 (SI_KERNEL)',
    '',
  ].join('\n'));
  const evs = events(rt.trace);
  const sigs = signals(evs);
  t.deepEqual(sigs.map((s) => [s.signo, s.code, s.synchronous]), [[SIGALRM, SI_KERNEL, false], [SIGALRM, SI_KERNEL, false]]);
  t.like(before(evs, sigs[0]), { kind: 'syscall', syscall: 'pause', result: -514 });  // ERESTARTNOHAND
  t.falsy(sigs[0].beforeSyscall);
  // Delivered at getppid's SYSCALL instruction; getppid runs after the handler's rt_sigreturn.
  t.true(sigs[1].beforeSyscall);
  t.like(after(evs, sigs[1]), { kind: 'syscall', syscall: 'rt_sigreturn' });
  t.like(after(evs, after(evs, sigs[1])), { kind: 'syscall', syscall: 'getppid' });
});

test.serial('three timers fire during a computation: all held, delivered nested before the next syscall with their kernel siginfo', (t) => {
  const rt = same(t, [fixture('sig_timers')],
    'computed c575f2c95fa65f01; 0 handlers ran during the computation, 3 after it: PVA, 3 with SI_KERNEL\n');
  const evs = events(rt.trace);
  const sigs = signals(evs);
  t.deepEqual(sigs.map((s) => [s.signo, s.code]), [[SIGALRM, SI_KERNEL], [SIGVTALRM, SI_KERNEL], [SIGPROF, SI_KERNEL]]);
  t.deepEqual(sigs.map((s) => !!s.beforeSyscall), [true, false, false]);  // then each at the previous handler's entry
  t.is(sigs[2].event, sigs[0].event + 2);
  const returns = evs.filter((e) => e.syscall === 'rt_sigreturn');
  t.deepEqual(returns.map((e) => e.event), [sigs[2].event + 1, sigs[2].event + 2, sigs[2].event + 3]);  // SIGPROF's first
  t.like(after(evs, returns[2]), { kind: 'syscall', syscall: 'getppid' });
});

test.serial('kill, raise and tgkill to itself with a handler; a blocked signal stays pending (sigpending) until unblocked', (t) => {
  const rt = same(t, [fixture('sig_self')], [
    'after kill: usr1 1',
    'after raise: usr2 1',
    'after tgkill: usr1 2',
    'blocked: usr2 1, pending USR2 1 USR1 0',
    'unblocked: usr2 2, pending USR2 0, last 12',
    '',
  ].join('\n'));
  const evs = events(rt.trace);
  const sigs = signals(evs);
  t.deepEqual(sigs.map((s) => s.signo), [SIGUSR1, SIGUSR2, SIGUSR1, SIGUSR2]);
  t.deepEqual(sigs.map((s) => before(evs, s).syscall), ['kill', 'tgkill', 'tgkill', 'rt_sigprocmask']);
  t.deepEqual(sigs.map((s) => s.code), [0 /* SI_USER */, SI_TKILL, SI_TKILL, 0]);
});

test.serial('waiting for signals: sigsuspend, sigwaitinfo (the siginfo comes back), signalfd', (t) => {
  const rt = same(t, [fixture('sig_wait')], 'sigsuspend -1 got 14\nsigwaitinfo 10 code 0 pid ok 1\nsignalfd read 128 signo 14\n');
  t.deepEqual(signals(events(rt.trace)).map((s) => s.signo), [SIGALRM]);  // the other two are taken, not delivered
});

test.serial('a signal interrupts a blocking read: EINTR without SA_RESTART, restarted with SA_RESTART to read what a child writes later', (t) => {
  const rt = same(t, [fixture('sig_eintr')], [
    'without SA_RESTART: read returned -1, EINTR, handler ran 1 time',
    'with SA_RESTART: read returned 13: written later, handler ran 2 times',
    'child exited with 0',
    '',
  ].join('\n'));
  const all = events(rt.trace);
  const evs = all.filter((e) => e.pid === all[0].pid);
  const sigs = signals(evs);
  t.deepEqual(sigs.map((s) => s.signo), [SIGALRM, SIGUSR1]);
  t.deepEqual(sigs.map((s) => [before(evs, s).syscall, before(evs, s).result]), [['read', -512], ['read', -512]]);  // ERESTARTSYS
  // The first handler returns -EINTR into the program; the second read is restarted and gets the data.
  const returns = evs.filter((e) => e.syscall === 'rt_sigreturn');
  t.deepEqual(returns.map((e) => e.result), [-4, 0]);
  t.like(evs[evs.indexOf(returns[1]) + 1], { syscall: 'read', result: 13 });
});

test.serial('sigaltstack: a handler runs on the alternate stack, and a stack overflow SIGSEGV is handled there', (t) => {
  same(t, [fixture('sig_altstack', ['-O1', '-Wno-infinite-recursion'])], [
    'SIGUSR1 handler on the alternate stack: 1 (SS_ONSTACK 1), main is not: 1',
    'stack overflow: SIGSEGV handler on the alternate stack: 1, fault near the 1024 KiB limit: 1, depth over 896: 1',
    'back on the main stack: 1',
    '',
  ].join('\n'));
});

test.serial('a stack overflow at the stack limit the program inherited through exec (ulimit -s in a shell)', (t) => {
  const bin = fixture('sig_altstack', ['-O1', '-Wno-infinite-recursion']);
  const rt = same(t, ['/bin/sh', '-c', `ulimit -s 2048 && exec ${bin} inherit`], [
    'SIGUSR1 handler on the alternate stack: 1 (SS_ONSTACK 1), main is not: 1',
    'stack overflow: SIGSEGV handler on the alternate stack: 1, fault near the 2048 KiB limit: 1, depth over 1920: 1',
    'back on the main stack: 1',
    '',
  ].join('\n'));
  const execs = events(rt.trace).filter((e) => e.kind === 'exec');
  t.is(execs.length, 2);
  t.is(execs[1].stackLimit, 2048 * 1024);
});

for (const [how, signo, name] of [['term', SIGTERM, 'SIGTERM sent to itself'], ['abort', SIGABRT, 'abort() (SIGABRT)']] as const) {
  test.serial(`a signal that kills the process: ${name}; record and run exit with ${128 + signo}`, (t) => {
    const rt = same(t, [fixture('sig_fatal'), how], `about to die by ${how}\n`, 128 + signo);
    const sigs = signals(events(rt.trace));
    t.deepEqual(sigs.map((s) => [s.signo, s.fatal]), [[signo, true]]);
    const info = JSON.parse(cli(['info', '--json', rt.trace]).stdout.toString());
    t.like(info.processes[0], { exitCode: null, exitSignal: signo });
  });
}

test.serial('SIGTERM from the parent kills a child computing in user code: delivered at once (no handler to place), the parent sees it', (t) => {
  const rt = same(t, [fixture('sig_fatal'), 'child'], 'about to die by child\nthe child was killed by signal 15\n');
  const evs = events(rt.trace);
  const sigs = signals(evs);
  t.deepEqual(sigs.map((s) => [s.signo, s.fatal, s.inUserCode, s.pid !== evs[0].pid]), [[SIGTERM, true, true, true]]);
  t.like(after(evs, sigs[0]), { kind: 'exit', pid: sigs[0].pid });
});

test.serial('a program busy-waiting for its SIGALRM handler: the recorder says it needs a PMU; interrupted, its trace replays', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ra-spin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const trace = join(dir, 'spin.rrz');
  const rec = spawn(process.execPath, [CLI, 'record', '-o', trace, '--', fixture('sig_spin')], {
    env: { ...process.env, RA_SPIN_TIMEOUT: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '', err = '';
  const stop = setTimeout(() => rec.kill('SIGTERM'), 20_000);  // the warning never came
  rec.stdout.on('data', (d) => { out += d; });
  rec.stderr.on('data', (d) => {
    err += d;
    if (err.includes('waits for one') && !rec.killed) rec.kill('SIGTERM');  // as Ctrl-C would, once
  });
  const status = await new Promise<number | null>((resolve) => rec.on('close', resolve));
  clearTimeout(stop);
  t.is(status, 128 + SIGTERM);
  t.is(out, 'waiting for the alarm in a busy loop\n');
  t.regex(err, /has run 1 s in user code without a syscall while signal 14 \(Alarm clock\) waits for one: .*this program needs a PMU/);
  t.regex(err, /trace incomplete: recording interrupted by SIGTERM/);
  const run = cli(['run', trace]);
  t.is(run.stdout.toString(), 'waiting for the alarm in a busy loop\n');
  t.regex(run.stderr, /verified \d+ events/);
});

test.serial('SIGPIPE at its default action kills a writer into a pipe without readers (exit 141)', (t) => {
  const rt = same(t, [fixture('sig_pipe')], 'writing with SIGPIPE at its default action\n', 128 + SIGPIPE);
  const evs = events(rt.trace);
  const sigs = signals(evs);
  t.deepEqual(sigs.map((s) => [s.signo, s.fatal]), [[SIGPIPE, true]]);
  t.like(before(evs, sigs[0]), { syscall: 'write', result: -32 });  // EPIPE
});

test.serial('with SIGPIPE ignored, write into a pipe without readers fails with EPIPE', (t) => {
  const rt = same(t, [fixture('sig_pipe'), 'ignore'], 'writing with SIGPIPE ignored\nwrite returned -1, EPIPE\n');
  t.is(signals(events(rt.trace)).length, 0);
});

test.serial('nested signals: a handler raises another signal whose handler raises a third; the same signal waits for rt_sigreturn', (t) => {
  const rt = same(t, [fixture('sig_nested')], 'order: 123baRam\n');
  t.deepEqual(signals(events(rt.trace)).map((s) => s.signo), [SIGUSR1, SIGUSR2, SIGHUP, SIGUSR1]);
});

test.serial('threads: SIGALRM interrupts the main thread waiting in pthread_join (futex) while another thread sleeps', (t) => {
  const rt = same(t, [fixture('sig_thread', ['-O1', '-pthread']), 'join'], 'joined 7, 1 alarm handled by the main thread\n');
  const evs = events(rt.trace);
  const sigs = signals(evs);
  t.deepEqual(sigs.map((s) => [s.signo, s.tid === s.pid]), [[SIGALRM, true]]);
  t.like(before(evs, sigs[0]), { syscall: 'futex', result: -512 });
  t.true(evs.some((e) => e.kind === 'switch'));
});

test.serial('threads: SIGALRM for a thread computing in user code is held to its next syscall, on its way out, and not lost', (t) => {
  const rt = same(t, [fixture('sig_thread', ['-O1', '-pthread']), 'compute'], 'joined c575, 1 alarm handled by the second thread\n');
  const evs = events(rt.trace);
  const sigs = signals(evs);
  t.deepEqual(sigs.map((s) => [s.signo, s.tid !== s.pid, s.beforeSyscall]), [[SIGALRM, true, true]]);
});

/** Copy a trace, passing each event through `edit`. */
function rewrite(from: string, to: string, edit: (ev: TraceEvent) => TraceEvent): void {
  const r = TraceReader.open(from);
  const { formatMajor, formatMinor, ...header } = r.header;
  void formatMajor, formatMinor;
  const w = TraceWriter.create(to, header);
  for (const ref of r.blobRefs()) w.addBlob(r.blob(ref));
  for (const ev of r.events()) w.append(edit(ev));
  w.close({ complete: true });
  r.close();
}

test.serial('the registers at a signal delivery are checked: a tampered signal event is a divergence there', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ra-sig-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const original = join(dir, 'sighandler.rrz'), tampered = join(dir, 'tampered.rrz');
  const rec = cli(['record', '-o', original, '--', fixture('sighandler')]);
  t.is(rec.status, 0, rec.stderr);
  t.is(cli(['run', original]).status, 0);
  let at = -1, n = 0;
  rewrite(original, tampered, (ev) => {
    n++;
    if (ev.kind !== 'signal') return ev;
    at = n - 1;
    const regs = Uint8Array.from(ev.regs);
    setReg(regs, 'rbx', 0x1234n);
    return { ...ev, regs } as SignalEvent;
  });
  const r = cli(['run', tampered]);
  t.is(r.status, 125);
  t.regex(r.stderr, new RegExp(`divergence at event ${at}: registers differ at signal 10: rbx \\(rbx recorded 0x1234, replayed 0x[0-9a-f]+\\)`));
  t.regex(r.stderr, /rbx +0x1234 +0x[0-9a-f]+ +<-- differs/);
});
