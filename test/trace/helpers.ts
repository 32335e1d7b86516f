// Test helpers: temp files, and surgery on .rrz files (frame listing, re-checksummed edits).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeFrameHeader, encodeFrameHeader, FRAME_HEADER_SIZE, PREFIX_SIZE, TRAILER_SIZE, type FrameHeader } from '../../src/trace/layout.ts';
import { crc32 } from '../../src/trace/checksum.ts';

export function tmpFile(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rrz-test-'));
  return path.join(dir, name);
}

export interface FrameAt extends FrameHeader {
  offset: number;
  end: number;
}

/** The frames of a well-formed file, in order (footer included, trailer excluded). */
export function frames(buf: Uint8Array): FrameAt[] {
  const out: FrameAt[] = [];
  let pos = PREFIX_SIZE + Buffer.from(buf).readUInt32LE(12);
  while (pos + FRAME_HEADER_SIZE <= buf.length - TRAILER_SIZE || (pos + FRAME_HEADER_SIZE <= buf.length && out.length === 0)) {
    const h = decodeFrameHeader(buf.subarray(pos, pos + FRAME_HEADER_SIZE));
    if (typeof h === 'string') break;
    const end = pos + FRAME_HEADER_SIZE + h.storedLen;
    out.push({ ...h, offset: pos, end });
    pos = end;
  }
  return out;
}

/** Replace a frame's header fields and/or payload, keeping both checksums valid. */
export function rewriteFrame(buf: Uint8Array, f: FrameAt, change: Partial<FrameHeader>, payload?: Uint8Array): Uint8Array {
  const stored = payload ?? buf.subarray(f.offset + FRAME_HEADER_SIZE, f.end);
  const h = { ...f, ...change };
  if (payload) {
    h.storedLen = change.storedLen ?? payload.length;
    h.payloadCrc = change.payloadCrc ?? crc32(payload);
  }
  const header = encodeFrameHeader(h);
  return Buffer.concat([buf.subarray(0, f.offset), header, stored, buf.subarray(f.end)]);
}

import { TraceReader } from '../../src/trace/reader.ts';
import type { TraceEvent, Bytes } from '../../src/trace/schema.ts';

/** Read every event, resolve every Bytes they hold, read every stored blob. Returns the event count. */
export function readEverything(r: TraceReader): number {
  let n = 0;
  const use = (b: Bytes | undefined) => {
    if (b !== undefined) r.bytes(b);
  };
  for (const e of r.events() as Iterable<TraceEvent>) {
    n++;
    if ('writes' in e) for (const w of e.writes ?? []) use(w.data);
    if ('mappings' in e && e.mappings) for (const m of e.mappings) use(m.data);
  }
  for (const b of r.blobRefs()) r.blob(b);
  r.stats();
  return n;
}

/** Open the file and read everything in it; returns the error thrown, undefined when none. */
export function readAll(path: string): unknown {
  try {
    const r = TraceReader.open(path);
    try {
      readEverything(r);
    } finally {
      r.close();
    }
    return undefined;
  } catch (e) {
    return e;
  }
}
