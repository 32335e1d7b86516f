// Trace reader: opens a .rrz file synchronously, trusts nothing in it. With a footer it seeks through
// the index (reading event N decompresses only N's chunk); without one (a killed writer) it rebuilds
// the index by scanning frames up to the last intact one and reports the trace incomplete.
// Every length, offset and count is checked before use; every failure is a TraceFormatError.
import * as fs from 'node:fs';
import { Unpackr } from 'msgpackr';
import { FORMAT_MAJOR, FORMAT_MINOR, isBlobRef, type BlobRef, type Bytes, type TraceEvent, type TraceHeader } from './schema.ts';
import { TraceFormatError } from './errors.ts';
import { crc32 } from './checksum.ts';
import { decompress, maxRawFor, CODEC_NAMES } from './codec.ts';
import {
  decodeFrameHeader, decodeTrailer, FRAME_HEADER_SIZE, FrameType, MAGIC, MAX_CHUNK_RAW, MAX_FOOTER_RAW, MAX_HEADER_SIZE,
  PREFIX_SIZE, TRAILER_SIZE, type FrameHeader,
} from './layout.ts';
import { decodeChunk } from './chunk.ts';
import { decodeFooter, type ChunkEntry } from './footer.ts';
import { sha256hex, type BlobLocation } from './blobs.ts';
import { checkHeader } from './validate.ts';

const CHUNK_CACHE = 4;

export interface TraceStats {
  fileBytes: number;
  headerBytes: number;
  footerBytes: number;
  rawEventBytes: number;
  compressedEventBytes: number;
  chunks: number;
  events: number;
  eventsByKind: Record<string, number>;
  blobs: number;
  /** Raw bytes of the distinct blobs. */
  blobBytes: number;
  /** What the blob frames take on disk. */
  blobStoredBytes: number;
  /** rawEventBytes / compressedEventBytes. */
  eventCompressionRatio: number;
  /** (rawEventBytes + blobBytes) / fileBytes. */
  compressionRatio: number;
}

export class TraceReader {
  readonly header: TraceHeader;
  readonly complete: boolean;
  readonly incompleteReason?: string;
  readonly eventCount: number;
  /** Footer extras (replay checkpoints and the like); empty for a scanned trace. */
  readonly extras: Record<string, unknown>;
  private chunks: ChunkEntry[];
  private blobIndex: Map<string, BlobLocation>;
  private byKind?: Record<string, number>;
  private cache = new Map<number, TraceEvent[]>();
  private fd: number;
  private fileSize: number;
  private dataStart: number;
  private footerBytes = 0;
  /** How many chunks were decompressed and decoded so far (cache misses). */
  chunksDecoded = 0;

  private constructor(readonly path: string) {
    try {
      this.fd = fs.openSync(path, 'r');
    } catch (e) {
      throw new TraceFormatError(`cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, path);
    }
    try {
      this.fileSize = fs.fstatSync(this.fd).size;
      const { header, dataStart } = this.readHeader();
      this.header = header;
      this.dataStart = dataStart;
      const footer = this.readFooter();
      if (footer) {
        this.complete = footer.complete;
        this.incompleteReason = footer.complete ? undefined : (footer.reason ?? 'marked incomplete by the writer');
        this.chunks = footer.chunks;
        this.blobIndex = footer.blobs;
        this.eventCount = footer.eventCount;
        this.byKind = footer.eventsByKind;
        this.extras = footer.extras;
      } else {
        const scan = this.scan();
        this.complete = false;
        this.incompleteReason = scan.reason;
        this.chunks = scan.chunks;
        this.blobIndex = scan.blobs;
        this.eventCount = scan.chunks.reduce((a, c) => a + c.count, 0);
        this.extras = {};
      }
    } catch (e) {
      fs.closeSync(this.fd);
      throw e;
    }
  }

  static open(path: string): TraceReader {
    return new TraceReader(path);
  }

  private fail(what: string, offset?: number): never {
    throw new TraceFormatError(offset === undefined ? what : `${what} (byte offset ${offset})`, this.path, offset);
  }

  /** Exactly len bytes at pos, or a TraceFormatError naming what was being read. */
  private readAt(pos: number, len: number, what: string): Buffer {
    if (pos < 0 || len < 0 || pos + len > this.fileSize) this.fail(`${what}: ${len} bytes at ${pos} extend past the end of the file (${this.fileSize} bytes)`, pos);
    const buf = Buffer.allocUnsafe(len);
    let done = 0;
    while (done < len) {
      const n = fs.readSync(this.fd, buf, done, len - done, pos + done);
      if (n === 0) this.fail(`${what}: file shrank while reading`, pos + done);
      done += n;
    }
    return buf;
  }

  private readHeader(): { header: TraceHeader; dataStart: number } {
    if (this.fileSize < PREFIX_SIZE) this.fail(`not a replay-anywhere trace: ${this.fileSize} bytes is shorter than the ${PREFIX_SIZE}-byte file header`, 0);
    const p = this.readAt(0, PREFIX_SIZE, 'file header');
    if (!MAGIC.every((b, i) => p[i] === b)) this.fail('not a replay-anywhere trace (bad magic)', 0);
    const major = p.readUInt16LE(8);
    const minor = p.readUInt16LE(10);
    if (major > FORMAT_MAJOR)
      this.fail(`trace format ${major}.${minor} is newer than this reader's ${FORMAT_MAJOR}.${FORMAT_MINOR} (written by a newer replay-anywhere; upgrade to read it)`, 8);
    if (major < 1) this.fail(`unknown trace format version ${major}.${minor}`, 8);
    const len = p.readUInt32LE(12);
    if (len > MAX_HEADER_SIZE || len > this.fileSize - PREFIX_SIZE) this.fail(`header length ${len} is absurd for a ${this.fileSize}-byte file`, 12);
    const body = this.readAt(PREFIX_SIZE, len, 'header');
    if (crc32(body) !== p.readUInt32LE(16)) this.fail('header checksum mismatch', PREFIX_SIZE);
    let h: unknown;
    try {
      h = new Unpackr({ useRecords: false, mapsAsObjects: true }).unpack(body);
    } catch (e) {
      this.fail(`undecodable header (${(e as Error).message})`, PREFIX_SIZE);
    }
    const why = checkHeader(h);
    if (why) this.fail(why, PREFIX_SIZE);
    return { header: { ...(h as TraceHeader), formatMajor: major, formatMinor: minor }, dataStart: PREFIX_SIZE + len };
  }

  /** Check a frame header's sizes against the file and the type's caps; returns a reason or null. */
  private frameProblem(h: FrameHeader, pos: number): string | null {
    if (pos + FRAME_HEADER_SIZE + h.storedLen > this.fileSize) return `frame of ${h.storedLen} bytes extends past the end of the file`;
    if (h.rawLen > maxRawFor(h.storedLen)) return `frame claims ${h.rawLen} raw bytes from ${h.storedLen} stored (more than any codec gives)`;
    if (!(h.codec in CODEC_NAMES)) return `unknown codec ${h.codec}`;
    if (h.type === FrameType.Events) {
      if (h.rawLen > MAX_CHUNK_RAW) return `event chunk of ${h.rawLen} raw bytes exceeds the ${MAX_CHUNK_RAW} limit`;
      if (h.count === 0 || h.count > h.rawLen) return `event chunk declares ${h.count} events in ${h.rawLen} bytes`;
    }
    if (h.type === FrameType.Footer && h.rawLen > MAX_FOOTER_RAW) return `footer of ${h.rawLen} raw bytes exceeds the ${MAX_FOOTER_RAW} limit`;
    return null;
  }

  /** Read and check a frame's payload: crc, then decompression to exactly rawLen. */
  private payload(h: FrameHeader, pos: number, what: string): Uint8Array {
    const stored = this.readAt(pos + FRAME_HEADER_SIZE, h.storedLen, what);
    if (crc32(stored) !== h.payloadCrc) this.fail(`${what}: checksum mismatch`, pos);
    try {
      return decompress(stored, h.codec, h.rawLen);
    } catch (e) {
      this.fail(`${what}: ${(e as Error).message}`, pos);
    }
  }

  private readFooter() {
    const minEnd = this.dataStart + FRAME_HEADER_SIZE + TRAILER_SIZE;
    if (this.fileSize < minEnd) return null;
    const tpos = this.fileSize - TRAILER_SIZE;
    const t = decodeTrailer(this.readAt(tpos, TRAILER_SIZE, 'trailer'));
    if (!t) return null;
    const { footerOffset: at, footerLen } = t;
    if (at < this.dataStart || at + footerLen !== tpos || footerLen < FRAME_HEADER_SIZE)
      this.fail(`trailer points at a footer of ${footerLen} bytes at byte ${at}, not ending at the trailer`, tpos);
    const h = decodeFrameHeader(this.readAt(at, FRAME_HEADER_SIZE, 'footer'));
    if (typeof h === 'string') this.fail(`footer: ${h}`, at);
    if (h.type !== FrameType.Footer) this.fail(`footer: frame of type ${h.type} where the footer should be`, at);
    if (FRAME_HEADER_SIZE + h.storedLen !== footerLen) this.fail(`footer: frame length disagrees with the trailer`, at);
    const why = this.frameProblem(h, at);
    if (why) this.fail(`footer: ${why}`, at);
    const raw = this.payload(h, at, 'footer');
    this.footerBytes = footerLen + TRAILER_SIZE;
    try {
      return decodeFooter(raw, this.dataStart, at, FRAME_HEADER_SIZE);
    } catch (e) {
      this.fail(`footer: ${(e as Error).message}`, at);
    }
  }

  /** Rebuild the index from the frames, stopping at the first one that is not intact. */
  private scan(): { chunks: ChunkEntry[]; blobs: Map<string, BlobLocation>; reason: string } {
    const chunks: ChunkEntry[] = [];
    const blobs = new Map<string, BlobLocation>();
    let pos = this.dataStart;
    let events = 0;
    let stop: string | undefined;
    while (pos < this.fileSize) {
      if (pos + FRAME_HEADER_SIZE > this.fileSize) {
        stop = `truncated frame header at byte ${pos}`;
        break;
      }
      const h = decodeFrameHeader(this.readAt(pos, FRAME_HEADER_SIZE, 'frame'));
      if (typeof h === 'string') {
        stop = `${h} at byte ${pos}`;
        break;
      }
      const why = this.frameProblem(h, pos);
      if (why) {
        stop = `${why} at byte ${pos}`;
        break;
      }
      const stored = this.readAt(pos + FRAME_HEADER_SIZE, h.storedLen, 'frame');
      if (crc32(stored) !== h.payloadCrc) {
        stop = `checksum mismatch in the frame at byte ${pos}`;
        break;
      }
      if (h.type === FrameType.Events) {
        if (h.first !== events) {
          stop = `chunk at byte ${pos} starts at event ${h.first}, expected ${events}`;
          break;
        }
        chunks.push({ offset: pos, first: h.first, count: h.count, rawLen: h.rawLen, storedLen: h.storedLen });
        events += h.count;
      } else if (h.type === FrameType.Blob) {
        if (!blobs.has(h.hash)) blobs.set(h.hash, { offset: pos, size: h.rawLen, storedLen: h.storedLen });
      } else {
        stop = `footer frame at byte ${pos} without a trailer`;
        break;
      }
      pos += FRAME_HEADER_SIZE + h.storedLen;
    }
    const reason = `no footer (the writer did not finish): index rebuilt by scanning, ${chunks.length} chunks, ${events} events` + (stop ? `; stopped at ${stop}` : '');
    return { chunks, blobs, reason };
  }

  private chunkIndexOf(n: number): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.chunks[mid].first <= n) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** The decoded events of chunk i (cached: the last few chunks stay decoded). */
  chunkEvents(i: number): TraceEvent[] {
    const hit = this.cache.get(i);
    if (hit) {
      this.cache.delete(i);
      this.cache.set(i, hit);
      return hit;
    }
    const e = this.chunks[i];
    const what = `chunk ${i}`;
    const h = decodeFrameHeader(this.readAt(e.offset, FRAME_HEADER_SIZE, what));
    if (typeof h === 'string') this.fail(`${what}: ${h}`, e.offset);
    if (h.type !== FrameType.Events || h.first !== e.first || h.count !== e.count || h.rawLen !== e.rawLen || h.storedLen !== e.storedLen)
      this.fail(`${what}: frame header disagrees with the index`, e.offset);
    const why = this.frameProblem(h, e.offset);
    if (why) this.fail(`${what}: ${why}`, e.offset);
    const raw = this.payload(h, e.offset, what);
    let events: TraceEvent[];
    try {
      events = decodeChunk(raw, h.count);
    } catch (err) {
      this.fail(`${what} (events ${e.first}..${e.first + e.count - 1}): ${(err as Error).message}`, e.offset);
    }
    this.chunksDecoded++;
    this.cache.set(i, events);
    if (this.cache.size > CHUNK_CACHE) this.cache.delete(this.cache.keys().next().value as number);
    return events;
  }

  event(n: number): TraceEvent {
    if (!Number.isSafeInteger(n) || n < 0 || n >= this.eventCount) throw new RangeError(`event ${n} out of range: the trace has ${this.eventCount} events`);
    const i = this.chunkIndexOf(n);
    return this.chunkEvents(i)[n - this.chunks[i].first];
  }

  *events(from = 0): IterableIterator<TraceEvent> {
    if (from >= this.eventCount) return;
    if (!Number.isSafeInteger(from) || from < 0) throw new RangeError(`event ${from} out of range`);
    for (let i = this.chunkIndexOf(from); i < this.chunks.length; i++) {
      const evs = this.chunkEvents(i);
      const c = this.chunks[i];
      for (let k = Math.max(0, from - c.first); k < evs.length; k++) yield evs[k];
    }
  }

  /** Every blob the trace stores. */
  *blobRefs(): IterableIterator<BlobRef> {
    for (const [blob, loc] of this.blobIndex) yield { blob, size: loc.size };
  }

  hasBlob(hash: string): boolean {
    return this.blobIndex.has(hash);
  }

  /** A blob's bytes, checked against its sha256. */
  blob(ref: BlobRef): Uint8Array {
    const loc = this.blobIndex.get(ref.blob);
    const what = `blob ${String(ref.blob).slice(0, 16)}`;
    if (!loc) this.fail(`${what} is referenced but not in the trace`);
    if (loc.size !== ref.size) this.fail(`${what}: referenced with size ${ref.size}, stored with ${loc.size}`, loc.offset);
    const h = decodeFrameHeader(this.readAt(loc.offset, FRAME_HEADER_SIZE, what));
    if (typeof h === 'string') this.fail(`${what}: ${h}`, loc.offset);
    if (h.type !== FrameType.Blob || h.hash !== ref.blob || h.rawLen !== loc.size || h.storedLen !== loc.storedLen)
      this.fail(`${what}: frame header disagrees with the index`, loc.offset);
    const why = this.frameProblem(h, loc.offset);
    if (why) this.fail(`${what}: ${why}`, loc.offset);
    const data = this.payload(h, loc.offset, what);
    if (sha256hex(data) !== ref.blob) this.fail(`${what}: sha256 mismatch`, loc.offset);
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }

  /** Inline bytes as they are, blob references resolved. */
  bytes(b: Bytes): Uint8Array {
    return isBlobRef(b) ? this.blob(b) : b;
  }

  stats(): TraceStats {
    if (!this.byKind) {
      const k: Record<string, number> = {};
      for (const e of this.events()) k[e.kind] = (k[e.kind] ?? 0) + 1;
      this.byKind = k;
    }
    let raw = 0;
    let stored = 0;
    for (const c of this.chunks) {
      raw += c.rawLen;
      stored += c.storedLen + FRAME_HEADER_SIZE;
    }
    let blobBytes = 0;
    let blobStored = 0;
    for (const b of this.blobIndex.values()) {
      blobBytes += b.size;
      blobStored += b.storedLen + FRAME_HEADER_SIZE;
    }
    return {
      fileBytes: this.fileSize,
      headerBytes: this.dataStart,
      footerBytes: this.footerBytes,
      rawEventBytes: raw,
      compressedEventBytes: stored,
      chunks: this.chunks.length,
      events: this.eventCount,
      eventsByKind: { ...this.byKind },
      blobs: this.blobIndex.size,
      blobBytes,
      blobStoredBytes: blobStored,
      eventCompressionRatio: stored ? raw / stored : 1,
      compressionRatio: this.fileSize ? (raw + blobBytes) / this.fileSize : 1,
    };
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
    this.cache.clear();
  }
}
