// Mutation fuzzing of a real trace: every outcome must be a TraceFormatError or a valid full read.
// Bounded: a fixed number of mutations from a fixed seed (reproducible), well within CI time.
import test from 'ava';
import * as fs from 'node:fs';
import { TraceWriter, TraceFormatError } from '../../src/trace/index.ts';
import { FRAME_HEADER_SIZE, TRAILER_SIZE } from '../../src/trace/layout.ts';
import { HEADER, everyKind, realisticMix, systemElfs } from './fixtures.ts';
import { tmpFile, frames, rewriteFrame, readAll, type FrameAt } from './helpers.ts';

const MUTATIONS = Number(process.env.RRZ_FUZZ_MUTATIONS ?? 3000);

function base(): Buffer {
  const file = tmpFile('fuzz-base.rrz');
  const w = TraceWriter.create(file, HEADER, { chunkBytes: 2500 });
  const elf = systemElfs(1)[0].subarray(0, 30000);
  const ref = w.addBlob(elf);
  for (const e of everyKind(ref)) w.append(e);
  for (const e of realisticMix(120, (d) => w.bytes(d.subarray(0, 6000)), [elf])) w.append(e);
  w.close({ complete: true });
  return fs.readFileSync(file);
}

test(`${MUTATIONS} mutations of a real trace: TraceFormatError or a valid read, nothing else`, (t) => {
  const orig = base();
  const fr = frames(orig);
  t.true(fr.length > 8, `${fr.length} frames`);
  let seed = 0x9e3779b9;
  const rnd = (n: number) => {
    seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return seed % n;
  };
  const pick = <T>(a: T[]): T => a[rnd(a.length)];
  const noFooter = (b: Buffer) => b.subarray(0, fr.at(-1)!.offset);
  const mutators: [string, () => Uint8Array][] = [
    ['truncate', () => orig.subarray(0, rnd(orig.length))],
    ['bit flips', () => {
      const b = Buffer.from(orig);
      for (let k = 1 + rnd(8); k > 0; k--) b[rnd(b.length)] ^= 1 << rnd(8);
      return b;
    }],
    ['bit flip without footer', () => {
      const b = Buffer.from(noFooter(orig));
      b[rnd(b.length)] ^= 1 << rnd(8);
      return b;
    }],
    ['random bytes', () => {
      const b = Buffer.from(orig);
      const at = rnd(b.length);
      for (let k = 0; k < 1 + rnd(16) && at + k < b.length; k++) b[at + k] = rnd(256);
      return b;
    }],
    ['splice', () => {
      const from = rnd(orig.length);
      const len = rnd(200);
      const to = rnd(orig.length);
      return Buffer.concat([orig.subarray(0, to), orig.subarray(from, from + len), orig.subarray(to + rnd(200))]);
    }],
    ['chunk swap', () => {
      const a = pick(fr.slice(0, -1));
      const b = pick(fr.slice(0, -1));
      const [x, y] = a.offset < b.offset ? [a, b] : [b, a];
      if (x === y) return Buffer.from(orig);
      return Buffer.concat([orig.subarray(0, x.offset), orig.subarray(y.offset, y.end), orig.subarray(x.end, y.offset), orig.subarray(x.offset, x.end), orig.subarray(y.end)]);
    }],
    ['chunk duplicate', () => {
      const a = pick(fr.slice(0, -1));
      const src = rnd(2) ? orig : noFooter(orig);
      const at = pick(fr).offset;
      return Buffer.concat([src.subarray(0, at), orig.subarray(a.offset, a.end), src.subarray(at)]);
    }],
    ['chunk dropped', () => {
      const a = pick(fr.slice(0, -1));
      return Buffer.concat([orig.subarray(0, a.offset), orig.subarray(a.end)]);
    }],
    ['payload garbled, checksums fixed', () => {
      const f: FrameAt = pick(fr);
      const p = Buffer.from(orig.subarray(f.offset + FRAME_HEADER_SIZE, f.end));
      for (let k = 1 + rnd(4); k > 0 && p.length; k--) p[rnd(p.length)] = rnd(256);
      return rewriteFrame(rnd(2) ? orig : noFooter(orig), f, {}, p);
    }],
    ['frame header field, checksum fixed', () => {
      const f: FrameAt = pick(fr.slice(0, -1));
      const field = pick(['rawLen', 'storedLen', 'count', 'first', 'codec', 'type'] as const);
      const v = pick([0, 1, 2, 3, rnd(1 << 20), 0xffffffff, f[field] as number + 1, f[field] as number - 1]);
      return rewriteFrame(noFooter(orig), f, { [field]: v });
    }],
    ['trailer garbled', () => {
      const b = Buffer.from(orig);
      b[b.length - TRAILER_SIZE + rnd(TRAILER_SIZE)] ^= 1 << rnd(8);
      return b;
    }],
  ];
  const file = tmpFile('fuzz.rrz');
  const outcome: Record<string, number> = { ok: 0, TraceFormatError: 0 };
  const t0 = Date.now();
  for (let i = 0; i < MUTATIONS; i++) {
    const [name, mutate] = mutators[i % mutators.length];
    const buf = mutate();
    fs.writeFileSync(file, buf);
    const e = readAll(file);
    if (e === undefined) {
      outcome.ok++;
    } else if (e instanceof TraceFormatError) {
      outcome.TraceFormatError++;
    } else {
      fs.copyFileSync(file, `${file}.fail`);
      t.fail(`mutation ${i} (${name}) threw ${(e as Error)?.stack ?? String(e)}; input kept at ${file}.fail`);
      return;
    }
  }
  t.log(`${MUTATIONS} mutations in ${Date.now() - t0} ms: ${JSON.stringify(outcome)}`);
  t.true(outcome.ok > 0 && outcome.TraceFormatError > 0);
});
