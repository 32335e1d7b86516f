// The content-addressed blob store of a trace, writer side: each distinct byte string is written
// once as a Blob frame named by its sha256; adding the same bytes again returns the same BlobRef.
import { createHash } from 'node:crypto';
import type { BlobRef } from './schema.ts';
import { compress, type CodecChoice } from './codec.ts';
import { crc32 } from './checksum.ts';
import { encodeFrameHeader, FrameType } from './layout.ts';
import type { FileSink } from './sink.ts';

export interface BlobLocation {
  offset: number;
  size: number;
  storedLen: number;
}

export function sha256hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export class BlobStoreWriter {
  readonly index = new Map<string, BlobLocation>();
  /** Raw bytes of distinct blobs, and what they took on disk (frame headers included). */
  rawBytes = 0;
  storedBytes = 0;
  /** add() calls answered from the index. */
  dedupHits = 0;

  constructor(private sink: FileSink, private codec: CodecChoice) {}

  /** Register an existing blob (when a writer continues a file). */
  adopt(hash: string, loc: BlobLocation): void {
    this.index.set(hash, loc);
  }

  add(data: Uint8Array): BlobRef {
    if (data.length > 0xffffffff) throw new RangeError(`blob of ${data.length} bytes exceeds the 4 GiB frame limit`);
    const hash = sha256hex(data);
    if (this.index.has(hash)) {
      this.dedupHits++;
      return { blob: hash, size: data.length };
    }
    const { codec, stored } = compress(data, this.codec, true);
    const header = encodeFrameHeader({
      type: FrameType.Blob,
      codec,
      storedLen: stored.length,
      rawLen: data.length,
      payloadCrc: crc32(stored),
      count: 0,
      first: 0,
      hash,
    });
    const offset = this.sink.write(header, stored);
    this.index.set(hash, { offset, size: data.length, storedLen: stored.length });
    this.rawBytes += data.length;
    this.storedBytes += header.length + stored.length;
    return { blob: hash, size: data.length };
  }
}
