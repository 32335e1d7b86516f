// Trace layer benchmark: picks the chunk/blob compression by measurement and reports the writer's
// and reader's throughput on a realistic event mix (many small syscalls with 216-byte register
// images differing in a few bytes, read() outputs with text, ELF files as mmap blobs).
// Run: node --import=tsx bench/trace.ts
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TraceWriter, TraceReader, type TraceEvent, type BlobRef } from '../src/trace/index.ts';
import { sha256hex } from '../src/trace/blobs.ts';
import { ChunkEncoder } from '../src/trace/chunk.ts';
import { compress, decompress, Codec, DEFAULT_CODEC, DEFAULT_BLOB_CODEC, CODEC_NAMES, type CodecChoice } from '../src/trace/codec.ts';
import { HEADER, realisticMix, systemElfs } from '../test/trace/fixtures.ts';

export interface CodecFigure {
  codec: string;
  level: number;
  /** raw / stored */
  eventRatio: number;
  eventCompressMBs: number;
  eventDecompressMBs: number;
  blobRatio: number;
  blobCompressMBs: number;
  blobDecompressMBs: number;
}

export interface TraceBenchResult {
  events: number;
  rawEventMB: number;
  writeMBs: number;
  readMBs: number;
  randomAccessMs: number;
  fileMB: number;
  eventCompressionRatio: number;
  overallCompressionRatio: number;
  blobDedupHits: number;
  /** First store of a blob: sha256 + compression + write. */
  blobStoreMBs: number;
  /** Adding bytes already stored: sha256 only. */
  blobDedupMBs: number;
  defaultCodec: string;
  codecs: CodecFigure[];
}

const MB = 1 << 20;

function time(fn: () => void, minMs = 200): number {
  let n = 0;
  const t0 = performance.now();
  do {
    fn();
    n++;
  } while (performance.now() - t0 < minMs);
  return (performance.now() - t0) / n;
}

function chunksOf(events: TraceEvent[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  const enc = new ChunkEncoder();
  for (const e of events) {
    enc.add(e);
    if (enc.bytes >= MB) out.push(enc.finish());
  }
  if (enc.count) out.push(enc.finish());
  return out;
}

function measure(parts: Uint8Array[], choice: CodecChoice): { ratio: number; cMBs: number; dMBs: number } {
  const raw = parts.reduce((a, p) => a + p.length, 0);
  let stored: { codec: Codec; stored: Uint8Array }[] = [];
  const ct = time(() => (stored = parts.map((p) => compress(p, choice, false))));
  const size = stored.reduce((a, s) => a + s.stored.length, 0);
  const dt = time(() => stored.forEach((s, i) => decompress(s.stored, s.codec, parts[i].length)));
  return { ratio: raw / size, cMBs: raw / MB / (ct / 1000), dMBs: raw / MB / (dt / 1000) };
}

export function runTraceBench(opts: { events?: number; quiet?: boolean } = {}): TraceBenchResult {
  const n = opts.events ?? 200_000;
  const elfs = systemElfs(6);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rrz-bench-'));

  // 1. Codec comparison on event chunks and on blob contents.
  const sample: TraceEvent[] = [...realisticMix(40_000, (d) => (d.length < 4096 ? d : { blob: '0'.repeat(64), size: d.length }), elfs)];
  const chunks = chunksOf(sample);
  const blobs = elfs.map((e) => e.subarray(0, Math.min(e.length, 2 * MB)));
  const candidates: CodecChoice[] = [
    { codec: Codec.DeflateRaw, level: 1 }, { codec: Codec.DeflateRaw, level: 6 }, { codec: Codec.DeflateRaw, level: 9 },
    { codec: Codec.Gzip, level: 6 },
    { codec: Codec.Brotli, level: 1 }, { codec: Codec.Brotli, level: 3 }, { codec: Codec.Brotli, level: 4 },
    { codec: Codec.Brotli, level: 5 }, { codec: Codec.Brotli, level: 6 }, { codec: Codec.Brotli, level: 9 },
  ];
  const codecs: CodecFigure[] = candidates.map((c) => {
    const ev = measure(chunks, c);
    const bl = measure(blobs, c);
    return {
      codec: CODEC_NAMES[c.codec], level: c.level,
      eventRatio: ev.ratio, eventCompressMBs: ev.cMBs, eventDecompressMBs: ev.dMBs,
      blobRatio: bl.ratio, blobCompressMBs: bl.cMBs, blobDecompressMBs: bl.dMBs,
    };
  });

  // 2. End to end with the default codec. Events are generated beforehand (their blob references
  // computed outside the timing); the timed part stores the distinct ELF blobs, then appends.
  const file = path.join(dir, 'bench.rrz');
  const refs = new Map<Uint8Array, BlobRef>(elfs.map((e) => [e, { blob: sha256hex(e), size: e.length }]));
  const events = [...realisticMix(n, (d) => refs.get(d) ?? d, elfs)];
  const tb = performance.now();
  const w = TraceWriter.create(file, HEADER);
  for (const e of elfs) w.addBlob(e);
  const blobStoreMs = performance.now() - tb;
  const t0 = performance.now();
  for (const e of events) w.append(e);
  w.close({ complete: true });
  const writeMs = performance.now() - t0;
  // Adding content already stored costs its sha256 only.
  const w2 = TraceWriter.create(path.join(dir, 'dedup.rrz'), HEADER);
  for (const e of elfs) w2.addBlob(e);
  const td = performance.now();
  for (let k = 0; k < 10; k++) for (const e of elfs) w2.addBlob(e);
  const dedupMs = performance.now() - td;
  const dedup = w2.blobStats().dedupHits;
  w2.close({ complete: true });
  const elfMB = elfs.reduce((a, e) => a + e.length, 0) / MB;

  const t1 = performance.now();
  const r = TraceReader.open(file);
  let count = 0;
  for (const _ of r.events()) count++;
  const readMs = performance.now() - t1;
  const st = r.stats();
  r.close();
  if (count !== n) throw new Error(`read ${count} events, wrote ${n}`);

  const r2 = TraceReader.open(file);
  const t2 = performance.now();
  for (let k = 0; k < 50; k++) r2.event(Math.floor((k * 7919 * 104729) % n));
  const randomAccessMs = (performance.now() - t2) / 50;
  r2.close();
  fs.rmSync(dir, { recursive: true, force: true });

  const rawMB = st.rawEventBytes / MB;
  const result: TraceBenchResult = {
    events: n,
    rawEventMB: rawMB,
    // Throughput counts the raw event records; the blob work (hashing, compressing ELFs) is included in the time.
    writeMBs: rawMB / (writeMs / 1000),
    readMBs: rawMB / (readMs / 1000),
    randomAccessMs,
    fileMB: st.fileBytes / MB,
    eventCompressionRatio: st.eventCompressionRatio,
    overallCompressionRatio: st.compressionRatio,
    blobDedupHits: dedup,
    blobStoreMBs: elfMB / (blobStoreMs / 1000),
    blobDedupMBs: (10 * elfMB) / (dedupMs / 1000),
    defaultCodec: `events ${CODEC_NAMES[DEFAULT_CODEC.codec]} ${DEFAULT_CODEC.level}, blobs ${CODEC_NAMES[DEFAULT_BLOB_CODEC.codec]} ${DEFAULT_BLOB_CODEC.level}`,
    codecs,
  };
  if (!opts.quiet) print(result);
  return result;
}

function print(r: TraceBenchResult): void {
  const f = (x: number, d = 1) => x.toFixed(d);
  console.log('codec            events: ratio  comp MB/s  decomp MB/s | ELF blobs: ratio  comp MB/s  decomp MB/s');
  for (const c of r.codecs)
    console.log(`${`${c.codec} ${c.level}`.padEnd(16)} ${f(c.eventRatio).padStart(13)} ${f(c.eventCompressMBs).padStart(10)} ${f(c.eventDecompressMBs).padStart(12)} | ${f(c.blobRatio, 2).padStart(16)} ${f(c.blobCompressMBs).padStart(10)} ${f(c.blobDecompressMBs).padStart(12)}`);
  console.log(`\ndefault codec: ${r.defaultCodec}`);
  console.log(`${r.events} events, ${f(r.rawEventMB)} MB of raw records -> ${f(r.fileMB)} MB file (with the ELF blobs)`);
  console.log(`blob store: first add ${f(r.blobStoreMBs)} MB/s (sha256 + compress + write), repeat add ${f(r.blobDedupMBs)} MB/s (sha256 only)`);
  console.log(`write ${f(r.writeMBs)} MB/s, read ${f(r.readMBs)} MB/s of raw records; event compression ${f(r.eventCompressionRatio)}x, overall ${f(r.overallCompressionRatio)}x`);
  console.log(`random access to one event (cold chunk): ${f(r.randomAccessMs, 2)} ms`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) runTraceBench();
