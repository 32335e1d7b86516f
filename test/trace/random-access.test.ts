import test from 'ava';
import { TraceWriter, TraceReader, type TraceEvent } from '../../src/trace/index.ts';
import { HEADER, regs } from './fixtures.ts';
import { tmpFile } from './helpers.ts';

test('event N of a 100k-event trace decodes only its chunk', (t) => {
  const file = tmpFile('big.rrz');
  const w = TraceWriter.create(file, HEADER);
  const ev = (i: number): TraceEvent => ({ kind: 'syscall', tid: 7, pid: 7, number: i % 300, regs: regs(i), result: i, writes: [] });
  for (let i = 0; i < 100_000; i++) w.append(ev(i));
  w.close({ complete: true });

  const r = TraceReader.open(file);
  t.is(r.eventCount, 100_000);
  const chunks = r.stats().chunks;
  t.true(chunks > 5, `${chunks} chunks`);
  t.is(r.chunksDecoded, 0);
  t.deepEqual(r.event(99_999), ev(99_999));
  t.is(r.chunksDecoded, 1);
  t.deepEqual(r.event(50_000), ev(50_000));
  t.deepEqual(r.event(0), ev(0));
  t.is(r.chunksDecoded, 3);
  t.deepEqual(r.event(99_998), ev(99_998));
  t.is(r.chunksDecoded, 3, 'cached chunk reused');
  let n = 0;
  for (const e of r.events(99_990)) t.is((e as { result: number }).result, 99_990 + n++);
  t.is(n, 10);
  r.close();
});
