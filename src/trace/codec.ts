// Compression of one frame payload (an event chunk, a blob, the footer). Each frame names its codec,
// so a reader handles every codec whatever the writer chose; the writer's default was picked by
// measurement (bench/trace.ts, docs/trace.md).
import * as zlib from 'node:zlib';

export const enum Codec {
  Raw = 0,
  DeflateRaw = 1,
  Gzip = 2,
  Brotli = 3,
}

export const CODEC_NAMES: Record<number, string> = { 0: 'raw', 1: 'deflate-raw', 2: 'gzip', 3: 'brotli' };

/** What the writer uses: a codec and its level (zlib level 0-9, brotli quality 0-11). */
export interface CodecChoice {
  codec: Codec;
  level: number;
}

/** Event chunks: brotli 5 (bench/trace.ts: ~29x on the realistic mix at ~200 MB/s; docs/trace.md). */
export const DEFAULT_CODEC: CodecChoice = { codec: Codec.Brotli, level: 5 };
/** Blobs (mapped files): brotli 3, ~2.4x on ELF files at ~80 MB/s; quality 5 gains 9% at a third of the speed. */
export const DEFAULT_BLOB_CODEC: CodecChoice = { codec: Codec.Brotli, level: 3 };

/**
 * The largest raw/stored ratio a frame may claim. Deflate cannot exceed ~1032:1; the writer falls
 * back to deflate-raw for anything brotli squeezes harder, so a reader can bound every allocation by
 * the stored size it has actually read from the file.
 */
export const MAX_RATIO = 1032;
const RATIO_SLACK = 1024;

export function maxRawFor(storedLen: number): number {
  return storedLen * MAX_RATIO + RATIO_SLACK;
}

function deflate(data: Uint8Array, codec: Codec, level: number): Buffer {
  switch (codec) {
    case Codec.DeflateRaw:
      return zlib.deflateRawSync(data, { level });
    case Codec.Gzip:
      return zlib.gzipSync(data, { level });
    case Codec.Brotli:
      return zlib.brotliCompressSync(data, {
        params: {
          [zlib.constants.BROTLI_PARAM_QUALITY]: level,
          [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
        },
      });
    default:
      throw new Error(`unknown codec ${codec}`);
  }
}

/**
 * Compress a payload. Returns the codec actually used: raw when compression does not pay (`allowRaw`),
 * deflate-raw when the chosen codec would exceed MAX_RATIO.
 */
export function compress(data: Uint8Array, choice: CodecChoice, allowRaw: boolean): { codec: Codec; stored: Uint8Array } {
  if (choice.codec === Codec.Raw || data.length === 0) return { codec: Codec.Raw, stored: data };
  let codec = choice.codec;
  let stored: Uint8Array = deflate(data, codec, choice.level);
  if (maxRawFor(stored.length) < data.length) {
    codec = Codec.DeflateRaw;
    stored = deflate(data, codec, 9);
  }
  if (allowRaw && stored.length >= data.length) return { codec: Codec.Raw, stored: data };
  return { codec, stored };
}

/**
 * Decompress a payload to exactly rawLen bytes. Never allocates more than rawLen (zlib's
 * maxOutputLength). Throws a plain Error with a short reason; callers add where.
 */
export function decompress(stored: Uint8Array, codec: number, rawLen: number): Uint8Array {
  let out: Buffer;
  const opts = { maxOutputLength: Math.max(1, rawLen) };
  try {
    switch (codec) {
      case Codec.Raw:
        if (stored.length !== rawLen) throw new Error(`raw frame of ${stored.length} bytes claims ${rawLen}`);
        return stored;
      case Codec.DeflateRaw:
        out = zlib.inflateRawSync(stored, opts);
        break;
      case Codec.Gzip:
        out = zlib.gunzipSync(stored, opts);
        break;
      case Codec.Brotli:
        out = zlib.brotliDecompressSync(stored, opts);
        break;
      default:
        throw new Error(`unknown codec ${codec}`);
    }
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) throw new Error(`decompressed data exceeds the declared ${rawLen} bytes`);
    throw new Error(`corrupted ${CODEC_NAMES[codec] ?? 'compressed'} data (${err.message})`);
  }
  if (out.length !== rawLen) throw new Error(`decompressed to ${out.length} bytes, frame declares ${rawLen}`);
  return out;
}
