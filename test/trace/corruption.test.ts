import test from 'ava';
import * as fs from 'node:fs';
import { Packr } from 'msgpackr';
import { TraceWriter, TraceReader, TraceFormatError, type TraceEvent } from '../../src/trace/index.ts';
import { encodeFooter, type Footer } from '../../src/trace/footer.ts';
import { compress, Codec } from '../../src/trace/codec.ts';
import { encodeFrameHeader, encodeTrailer, FRAME_HEADER_SIZE, TRAILER_SIZE, FrameType } from '../../src/trace/layout.ts';
import { crc32 } from '../../src/trace/checksum.ts';
import { HEADER, everyKind } from './fixtures.ts';
import { tmpFile, frames, rewriteFrame, readAll } from './helpers.ts';

function sample(): { file: string; buf: Buffer } {
  const file = tmpFile('base.rrz');
  const w = TraceWriter.create(file, HEADER, { chunkBytes: 1500 });
  const ref = w.addBlob(Uint8Array.from({ length: 20000 }, (_, i) => (i * i) & 0xff));
  for (let k = 0; k < 5; k++) for (const e of everyKind(ref)) w.append(e);
  w.close({ complete: true });
  return { file, buf: fs.readFileSync(file) };
}

function expectError(t: import('ava').ExecutionContext, buf: Uint8Array, re: RegExp): void {
  const f = tmpFile('bad.rrz');
  fs.writeFileSync(f, buf);
  const e = readAll(f);
  t.true(e instanceof TraceFormatError, `expected a TraceFormatError, got ${String(e)}`);
  t.regex((e as Error).message, re);
}

/** Replace the footer by one built from the frames actually in `buf`, after `change`. */
function withFooter(buf: Uint8Array, change: (f: Footer) => void): Buffer {
  const fr = frames(buf);
  const foot = fr.at(-1)!.type === FrameType.Footer ? fr.pop()! : undefined;
  const chunks = fr.filter((x) => x.type === FrameType.Events).map((x) => ({ offset: x.offset, first: x.first, count: x.count, rawLen: x.rawLen, storedLen: x.storedLen }));
  const blobs = new Map(fr.filter((x) => x.type === FrameType.Blob).map((x) => [x.hash, { offset: x.offset, size: x.rawLen, storedLen: x.storedLen }]));
  const f: Footer = { complete: true, eventCount: chunks.reduce((a, c) => a + c.count, 0), chunks, blobs, eventsByKind: {}, extras: {} };
  change(f);
  const body = encodeFooter(f);
  const at = foot ? foot.offset : fr.at(-1)!.end;
  const header = encodeFrameHeader({ type: FrameType.Footer, codec: Codec.Raw, storedLen: body.length, rawLen: body.length, payloadCrc: crc32(body), count: 0, first: 0, hash: '' });
  return Buffer.concat([buf.subarray(0, at), header, body, encodeTrailer(at, header.length + body.length)]);
}

function tmpWrite(buf: Uint8Array): string {
  const f = tmpFile('x.rrz');
  fs.writeFileSync(f, buf);
  return f;
}

test('the sample reads cleanly', (t) => {
  const { file } = sample();
  t.is(readAll(file), undefined);
});

test('missing file and empty file', (t) => {
  t.true(readAll('/nonexistent/x.rrz') instanceof TraceFormatError);
  expectError(t, new Uint8Array(0), /shorter than/);
});

test('bad magic', (t) => {
  const { buf } = sample();
  const b = Buffer.from(buf);
  b[1] = 0x41;
  expectError(t, b, /bad magic.*byte offset 0/);
});

test('a newer major is refused naming both versions; a newer minor is read', (t) => {
  const { buf } = sample();
  const b = Buffer.from(buf);
  b.writeUInt16LE(2, 8);
  b.writeUInt16LE(3, 10);
  expectError(t, b, /format 2\.3 is newer than this reader's 1\.0/);
  const m = Buffer.from(buf);
  m.writeUInt16LE(7, 10);
  const f = tmpWrite(m);
  t.is(readAll(f), undefined);
  t.is(TraceReader.open(f).header.formatMinor, 7);
});

test('header: absurd length, checksum mismatch, wrong shape', (t) => {
  const { buf } = sample();
  const b = Buffer.from(buf);
  b.writeUInt32LE(0xfffffff0, 12);
  expectError(t, b, /header length .* absurd/);
  const c = Buffer.from(buf);
  c[30] ^= 0x10;
  expectError(t, c, /header checksum mismatch/);
  const body = new Packr({ useRecords: false }).pack({ ...HEADER, tickMode: 'fast' });
  const d = Buffer.concat([buf.subarray(0, 12), Buffer.alloc(12), body]);
  d.writeUInt32LE(body.length, 12);
  d.writeUInt32LE(crc32(body), 16);
  expectError(t, d, /tickMode/);
});

test('chunk payload checksum mismatch names the chunk and offset', (t) => {
  const { buf } = sample();
  const ch = frames(buf).filter((f) => f.type === FrameType.Events)[2];
  const b = Buffer.from(buf);
  b[ch.offset + FRAME_HEADER_SIZE + 5] ^= 0xff;
  expectError(t, b, new RegExp(`chunk 2: checksum mismatch \\(byte offset ${ch.offset}\\)`));
});

test('corrupted compressed data with a valid checksum', (t) => {
  const { buf } = sample();
  const ch = frames(buf).filter((f) => f.type === FrameType.Events)[1];
  const stored = Buffer.from(buf.subarray(ch.offset + FRAME_HEADER_SIZE, ch.end));
  for (let i = 0; i < stored.length; i += 3) stored[i] ^= 0x5a;
  expectError(t, rewriteFrame(buf, ch, {}, stored), /chunk 1: .*(corrupted|decompressed|exceeds)/);
});

test('absurd sizes: raw length beyond any codec, stored length past the end', (t) => {
  const { buf } = sample();
  const ch = frames(buf).filter((f) => f.type === FrameType.Events)[0];
  expectError(t, rewriteFrame(buf, ch, { rawLen: 0xffffffff }), /frame header disagrees|more than any codec/);
  const blob = frames(buf).find((f) => f.type === FrameType.Blob)!;
  expectError(t, rewriteFrame(buf, blob, { rawLen: 0x7fffffff }), /blob .*(disagrees|more than any codec)/);
  // Without a footer the scan sees the same frames and stops at the bad one.
  const noFooter = buf.subarray(0, frames(buf).at(-1)!.offset);
  const scanned = rewriteFrame(noFooter, ch, { storedLen: 0x7ffffff0 });
  const f = tmpWrite(scanned);
  const r = TraceReader.open(f);
  t.false(r.complete);
  t.is(r.eventCount, 0);
  t.regex(r.incompleteReason!, /extends past the end/);
});

test('footer: offsets overlapping, out of the file, non-contiguous events, duplicate blob', (t) => {
  const { buf } = sample();
  expectError(t, withFooter(buf, (f) => { f.chunks[1].offset = f.chunks[0].offset; }), /overlaps/);
  expectError(t, withFooter(buf, (f) => { f.chunks[0].offset = 3; }), /overlaps the previous frame or the header/);
  expectError(t, withFooter(buf, (f) => { f.chunks[1].offset = buf.length * 2; }), /extends past the footer/);
  expectError(t, withFooter(buf, (f) => { f.chunks[1].first += 1; }), /starts at event/);
  expectError(t, withFooter(buf, (f) => { f.eventCount += 1; }), /footer says/);
  expectError(t, withFooter(buf, (f) => { f.chunks[1].count = 0; }), /declares 0 events/);
  expectError(t, withFooter(buf, (f) => { const [h] = f.blobs.keys(); f.blobs.delete(h); }), /not in the trace/);
  // A chunk index entry pointing at a blob frame.
  const blob = frames(buf).find((x) => x.type === FrameType.Blob)!;
  expectError(t, withFooter(buf, (f) => { f.blobs.clear(); f.chunks[0].offset = blob.offset; }), /disagrees with the index/);
  // Footer frame checksum.
  const b = Buffer.from(buf);
  b[b.length - TRAILER_SIZE - 3] ^= 1;
  expectError(t, b, /footer: checksum mismatch/);
});

test('records without the schema shape are refused with the chunk and event', (t) => {
  const file = tmpFile('shape.rrz');
  const w = TraceWriter.create(file, HEADER, { validate: false });
  w.append({ kind: 'switch', tid: 1, pid: 1 });
  w.append({ kind: 'syscall', tid: 1, pid: 1, number: 'open', regs: new Uint8Array(216), result: 0, writes: [] } as unknown as TraceEvent);
  w.close({ complete: true });
  expectError(t, fs.readFileSync(file), /chunk 0 \(events 0\.\.1\): event 1 of the chunk: syscall event: field "number"/);
  const f2 = tmpFile('kind.rrz');
  const w2 = TraceWriter.create(f2, HEADER, { validate: false });
  w2.append({ kind: 'teleport', tid: 1, pid: 1 } as unknown as TraceEvent);
  w2.append({ kind: 'exit', tid: 1, pid: 1, code: 0, signal: null } as unknown as TraceEvent);
  w2.close({ complete: true });
  expectError(t, fs.readFileSync(f2), /unknown event kind "teleport"/);
});

test('a blob whose bytes do not match its sha256', (t) => {
  const { buf } = sample();
  const blob = frames(buf).find((f) => f.type === FrameType.Blob)!;
  const raw = Uint8Array.from({ length: 20000 }, (_, i) => ((i * i) & 0xff) ^ (i === 500 ? 1 : 0));
  const { codec, stored } = compress(raw, { codec: Codec.DeflateRaw, level: 6 }, false);
  const b = withFooter(rewriteFrame(buf, blob, { codec }, stored), () => {});
  expectError(t, b, /sha256 mismatch/);
});
