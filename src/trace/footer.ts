// The footer: the index a reader seeks with (event number -> chunk, blob hash -> frame), the
// completeness mark, per-kind counts, and `extras` for what later layers add (replay checkpoints).
// Stored as a Footer frame (msgpack, compressed, checksummed) followed by the fixed trailer.
import { Packr, Unpackr } from 'msgpackr';
import type { BlobLocation } from './blobs.ts';

export interface ChunkEntry {
  offset: number;
  first: number;
  count: number;
  rawLen: number;
  storedLen: number;
}

export interface Footer {
  complete: boolean;
  reason?: string;
  eventCount: number;
  chunks: ChunkEntry[];
  blobs: Map<string, BlobLocation>;
  eventsByKind: Record<string, number>;
  extras: Record<string, unknown>;
}

const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeFooter(f: Footer): Uint8Array {
  const chunks: number[] = [];
  for (const c of f.chunks) chunks.push(c.offset, c.first, c.count, c.rawLen, c.storedLen);
  const hashes = Buffer.alloc(32 * f.blobs.size);
  const blobs: number[] = [];
  let i = 0;
  for (const [h, b] of f.blobs) {
    hashes.write(h, 32 * i++, 'hex');
    blobs.push(b.offset, b.size, b.storedLen);
  }
  return packr.pack({
    complete: f.complete,
    reason: f.reason,
    eventCount: f.eventCount,
    chunks,
    blobHashes: hashes,
    blobs,
    eventsByKind: f.eventsByKind,
    extras: f.extras,
  });
}

const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;

/**
 * Decode and check a footer against the file: every offset inside [dataStart, dataEnd), frames in
 * increasing order without overlap, chunk event numbers contiguous. Throws a plain Error (reason).
 */
export function decodeFooter(raw: Uint8Array, dataStart: number, dataEnd: number, frameHeaderSize: number): Footer {
  let f: Record<string, unknown>;
  try {
    f = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' }).unpack(raw) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`undecodable footer (${(e as Error).message})`);
  }
  if (typeof f !== 'object' || f === null) throw new Error('footer is not a map');
  if (typeof f.complete !== 'boolean') throw new Error('footer without "complete"');
  if (f.reason !== undefined && f.reason !== null && typeof f.reason !== 'string') throw new Error('footer "reason" is not a string');
  if (!isCount(f.eventCount)) throw new Error('footer "eventCount" is not a count');
  const c = f.chunks;
  if (!Array.isArray(c) || c.length % 5 !== 0 || !c.every(isCount)) throw new Error('footer chunk index is not a list of counts');
  const b = f.blobs;
  const h = f.blobHashes;
  if (!Array.isArray(b) || b.length % 3 !== 0 || !b.every(isCount)) throw new Error('footer blob index is not a list of counts');
  if (!(h instanceof Uint8Array) || h.length !== (b.length / 3) * 32) throw new Error('footer blob hashes do not match the blob index');
  const ebk = f.eventsByKind;
  if (typeof ebk !== 'object' || ebk === null || Array.isArray(ebk) || !Object.values(ebk).every(isCount)) throw new Error('footer "eventsByKind" is not a map of counts');
  const extras = f.extras ?? {};
  if (typeof extras !== 'object' || extras === null || Array.isArray(extras)) throw new Error('footer "extras" is not a map');

  const frames: { offset: number; end: number; what: string }[] = [];
  const chunks: ChunkEntry[] = [];
  let next = 0;
  for (let i = 0; i < c.length; i += 5) {
    const e = { offset: c[i], first: c[i + 1], count: c[i + 2], rawLen: c[i + 3], storedLen: c[i + 4] } as ChunkEntry;
    const n = i / 5;
    if (e.first !== next) throw new Error(`chunk ${n} starts at event ${e.first}, expected ${next}`);
    if (e.count === 0 || e.count > e.rawLen) throw new Error(`chunk ${n} declares ${e.count} events in ${e.rawLen} bytes`);
    next += e.count;
    frames.push({ offset: e.offset, end: e.offset + frameHeaderSize + e.storedLen, what: `chunk ${n}` });
    chunks.push(e);
  }
  if (next !== f.eventCount) throw new Error(`chunks hold ${next} events, footer says ${f.eventCount}`);
  const blobs = new Map<string, BlobLocation>();
  for (let i = 0; i < b.length; i += 3) {
    const hash = Buffer.from(h.subarray((i / 3) * 32, (i / 3) * 32 + 32)).toString('hex');
    if (blobs.has(hash)) throw new Error(`blob ${hash} indexed twice`);
    const loc = { offset: b[i], size: b[i + 1], storedLen: b[i + 2] };
    blobs.set(hash, loc);
    frames.push({ offset: loc.offset, end: loc.offset + frameHeaderSize + loc.storedLen, what: `blob ${hash.slice(0, 12)}` });
  }
  frames.sort((x, y) => x.offset - y.offset);
  let prevEnd = dataStart;
  for (const fr of frames) {
    if (fr.offset < prevEnd) throw new Error(`${fr.what} at byte ${fr.offset} overlaps the previous frame or the header`);
    if (fr.end > dataEnd) throw new Error(`${fr.what} at byte ${fr.offset} extends past the footer (byte ${dataEnd})`);
    prevEnd = fr.end;
  }
  return {
    complete: f.complete,
    reason: (f.reason as string | undefined) ?? undefined,
    eventCount: f.eventCount,
    chunks,
    blobs,
    eventsByKind: ebk as Record<string, number>,
    extras: extras as Record<string, unknown>,
  };
}
