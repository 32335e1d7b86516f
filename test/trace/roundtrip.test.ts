import test from 'ava';
import * as fs from 'node:fs';
import { TraceWriter, TraceReader, FORMAT_MAJOR, FORMAT_MINOR, type TraceEvent } from '../../src/trace/index.ts';
import { HEADER, everyKind } from './fixtures.ts';
import { tmpFile } from './helpers.ts';

test('every event kind round-trips with exact values', (t) => {
  const file = tmpFile('kinds.rrz');
  const w = TraceWriter.create(file, HEADER);
  const big = Uint8Array.from({ length: 10000 }, (_, i) => (i * 31) & 0xff);
  const ref = w.bytes(big);
  t.false(ref instanceof Uint8Array, 'large bytes go to the blob store');
  const events = everyKind(ref);
  events.forEach((e, i) => t.is(w.append(e), i));
  t.is(w.eventCount, events.length);
  w.close({ complete: true });

  const r = TraceReader.open(file);
  t.true(r.complete);
  t.is(r.incompleteReason, undefined);
  t.deepEqual(r.header, { ...HEADER, formatMajor: FORMAT_MAJOR, formatMinor: FORMAT_MINOR });
  t.is(r.eventCount, events.length);
  const back = [...r.events()];
  t.deepEqual(back, events);
  for (let i = 0; i < events.length; i++) t.deepEqual(r.event(i), events[i]);
  const rdtsc = back.find((e): e is Extract<TraceEvent, { kind: 'rdtsc' }> => e.kind === 'rdtsc' && e.insn === 'rdtscp')!;
  t.is(typeof rdtsc.value, 'bigint');
  t.is(rdtsc.value, 0xfedcba9876543210n);
  const exec = back[0] as Extract<TraceEvent, { kind: 'exec' }>;
  t.is(exec.regs.constructor, Uint8Array);
  t.is(exec.mappings[2].start, 0xffffffffff600000);
  t.deepEqual(r.bytes(exec.mappings[0].data!), big);
  t.deepEqual(r.bytes(exec.mappings[1].data!), exec.mappings[1].data as Uint8Array);
  t.deepEqual([...r.events(10)], events.slice(10));
  t.deepEqual(r.stats().eventsByKind, { exec: 1, syscall: 3, rdtsc: 2, signal: 2, clone: 1, switch: 2, exit: 2 });
  r.close();
});

test('events spread over many chunks keep their order and numbers', (t) => {
  const file = tmpFile('many.rrz');
  const w = TraceWriter.create(file, HEADER, { chunkBytes: 2000 });
  const base = everyKind({ blob: 'ab'.repeat(32), size: 1 });
  const want: TraceEvent[] = [];
  for (let i = 0; i < 500; i++) {
    const e = { ...base[i % base.length], tid: i } as TraceEvent;
    want.push(e);
    w.append(e);
  }
  w.close({ complete: true });
  const r = TraceReader.open(file);
  t.true(r.stats().chunks > 20);
  t.deepEqual([...r.events()], want);
  t.deepEqual(r.event(377), want[377]);
  t.deepEqual([...r.events(499)], [want[499]]);
  t.deepEqual([...r.events(500)], []);
  t.throws(() => r.event(500), { instanceOf: RangeError });
  r.close();
});

test('the writer copies buffers at append: later changes do not leak into the trace', (t) => {
  const file = tmpFile('copy.rrz');
  const w = TraceWriter.create(file, HEADER);
  const buf = new Uint8Array(216).fill(1);
  w.append({ kind: 'switch', tid: 1, pid: 1, regs: buf });
  buf.fill(2);
  w.close({ complete: true });
  const r = TraceReader.open(file);
  t.deepEqual((r.event(0) as { regs: Uint8Array }).regs, new Uint8Array(216).fill(1));
  r.close();
});

test('the writer rejects an event without the schema shape', (t) => {
  const w = TraceWriter.create(tmpFile('bad.rrz'), HEADER);
  t.throws(() => w.append({ kind: 'syscall', tid: 1, pid: 1 } as unknown as TraceEvent), { instanceOf: TypeError, message: /regs|number/ });
  t.throws(() => w.append({ kind: 'nope', tid: 1, pid: 1 } as unknown as TraceEvent), { message: /unknown event kind/ });
  w.close({ complete: true });
});

test('footer extras round-trip (room for replay checkpoints)', (t) => {
  const file = tmpFile('extras.rrz');
  const w = TraceWriter.create(file, HEADER);
  w.append({ kind: 'switch', tid: 1, pid: 1 });
  const ref = w.addBlob(new Uint8Array(100).fill(3));
  w.setExtra('checkpoints', [{ event: 0, memory: ref }]);
  w.close({ complete: true });
  const r = TraceReader.open(file);
  t.deepEqual(r.extras, { checkpoints: [{ event: 0, memory: ref }] });
  t.deepEqual(r.blob(ref), new Uint8Array(100).fill(3));
  t.true(fs.statSync(file).size > 0);
  r.close();
});
