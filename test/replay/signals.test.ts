// Signals, recorded for real (ptrace, no PMU) and replayed in the emulator: handlers and
// rt_sigreturn, synchronous faults recovered with siglongjmp, timers, signals to self, blocked and
// pending signals, interrupted and restarted syscalls, sigaltstack and stack overflow, signals that
// kill, SIGPIPE, nested handlers, a signal in a threaded program. Exact outputs, statuses, events.
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setReg } from '../../src/replay/registers.ts';
import { TraceReader } from '../../src/trace/reader.ts';
import type { SignalEvent, TraceEvent } from '../../src/trace/schema.ts';
import { TraceWriter } from '../../src/trace/writer.ts';
import { fixture } from '../helpers/fixtures.ts';
import { cli, recordAndReplay, type RoundTrip } from '../helpers/round-trip.ts';

const SIGHUP = 1, SIGABRT = 6, SIGUSR1 = 10, SIGSEGV = 11, SIGUSR2 = 12, SIGPIPE = 13, SIGALRM = 14, SIGTERM = 15;
const SIGVTALRM = 26, SIGPROF = 27;
const SI_KERNEL = 0x80, SI_TKILL = -6, SEGV_MAPERR = 1, SEGV_ACCERR = 2;

/** Asserts the replay reproduced the recording exactly and the expected output; returns the round trip. */
function same(t: ExecutionContext, command: string[], expected: string, expectStatus = 0): RoundTrip {
  const rt = recordAndReplay(command);
  t.teardown(rt.cleanup);
  t.is(rt.recorded.status, expectStatus, `record: ${rt.recorded.stderr}`);
  t.is(rt.recorded.stdout.toString(), expected);
  t.is(rt.summary.divergence, null, rt.replayed.stderr);
  t.true(rt.summary.verified);
  t.is(rt.replayed.status, expectStatus, rt.replayed.stderr);
  t.is(rt.summary.exitStatus, expectStatus);
  t.is(rt.replayed.stdout.toString(), expected);
  t.true(rt.summary.instructions > 0 && rt.summary.ticks > 0 && rt.summary.ticks < rt.summary.instructions);
  return rt;
}

interface DumpEvent { event: number; kind: string; pid: number; tid: number; syscall?: string; result?: number; signo?: number; code?: number; synchronous?: boolean; fatal?: boolean; addr?: number; stackLimit?: number }
function events(trace: string): DumpEvent[] {
  return JSON.parse(cli(['dump', '--json', trace]).stdout.toString());
}
const signals = (evs: DumpEvent[]) => evs.filter((e) => e.kind === 'signal');
/** The event right before `e` in the trace. */
const before = (evs: DumpEvent[], e: DumpEvent) => evs[evs.indexOf(e) - 1];

test.serial('alarm() interrupts pause(); an ITIMER_REAL signal arriving in user code is held to the next syscall (only timing changes)', (t) => {
  const rt = same(t, [fixture('sig_alarm')], [
    'pause returned -1 after 1 alarm (SI_KERNEL)',
    // Natively the handler runs during the computation (phase 1); recorded without a PMU it runs
    // at the first syscall after it (phase 2), and replay delivers it there too.
    'computed 51a0d9d15abaaf81, 2 alarms, the handler ran in phase 2 (SI_KERNEL)',
    '',
  ].join('\n'));
  const evs = events(rt.trace);
  const sigs = signals(evs);
  t.deepEqual(sigs.map((s) => [s.signo, s.code, s.synchronous]), [[SIGALRM, SI_KERNEL, false], [SIGALRM, SI_KERNEL, false]]);
  t.like(before(evs, sigs[0]), { kind: 'syscall', syscall: 'pause', result: -514 });  // ERESTARTNOHAND
  t.like(before(evs, sigs[1]), { kind: 'syscall', syscall: 'getppid' });
});

test.serial('three timers fire during a computation: all held, delivered nested at the next syscall with their kernel siginfo', (t) => {
  const rt = same(t, [fixture('sig_timers')],
    'computed 577239fc5fc42481; 0 handlers ran during the computation, 3 after it: PVA, 3 with SI_KERNEL\n');
  const evs = events(rt.trace);
  const sigs = signals(evs);
  t.deepEqual(sigs.map((s) => [s.signo, s.code]), [[SIGALRM, SI_KERNEL], [SIGVTALRM, SI_KERNEL], [SIGPROF, SI_KERNEL]]);
  t.like(before(evs, sigs[0]), { kind: 'syscall', syscall: 'getppid' });
  t.is(sigs[2].event, sigs[0].event + 2);  // nested: each delivered at the previous handler's entry
  const returns = evs.filter((e) => e.syscall === 'rt_sigreturn');
  t.is(returns.length, 3);
  t.is(returns[0].event, sigs[2].event + 1);  // the innermost (SIGPROF) handler returns first
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
