// Fixed-size binary pieces of a .rrz file: the file prefix, frame headers, the trailer.
// docs/trace-format.md draws the layout. All integers little-endian.
import { crc32 } from './checksum.ts';

/** "\x89RRZ\r\n\x1a\n": the high byte and CR/LF catch text-mode mangling, as PNG's magic does. */
export const MAGIC = Uint8Array.from([0x89, 0x52, 0x52, 0x5a, 0x0d, 0x0a, 0x1a, 0x0a]);

/** magic[8] major u16 minor u16 headerLen u32 headerCrc u32 flags u32; then the msgpack header. */
export const PREFIX_SIZE = 24;
/** The header record is small (CPUID leaves, argv...): anything larger is not a header. */
export const MAX_HEADER_SIZE = 16 << 20;

export const enum FrameType {
  Events = 1,
  Blob = 2,
  Footer = 3,
}

/** 'RZfr' */
export const FRAME_MAGIC = 0x72665a52;
export const FRAME_HEADER_SIZE = 72;

/** Largest raw event chunk a reader accepts (the writer aims at ~1 MiB; one huge event may exceed). */
export const MAX_CHUNK_RAW = 256 << 20;
export const MAX_FOOTER_RAW = 512 << 20;

export interface FrameHeader {
  type: number;
  codec: number;
  storedLen: number;
  rawLen: number;
  payloadCrc: number;
  /** Events in an event chunk; 0 otherwise. */
  count: number;
  /** First event number of an event chunk; 0 otherwise. */
  first: number;
  /** sha256 of a blob's raw bytes, hex; '' otherwise. */
  hash: string;
}

// Frame header, 72 bytes:
//   0 magic u32 | 4 type u8 | 5 codec u8 | 6 flags u16 | 8 storedLen u32 | 12 rawLen u32
//  16 payloadCrc u32 | 20 count u32 | 24 first u64 | 32 sha256[32] | 64 reserved u32 | 68 headerCrc u32
export function encodeFrameHeader(h: FrameHeader): Uint8Array {
  const b = new Uint8Array(FRAME_HEADER_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, FRAME_MAGIC, true);
  v.setUint8(4, h.type);
  v.setUint8(5, h.codec);
  v.setUint32(8, h.storedLen, true);
  v.setUint32(12, h.rawLen, true);
  v.setUint32(16, h.payloadCrc, true);
  v.setUint32(20, h.count, true);
  v.setBigUint64(24, BigInt(h.first), true);
  if (h.hash) b.set(Buffer.from(h.hash, 'hex'), 32);
  v.setUint32(68, crc32(b.subarray(0, 68)), true);
  return b;
}

/** Decode a frame header; returns a reason string when it is not one. */
export function decodeFrameHeader(b: Uint8Array): FrameHeader | string {
  if (b.length < FRAME_HEADER_SIZE) return `truncated frame header (${b.length} of ${FRAME_HEADER_SIZE} bytes)`;
  const v = new DataView(b.buffer, b.byteOffset, FRAME_HEADER_SIZE);
  if (v.getUint32(0, true) !== FRAME_MAGIC) return 'no frame magic';
  if (v.getUint32(68, true) !== crc32(b.subarray(0, 68))) return 'frame header checksum mismatch';
  const type = v.getUint8(4);
  if (type !== FrameType.Events && type !== FrameType.Blob && type !== FrameType.Footer) return `unknown frame type ${type}`;
  const first = v.getBigUint64(24, true);
  if (first > BigInt(Number.MAX_SAFE_INTEGER)) return `absurd first event number ${first}`;
  return {
    type,
    codec: v.getUint8(5),
    storedLen: v.getUint32(8, true),
    rawLen: v.getUint32(12, true),
    payloadCrc: v.getUint32(16, true),
    count: v.getUint32(20, true),
    first: Number(first),
    hash: type === FrameType.Blob ? Buffer.from(b.subarray(32, 64)).toString('hex') : '',
  };
}

/** "RRZ-END\0" footerOffset u64 footerFrameLen u32 crc u32 (of the first 20 bytes). */
export const TRAILER_MAGIC = Uint8Array.from([0x52, 0x52, 0x5a, 0x2d, 0x45, 0x4e, 0x44, 0x00]);
export const TRAILER_SIZE = 24;

export function encodeTrailer(footerOffset: number, footerLen: number): Uint8Array {
  const b = new Uint8Array(TRAILER_SIZE);
  const v = new DataView(b.buffer);
  b.set(TRAILER_MAGIC, 0);
  v.setBigUint64(8, BigInt(footerOffset), true);
  v.setUint32(16, footerLen, true);
  v.setUint32(20, crc32(b.subarray(0, 20)), true);
  return b;
}

/** The footer frame's offset and length, or null when the bytes are not a valid trailer. */
export function decodeTrailer(b: Uint8Array): { footerOffset: number; footerLen: number } | null {
  if (b.length !== TRAILER_SIZE) return null;
  for (let i = 0; i < TRAILER_MAGIC.length; i++) if (b[i] !== TRAILER_MAGIC[i]) return null;
  const v = new DataView(b.buffer, b.byteOffset, TRAILER_SIZE);
  if (v.getUint32(20, true) !== crc32(b.subarray(0, 20))) return null;
  const off = v.getBigUint64(8, true);
  if (off > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return { footerOffset: Number(off), footerLen: v.getUint32(16, true) };
}

export function encodePrefix(major: number, minor: number, headerLen: number, headerCrc: number): Uint8Array {
  const b = new Uint8Array(PREFIX_SIZE);
  const v = new DataView(b.buffer);
  b.set(MAGIC, 0);
  v.setUint16(8, major, true);
  v.setUint16(10, minor, true);
  v.setUint32(12, headerLen, true);
  v.setUint32(16, headerCrc, true);
  return b;
}
