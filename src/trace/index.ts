// The trace layer's public surface.
export * from './schema.ts';
export { TraceFormatError } from './errors.ts';
export { TraceWriter, INLINE_LIMIT, type TraceWriterOptions } from './writer.ts';
export { TraceReader, type TraceStats } from './reader.ts';
export { Codec, type CodecChoice, DEFAULT_CODEC, DEFAULT_BLOB_CODEC } from './codec.ts';
