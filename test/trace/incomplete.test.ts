import test from 'ava';
import * as fs from 'node:fs';
import { TraceWriter, TraceReader, type TraceEvent } from '../../src/trace/index.ts';
import { HEADER, regs } from './fixtures.ts';
import { tmpFile, frames } from './helpers.ts';

const ev = (i: number): TraceEvent => ({ kind: 'syscall', tid: 3, pid: 3, number: i % 50, regs: regs(i), result: i, writes: [] });

test('a writer killed mid-way: readable up to the last complete chunk, marked incomplete', (t) => {
  const file = tmpFile('killed.rrz');
  const w = TraceWriter.create(file, HEADER, { chunkBytes: 4096, flushMs: 0 });
  const snapshots: { copy: string; flushed: number }[] = [];
  for (let i = 0; i < 600; i++) {
    w.append(ev(i));
    if (i % 97 === 0) {
      const copy = `${file}.${i}`;
      fs.copyFileSync(file, copy); // what a SIGKILL at this point leaves on disk
      const flushed = frames(fs.readFileSync(copy)).reduce((a, f) => a + f.count, 0);
      snapshots.push({ copy, flushed });
    }
  }
  w.abandon();
  for (const { copy, flushed } of snapshots) {
    const r = TraceReader.open(copy);
    t.false(r.complete);
    t.regex(r.incompleteReason!, /no footer/);
    t.is(r.eventCount, flushed);
    const got = [...r.events()];
    t.deepEqual(got, Array.from({ length: flushed }, (_, i) => ev(i)));
    r.close();
  }
  t.true(snapshots.at(-1)!.flushed > 400);
});

test('truncation at many points of a complete trace: a prefix of whole chunks, incomplete', (t) => {
  const file = tmpFile('trunc.rrz');
  const w = TraceWriter.create(file, HEADER, { chunkBytes: 3000 });
  w.addBlob(new Uint8Array(9000).fill(5));
  for (let i = 0; i < 300; i++) w.append(ev(i));
  w.close({ complete: true });
  const full = fs.readFileSync(file);
  const fr = frames(full).filter((f) => f.type === 1);
  const cut = tmpFile('cut.rrz');
  let opened = 0;
  for (let len = 0; len < full.length; len += 37) {
    fs.writeFileSync(cut, full.subarray(0, len));
    let r: TraceReader;
    try {
      r = TraceReader.open(cut);
    } catch (e) {
      t.is((e as Error).name, 'TraceFormatError', `at ${len}: ${(e as Error).message}`);
      t.true(len < 24 + full.readUInt32LE(12), `only a cut header makes the file unreadable (cut at ${len})`);
      continue;
    }
    opened++;
    const whole = fr.filter((f) => f.end <= len).reduce((a, f) => a + f.count, 0);
    t.false(r.complete);
    t.is(r.eventCount, whole, `cut at ${len}`);
    t.is([...r.events()].length, whole);
    r.close();
  }
  t.true(opened > 10);
});

test('close({complete: false}) keeps the index and the reason', (t) => {
  const file = tmpFile('sigint.rrz');
  const w = TraceWriter.create(file, HEADER);
  for (let i = 0; i < 10; i++) w.append(ev(i));
  w.close({ complete: false, reason: 'recorder interrupted by SIGINT' });
  const r = TraceReader.open(file);
  t.false(r.complete);
  t.is(r.incompleteReason, 'recorder interrupted by SIGINT');
  t.is(r.eventCount, 10);
  r.close();
});

test('pending events reach the disk within ~0.5 s even without more appends', async (t) => {
  const file = tmpFile('timer.rrz');
  const w = TraceWriter.create(file, HEADER);
  w.append(ev(0));
  w.append(ev(1));
  await new Promise((res) => setTimeout(res, 900));
  const copy = `${file}.copy`;
  fs.copyFileSync(file, copy);
  w.close({ complete: true });
  const r = TraceReader.open(copy);
  t.false(r.complete);
  t.is(r.eventCount, 2);
  r.close();
});
