import test from 'ava';
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { TraceWriter, TraceReader, INLINE_LIMIT } from '../../src/trace/index.ts';
import { HEADER, systemElfs } from './fixtures.ts';
import { tmpFile } from './helpers.ts';

function random(n: number, _seed: number): Uint8Array {
  return new Uint8Array(randomBytes(n));
}

test('the same bytes added ten times are stored once (file size shows it)', (t) => {
  const data = random(200_000, 1); // incompressible: stored raw, so sizes are easy to reason about
  const once = tmpFile('once.rrz');
  const w1 = TraceWriter.create(once, HEADER);
  const ref1 = w1.addBlob(data);
  w1.append({ kind: 'switch', tid: 1, pid: 1 });
  w1.close({ complete: true });

  const ten = tmpFile('ten.rrz');
  const w10 = TraceWriter.create(ten, HEADER);
  for (let pid = 0; pid < 10; pid++) {
    const ref = w10.addBlob(Uint8Array.from(data));
    t.deepEqual(ref, ref1);
  }
  w10.append({ kind: 'switch', tid: 1, pid: 1 });
  t.is(w10.blobStats().dedupHits, 9);
  w10.close({ complete: true });

  const s1 = fs.statSync(once).size;
  const s10 = fs.statSync(ten).size;
  t.true(s1 > 200_000 && s1 < 201_000, `one copy on disk: ${s1}`);
  t.true(Math.abs(s10 - s1) < 64, `ten adds, one copy: ${s10} vs ${s1}`);
  const r = TraceReader.open(ten);
  t.is(r.stats().blobs, 1);
  t.is(r.stats().blobBytes, 200_000);
  t.deepEqual(r.blob(ref1), data);
  r.close();
});

test('compressible blobs are compressed, incompressible ones stored raw', (t) => {
  const file = tmpFile('mix.rrz');
  const w = TraceWriter.create(file, HEADER);
  const elf = systemElfs(1)[0];
  const rnd = random(50_000, 7);
  const a = w.addBlob(elf);
  const b = w.addBlob(rnd);
  w.close({ complete: true });
  const r = TraceReader.open(file);
  const st = r.stats();
  t.true(st.blobStoredBytes < elf.length + rnd.length, `stored ${st.blobStoredBytes} < raw ${elf.length + rnd.length}`);
  t.true(st.blobStoredBytes >= rnd.length);
  t.deepEqual(r.blob(a), elf);
  t.deepEqual(r.blob(b), rnd);
  r.close();
});

test('bytes(): small inline, large in the blob store', (t) => {
  const w = TraceWriter.create(tmpFile('inline.rrz'), HEADER);
  const small = w.bytes(new Uint8Array(INLINE_LIMIT - 1));
  const large = w.bytes(new Uint8Array(INLINE_LIMIT));
  t.true(small instanceof Uint8Array);
  t.false(large instanceof Uint8Array);
  t.deepEqual(large, { blob: 'ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7', size: INLINE_LIMIT });
  w.close({ complete: true });
});
