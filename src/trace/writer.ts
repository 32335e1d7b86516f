// Streaming trace writer: header first, then event chunks and blob frames as they fill, the footer
// index last. Memory stays bounded (one chunk of ~1 MiB plus the index); pending events are flushed
// at least every ~0.5 s so a killed recorder loses little. See docs/trace-format.md.
import * as fs from 'node:fs';
import { Packr } from 'msgpackr';
import { FORMAT_MAJOR, FORMAT_MINOR, type BlobRef, type Bytes, type TraceEvent, type TraceHeader } from './schema.ts';
import { crc32 } from './checksum.ts';
import { compress, DEFAULT_BLOB_CODEC, DEFAULT_CODEC, type CodecChoice } from './codec.ts';
import { encodeFrameHeader, encodePrefix, encodeTrailer, FrameType, MAX_CHUNK_RAW } from './layout.ts';
import { FileSink } from './sink.ts';
import { BlobStoreWriter } from './blobs.ts';
import { ChunkEncoder } from './chunk.ts';
import { encodeFooter, type ChunkEntry } from './footer.ts';
import { checkEventShape } from './validate.ts';

/** Bytes shorter than this stay inline in the event; longer go to the blob store. */
export const INLINE_LIMIT = 4096;

export interface TraceWriterOptions {
  /** Raw size at which a chunk is flushed (default 1 MiB). */
  chunkBytes?: number;
  /** Pending events older than this are flushed (default 500 ms; 0 disables the timer). */
  flushMs?: number;
  /** Codec of event chunks and the footer (default DEFAULT_CODEC). */
  codec?: CodecChoice;
  /** Codec of blobs (default DEFAULT_BLOB_CODEC). */
  blobCodec?: CodecChoice;
  /** Check each appended event's shape (default true): a recorder bug then fails at once, not at replay. */
  validate?: boolean;
}

export class TraceWriter {
  private sink: FileSink;
  private blobs: BlobStoreWriter;
  private encoder = new ChunkEncoder();
  private chunks: ChunkEntry[] = [];
  private count = 0;
  private byKind: Record<string, number> = {};
  private pendingSince = 0;
  private timer?: NodeJS.Timeout;
  private closed = false;
  private extras: Record<string, unknown> = {};
  private keyed = new Map<string, BlobRef>();
  private readonly chunkBytes: number;
  private readonly flushMs: number;
  private readonly codec: CodecChoice;
  private readonly validate: boolean;

  private constructor(private fd: number, readonly path: string, opts: TraceWriterOptions) {
    this.sink = new FileSink(fd);
    this.codec = opts.codec ?? DEFAULT_CODEC;
    this.chunkBytes = opts.chunkBytes ?? 1 << 20;
    this.flushMs = opts.flushMs ?? 500;
    this.validate = opts.validate ?? true;
    this.blobs = new BlobStoreWriter(this.sink, opts.blobCodec ?? DEFAULT_BLOB_CODEC);
    if (this.flushMs > 0) {
      this.timer = setInterval(() => this.flushIfStale(), Math.max(10, this.flushMs / 2));
      this.timer.unref();
    }
  }

  /** Create (or truncate) `path` and write the header at once. */
  static create(path: string, header: Omit<TraceHeader, 'formatMajor' | 'formatMinor'>, opts: TraceWriterOptions = {}): TraceWriter {
    const { formatMajor: _a, formatMinor: _b, ...rest } = header as TraceHeader;
    const body = new Packr({ useRecords: false }).pack(rest);
    const fd = fs.openSync(path, 'w');
    const w = new TraceWriter(fd, path, opts);
    w.sink.write(encodePrefix(FORMAT_MAJOR, FORMAT_MINOR, body.length, crc32(body)), body);
    return w;
  }

  get eventCount(): number {
    return this.count;
  }

  /** Append one event; returns its number (0-based). Its buffers are copied now. */
  append(event: TraceEvent): number {
    if (this.closed) throw new Error('TraceWriter.append after close');
    if (this.validate) {
      const why = checkEventShape(event);
      if (why) throw new TypeError(`TraceWriter.append: event ${this.count}: ${why}`);
    }
    const size = this.encoder.add(event);
    if (size > MAX_CHUNK_RAW / 2) throw new RangeError(`TraceWriter.append: event ${this.count} packs to ${size} bytes; put large bytes in blobs`);
    if (this.encoder.count === 1) this.pendingSince = Date.now();
    this.byKind[event.kind] = (this.byKind[event.kind] ?? 0) + 1;
    const n = this.count++;
    if (this.encoder.bytes >= this.chunkBytes) this.flush();
    else if (this.flushMs > 0 && Date.now() - this.pendingSince >= this.flushMs) this.flush();
    return n;
  }

  /** Small bytes inline (copied), larger in the blob store. */
  bytes(data: Uint8Array): Bytes {
    if (data.length < INLINE_LIMIT) return Uint8Array.prototype.slice.call(data) as Uint8Array;
    return this.addBlob(data);
  }

  /** Store bytes in the blob store (once per distinct content) and return the reference. */
  addBlob(data: Uint8Array): BlobRef {
    if (this.closed) throw new Error('TraceWriter.addBlob after close');
    return this.blobs.add(data);
  }

  /**
   * The blob for content named by a caller's key (e.g. "dev:ino:mtime:size" of a mapped file): when
   * the key was seen, the earlier reference is returned without loading or hashing the bytes again.
   */
  addBlobKeyed(key: string, load: () => Uint8Array): BlobRef {
    const hit = this.keyed.get(key);
    if (hit) return hit;
    const ref = this.addBlob(load());
    this.keyed.set(key, ref);
    return ref;
  }

  /** Set a footer extra (e.g. replay checkpoints); JSON-like values, bytes, BlobRefs. */
  setExtra(key: string, value: unknown): void {
    this.extras[key] = value;
  }

  /** Write the pending events as a chunk now. */
  flush(): void {
    if (this.encoder.count === 0) return;
    const count = this.encoder.count;
    const payload = this.encoder.finish();
    const { codec, stored } = compress(payload, this.codec, true);
    const first = this.count - count;
    const header = encodeFrameHeader({
      type: FrameType.Events,
      codec,
      storedLen: stored.length,
      rawLen: payload.length,
      payloadCrc: crc32(stored),
      count,
      first,
      hash: '',
    });
    const offset = this.sink.write(header, stored);
    this.chunks.push({ offset, first, count, rawLen: payload.length, storedLen: stored.length });
  }

  private flushIfStale(): void {
    if (!this.closed && this.encoder.count > 0 && Date.now() - this.pendingSince >= this.flushMs) this.flush();
  }

  /** Flush, write the footer index and trailer, close the file. complete=false marks an interrupted recording. */
  close(opts: { complete: boolean; reason?: string }): void {
    if (this.closed) return;
    this.flush();
    if (this.timer) clearInterval(this.timer);
    this.closed = true;
    const body = encodeFooter({
      complete: opts.complete,
      reason: opts.reason,
      eventCount: this.count,
      chunks: this.chunks,
      blobs: this.blobs.index,
      eventsByKind: this.byKind,
      extras: this.extras,
    });
    const { codec, stored } = compress(body, this.codec, true);
    const header = encodeFrameHeader({ type: FrameType.Footer, codec, storedLen: stored.length, rawLen: body.length, payloadCrc: crc32(stored), count: 0, first: 0, hash: '' });
    const at = this.sink.write(header, stored);
    this.sink.write(encodeTrailer(at, header.length + stored.length));
    fs.closeSync(this.fd);
  }

  /** Close the file without a footer, as a killed writer leaves it (for tests and emergencies). */
  abandon(): void {
    if (this.closed) return;
    if (this.timer) clearInterval(this.timer);
    this.closed = true;
    fs.closeSync(this.fd);
  }

  /** Blob store figures so far. */
  blobStats(): { blobs: number; rawBytes: number; storedBytes: number; dedupHits: number } {
    return { blobs: this.blobs.index.size, rawBytes: this.blobs.rawBytes, storedBytes: this.blobs.storedBytes, dedupHits: this.blobs.dedupHits };
  }
}
