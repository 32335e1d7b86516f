// The debug session over a real recording: forward and backward, breakpoints and watchpoints,
// exact re-execution from checkpoints (registers compared in full), start and exit of the replay.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDebugSession, type DebugSession } from '../../src/debugger/session.ts';
import { getReg } from '../../src/replay/registers.ts';
import { TraceReader } from '../../src/trace/reader.ts';
import { fixture } from '../helpers/fixtures.ts';
import { cli } from '../helpers/round-trip.ts';

const program = fixture('session_counter', ['-O1', '-g', '-no-pie']);
const symbols = new Map(
  execFileSync('nm', [program]).toString().trim().split('\n').map((l) => l.split(' ')).map(([a, , n]) => [n, parseInt(a, 16)] as const),
);
const BUMP = symbols.get('bump')!;
const COUNTER = symbols.get('counter')!;

const dir = mkdtempSync(join(tmpdir(), 'ra-session-'));
const trace = join(dir, 'counter.rrz');
const recorded = cli(['record', '-o', trace, '--', program]);
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

async function open(): Promise<DebugSession> {
  return openDebugSession(TraceReader.open(trace));
}

const rip = (s: DebugSession, tid: number) => Number(getReg(s.registers(tid).regs, 'rip'));
const counter = (s: DebugSession) => Buffer.from(s.readMemory(COUNTER, 8)).readBigInt64LE();
const state = (s: DebugSession, tid: number) => {
  const r = s.registers(tid);
  return Buffer.concat([r.regs, r.fxsave]).toString('hex');
};

test('the recording exits with the counter (111)', (t) => {
  t.is(recorded.status, 111, recorded.stderr);
});

test('the session starts at the first instruction, with the recorded registers', async (t) => {
  const s = await open();
  t.teardown(() => s.close());
  const reader = TraceReader.open(trace);
  const exec = reader.event(0);
  if (exec.kind !== 'exec') return t.fail('first event is not exec');
  t.deepEqual(s.threads(), [exec.tid]);
  t.is(s.execPath, program);
  t.is(Buffer.from(s.registers(exec.tid).regs).toString('hex'), Buffer.from(exec.regs).toString('hex'));
  t.deepEqual(Buffer.from(s.auxv()), Buffer.from(exec.auxv));
  t.is(s.file(program)?.length, reader.bytes(reader.extras.files ? (reader.extras.files as Record<string, Uint8Array>)[program] : new Uint8Array()).length);
});

test('stepi 200 times, then reverse-stepi 200 times: identical registers at every step', async (t) => {
  const s = await open();
  t.teardown(() => s.close());
  const [tid] = s.threads();
  const seen = [state(s, tid)];
  for (let i = 0; i < 200; i++) {
    const stop = await s.resume({ direction: 'forward', step: true, tid });
    t.deepEqual(stop, { tid, cause: { kind: 'step' } });
    seen.push(state(s, tid));
  }
  t.is(new Set(seen).size, seen.length, 'every step changed the state');
  for (let i = 199; i >= 0; i--) {
    const stop = await s.resume({ direction: 'backward', step: true, tid });
    t.deepEqual(stop, { tid, cause: { kind: 'step' } });
    if (state(s, tid) !== seen[i]) return t.fail(`reverse-stepi to step ${i}: registers differ`);
  }
  t.deepEqual(await s.resume({ direction: 'backward', step: true, tid }), { tid, cause: { kind: 'replay-start' } });
  t.is(state(s, tid), seen[0]);
});

test('breakpoints forward and backward; reverse-continue with none goes back to the start', async (t) => {
  const s = await open();
  t.teardown(() => s.close());
  const [tid] = s.threads();
  const start = state(s, tid);
  s.setBreakpoint(BUMP);
  const hits: { counter: bigint; rdi: bigint; clock: number }[] = [];
  for (let i = 0; i < 3; i++) {
    t.deepEqual(await s.resume({ direction: 'forward', step: false, tid }), { tid, cause: { kind: 'breakpoint', address: BUMP } });
    t.is(rip(s, tid), BUMP);
    hits.push({ counter: counter(s), rdi: getReg(s.registers(tid).regs, 'rdi'), clock: s.clock });
  }
  t.deepEqual(hits.map((h) => [h.counter, h.rdi]), [[0n, 1n], [1n, 10n], [11n, 100n]]);
  const third = state(s, tid);
  // Backward: the second and the first call again, exactly where they were met going forward.
  t.deepEqual(await s.resume({ direction: 'backward', step: false, tid }), { tid, cause: { kind: 'breakpoint', address: BUMP } });
  t.is(s.clock, hits[1].clock);
  t.is(counter(s), 1n);
  t.deepEqual(await s.resume({ direction: 'backward', step: false, tid }), { tid, cause: { kind: 'breakpoint', address: BUMP } });
  t.is(s.clock, hits[0].clock);
  t.deepEqual(await s.resume({ direction: 'backward', step: false, tid }), { tid, cause: { kind: 'replay-start' } });
  t.is(state(s, tid), start);
  // And forward again to the third call: the same state as the first time.
  for (let i = 0; i < 3; i++) await s.resume({ direction: 'forward', step: false, tid });
  t.is(state(s, tid), third);
  s.removeBreakpoint(BUMP);
  t.deepEqual(await s.resume({ direction: 'forward', step: false, tid }), { tid: s.pid, cause: { kind: 'exited', code: 111, signal: null } });
  t.deepEqual(s.threads(), []);
});

test('a write watchpoint stops just after each write going forward, just before it going backward', async (t) => {
  const s = await open();
  t.teardown(() => s.close());
  const [tid] = s.threads();
  s.setWatchpoint(COUNTER, 8, 'write');
  const values: bigint[] = [];
  const rips: number[] = [];
  for (let i = 0; i < 3; i++) {
    t.deepEqual(await s.resume({ direction: 'forward', step: false, tid }), { tid, cause: { kind: 'watchpoint', watch: 'write', address: COUNTER } });
    values.push(counter(s));
    rips.push(rip(s, tid));
  }
  t.deepEqual(values, [1n, 11n, 111n]);
  t.true(rips.every((r) => r > BUMP && r < BUMP + 32), 'stopped inside bump, after the write');
  // Reverse-continue: just before each write, the last one first (reversing undoes it first).
  for (const [i, before] of [11n, 1n, 0n].entries()) {
    t.deepEqual(await s.resume({ direction: 'backward', step: false, tid }), { tid, cause: { kind: 'watchpoint', watch: 'write', address: COUNTER } });
    t.is(counter(s), before);
    t.is(rip(s, tid), rips[2 - i] - 7, 'at the store (mov %rax, counter(%rip) is 7 bytes)');
  }
  t.deepEqual(await s.resume({ direction: 'backward', step: false, tid }), { tid, cause: { kind: 'replay-start' } });
  t.is(counter(s), 0n);
});

test('checkpoints are taken while replaying forward and hold little memory', async (t) => {
  const s = await open();
  t.teardown(() => s.close());
  const [tid] = s.threads();
  t.deepEqual(await s.resume({ direction: 'forward', step: false, tid }), { tid: s.pid, cause: { kind: 'exited', code: 111, signal: null } });
  const stats = s.checkpointStats();
  t.true(stats.count >= 3, `${stats.count} checkpoints`);
  t.true(stats.bytes < 64 * 1024 * 1024, `${stats.bytes} bytes`);
});

test('backward, an SSE store the engine cannot place by itself is found exactly (the guess is checked)', async (t) => {
  const sse = fixture('session_sse', ['-O1', '-g', '-no-pie']);
  const sym = new Map(execFileSync('nm', [sse]).toString().trim().split('\n').map((l) => l.split(' ')).map(([a, , n]) => [n, parseInt(a, 16)] as const));
  const secondStore = sym.get('second_store')!;
  const watched = sym.get('area')! + 32;
  const sseTrace = join(dir, 'sse.rrz');
  t.is(cli(['record', '-o', sseTrace, '--', sse]).stdout.toString(), '-1 0 -1\n');
  const s = await openDebugSession(TraceReader.open(sseTrace));
  t.teardown(() => s.close());
  const [tid] = s.threads();
  s.setWatchpoint(watched, 16, 'write');
  t.deepEqual(await s.resume({ direction: 'forward', step: false, tid }), { tid, cause: { kind: 'watchpoint', watch: 'write', address: watched } });
  t.is(rip(s, tid), secondStore + 3, 'just after the second movups');
  t.deepEqual(await s.resume({ direction: 'forward', step: true, tid }), { tid, cause: { kind: 'step' } });
  t.deepEqual(await s.resume({ direction: 'backward', step: false, tid }), { tid, cause: { kind: 'watchpoint', watch: 'write', address: watched } });
  t.is(rip(s, tid), secondStore, 'at the second movups, not the first');
  t.is(Buffer.from(s.readMemory(watched, 16)).toString('hex'), '00'.repeat(16));
});
