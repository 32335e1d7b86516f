// Event chunks: many events packed with msgpackr's records extension, decodable on their own.
//
// msgpackr "structures" (the key lists of repeated shapes) make records small: a syscall event costs
// one byte of shape id instead of its key names. Shared structures must be known to whoever decodes,
// so they are per chunk: the encoder starts every chunk with an empty list, and the chunk payload
// stores the list it ended with, ahead of the events. A chunk therefore decodes alone (random access)
// and a chunk that reached the disk is complete (crash recovery). Payload layout:
//   structuresLen u32 | structures (msgpack array of key arrays) | event 0 | event 1 | ...
import { Packr, Unpackr } from 'msgpackr';
import type { TraceEvent } from './schema.ts';
import { checkEvent } from './validate.ts';

const plain = new Packr({ useRecords: false });

export class ChunkEncoder {
  private structures: string[][] = [];
  private packr = new Packr({ useRecords: true, structures: this.structures as unknown as object[] });
  private parts: Uint8Array[] = [];
  /** Raw bytes of the packed events so far. */
  bytes = 0;
  count = 0;

  /** Pack one event now (later changes to its buffers do not affect the trace); returns its size. */
  add(event: TraceEvent): number {
    const packed = this.packr.pack(event);
    const copy = Uint8Array.prototype.slice.call(packed) as Uint8Array;
    this.parts.push(copy);
    this.bytes += copy.length;
    this.count++;
    return copy.length;
  }

  /** The chunk payload; the encoder starts afresh. */
  finish(): Uint8Array {
    const structs = plain.pack(this.structures.map((s) => Array.from(s)));
    const out = new Uint8Array(4 + structs.length + this.bytes);
    new DataView(out.buffer).setUint32(0, structs.length, true);
    out.set(structs, 4);
    let at = 4 + structs.length;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    this.structures = [];
    this.packr = new Packr({ useRecords: true, structures: this.structures as unknown as object[] });
    this.parts = [];
    this.bytes = 0;
    this.count = 0;
    return out;
  }
}

/**
 * Decode a chunk payload holding `count` events. Throws a plain Error with the reason (and the
 * index of the bad event); the reader adds the chunk number and offset.
 */
export function decodeChunk(payload: Uint8Array, count: number): TraceEvent[] {
  if (payload.length < 4) throw new Error('chunk payload shorter than its structures length');
  const buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  const slen = buf.readUInt32LE(0);
  if (slen > buf.length - 4) throw new Error(`structures length ${slen} exceeds the chunk (${buf.length} bytes)`);
  let structures: unknown;
  try {
    structures = new Unpackr({ useRecords: false }).unpack(buf.subarray(4, 4 + slen));
  } catch (e) {
    throw new Error(`undecodable structures (${(e as Error).message})`);
  }
  if (!Array.isArray(structures) || structures.length > 4096 || !structures.every((s) => Array.isArray(s) && s.length <= 4096 && s.every((k) => typeof k === 'string')))
    throw new Error('structures are not a list of key lists');
  const unpackr = new Unpackr({ useRecords: true, structures: structures as object[], int64AsType: 'bigint', mapsAsObjects: true });
  const events: TraceEvent[] = [];
  const body = buf.subarray(4 + slen);
  let failure: string | undefined;
  try {
    unpackr.unpackMultiple(body, (value: unknown) => {
      if (events.length >= count) {
        failure = `more events than the ${count} the frame declares`;
        return false;
      }
      const why = checkEvent(value);
      if (why) {
        failure = `event ${events.length} of the chunk: ${why}`;
        return false;
      }
      events.push(value as TraceEvent);
      return undefined;
    });
  } catch (e) {
    throw new Error(`undecodable event ${events.length} of the chunk (${(e as Error).message})`);
  }
  if (failure) throw new Error(failure);
  if (events.length !== count) throw new Error(`chunk holds ${events.length} events, frame declares ${count}`);
  return events;
}
