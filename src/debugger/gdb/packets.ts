// GDB remote serial protocol framing: `$payload#cs` packets, their checksum, the escaping of
// binary data (`}` then the byte XOR 0x20 for `$ # } *`), run-length encoding (`X*n`: X repeated
// n-29 more times), the `+`/`-` acknowledgements until QStartNoAckMode turns them off, and the
// interrupt byte 0x03 that gdb sends outside any packet while the target runs.
//
// PacketLink is socket-agnostic: feed it what the peer sent, it calls back with whole packets and
// writes through the function it was given, so tests drive it byte by byte.

const DOLLAR = 0x24;
const HASH = 0x23;
const ESCAPE = 0x7d;
const STAR = 0x2a;
const PLUS = 0x2b;
const MINUS = 0x2d;
export const INTERRUPT = 0x03;

/** Modulo-256 sum of the bytes, as the two lower-case hex digits that follow `#`. */
export function checksum(bytes: Uint8Array): string {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return sum.toString(16).padStart(2, '0');
}

function needsEscape(b: number): boolean {
  return b === DOLLAR || b === HASH || b === ESCAPE || b === STAR;
}

/** Binary data as it may appear inside a packet: `$ # } *` become `}` and the byte XOR 0x20. */
export function escapeBinary(data: Uint8Array): Buffer {
  let extra = 0;
  for (const b of data) if (needsEscape(b)) extra++;
  if (extra === 0) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const out = Buffer.allocUnsafe(data.length + extra);
  let o = 0;
  for (const b of data) {
    if (needsEscape(b)) {
      out[o++] = ESCAPE;
      out[o++] = b ^ 0x20;
    } else {
      out[o++] = b;
    }
  }
  return out;
}

/** The inverse of escapeBinary. A trailing lone `}` is malformed. */
export function unescapeBinary(data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(data.length);
  let o = 0;
  for (let i = 0; i < data.length; i++) {
    const b = data[i];
    if (b === ESCAPE) {
      if (i + 1 >= data.length) throw new ProtocolError('binary data ends with a lone escape character');
      out[o++] = data[++i] ^ 0x20;
    } else {
      out[o++] = b;
    }
  }
  return out.subarray(0, o);
}

// A run is written as the character, `*`, and a count character c meaning c-29 more copies.
// Counts whose character would be `#` or `$` (6 and 7 more) are not allowed; above 126 neither.
const MIN_REPEAT = 3; // `*c` is two bytes: fewer repeats gain nothing
const MAX_REPEAT = 126 - 29;

function repeatAllowed(n: number): boolean {
  const c = n + 29;
  return c !== HASH && c !== DOLLAR && c >= 32 && c <= 126;
}

/** Run-length encode packet data. An escape pair is copied as it is: a run repeats a plain character. */
export function encodeRunLength(data: Uint8Array): Buffer {
  const out: number[] = [];
  let i = 0;
  while (i < data.length) {
    const b = data[i];
    if (b === ESCAPE && i + 1 < data.length) {
      out.push(b, data[i + 1]);
      i += 2;
      continue;
    }
    let run = 1;
    while (i + run < data.length && data[i + run] === b) run++;
    i += run;
    out.push(b);
    let more = run - 1;
    while (more >= MIN_REPEAT) {
      let n = Math.min(more, MAX_REPEAT);
      while (!repeatAllowed(n)) n--;
      out.push(STAR, n + 29);
      more -= n;
      if (more > 0) {
        out.push(b); // the next run starts from a plain copy
        more--;
      }
    }
    for (; more > 0; more--) out.push(b);
  }
  return Buffer.from(out);
}

/** Expand `X*c` runs. A `*` with nothing before it or no count after it is malformed. */
export function decodeRunLength(data: Uint8Array): Buffer {
  if (!data.includes(STAR)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const out: number[] = [];
  for (let i = 0; i < data.length; i++) {
    const b = data[i];
    if (b !== STAR) {
      out.push(b);
      continue;
    }
    if (out.length === 0 || i + 1 >= data.length) throw new ProtocolError('run-length marker without a character to repeat or a count');
    const n = data[++i] - 29;
    if (n < 0) throw new ProtocolError(`run-length count character 0x${data[i].toString(16)} is below 29`);
    const prev = out[out.length - 1];
    for (let k = 0; k < n; k++) out.push(prev);
  }
  return Buffer.from(out);
}

/** A whole frame, `$data#cs`, for payload bytes that are already escaped where needed. */
export function frame(payload: Uint8Array | string): Buffer {
  const data = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload;
  return Buffer.concat([Buffer.from('$'), data, Buffer.from(`#${checksum(data)}`)]);
}

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

export type Incoming =
  /** A packet whose checksum matched, run-length expanded (escapes are left for the handler: only binary fields carry them). */
  | { kind: 'packet'; data: Buffer }
  /** A frame whose checksum did not match (the peer is asked to resend in ack mode). */
  | { kind: 'bad-checksum'; data: Buffer }
  | { kind: 'ack' }
  | { kind: 'nack' }
  | { kind: 'interrupt' };

/** Splits a byte stream into packets, acks and interrupts, whatever the read boundaries. */
export class PacketDecoder {
  private buf: Buffer = Buffer.alloc(0);
  private inPacket = false;

  /** Consume bytes; returns what they completed, in order. */
  feed(chunk: Uint8Array): Incoming[] {
    const out: Incoming[] = [];
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : Buffer.from(chunk);
    let i = 0;
    while (i < this.buf.length) {
      if (!this.inPacket) {
        const b = this.buf[i++];
        if (b === DOLLAR) this.inPacket = true;
        else if (b === PLUS) out.push({ kind: 'ack' });
        else if (b === MINUS) out.push({ kind: 'nack' });
        else if (b === INTERRUPT) out.push({ kind: 'interrupt' });
        // Anything else between packets is noise: ignored as gdbserver does.
        continue;
      }
      const hash = this.buf.indexOf(HASH, i);
      if (hash < 0 || hash + 2 >= this.buf.length) break; // the rest has not arrived yet
      const raw = this.buf.subarray(i, hash);
      const sent = this.buf.toString('latin1', hash + 1, hash + 3).toLowerCase();
      i = hash + 3;
      this.inPacket = false;
      if (sent !== checksum(raw)) {
        out.push({ kind: 'bad-checksum', data: Buffer.from(raw) });
        continue;
      }
      try {
        out.push({ kind: 'packet', data: Buffer.from(decodeRunLength(raw)) });
      } catch {
        out.push({ kind: 'bad-checksum', data: Buffer.from(raw) });
      }
    }
    this.buf = this.buf.subarray(i);
    return out;
  }

  /** Whether a packet has started and not ended yet. */
  get pending(): boolean {
    return this.inPacket;
  }
}

export interface PacketLinkOptions {
  /** Write bytes to the peer. */
  write(bytes: Buffer): void;
  /** A complete, checksum-verified packet (already acknowledged in ack mode). */
  onPacket(data: Buffer): void;
  /** The interrupt byte (gdb's Ctrl-C) outside a packet. */
  onInterrupt(): void;
  /** Every frame in both directions, for a packet log. */
  log?(direction: 'recv' | 'send', text: string): void;
  /** Run-length encode what is sent (gdb always accepts it). Default true. */
  runLength?: boolean;
}

/** One end of the protocol: framing, acks (and their end with no-ack mode), retransmission. */
export class PacketLink {
  private readonly decoder = new PacketDecoder();
  private noAck = false;
  private lastSent: Buffer | null = null;

  constructor(private readonly opts: PacketLinkOptions) {}

  get ackMode(): boolean {
    return !this.noAck;
  }

  /** Stop sending and expecting acks (after replying OK to QStartNoAckMode). */
  disableAcks(): void {
    this.noAck = true;
    this.lastSent = null;
  }

  feed(chunk: Uint8Array): void {
    for (const item of this.decoder.feed(chunk)) {
      switch (item.kind) {
        case 'packet':
          if (!this.noAck) this.opts.write(Buffer.from('+'));
          this.opts.log?.('recv', item.data.toString('latin1'));
          this.opts.onPacket(item.data);
          break;
        case 'bad-checksum':
          this.opts.log?.('recv', `(bad checksum) ${item.data.toString('latin1')}`);
          if (!this.noAck) this.opts.write(Buffer.from('-'));
          break;
        case 'nack':
          if (!this.noAck && this.lastSent) this.opts.write(this.lastSent);
          break;
        case 'ack':
          this.lastSent = null;
          break;
        case 'interrupt':
          this.opts.log?.('recv', '^C');
          this.opts.onInterrupt();
          break;
      }
    }
  }

  /** Send one packet; `payload` must already have its binary parts escaped. */
  send(payload: Uint8Array | string): void {
    const data = typeof payload === 'string' ? Buffer.from(payload, 'latin1') : Buffer.from(payload);
    this.opts.log?.('send', data.length > 400 ? `${data.toString('latin1', 0, 400)}... (${data.length} bytes)` : data.toString('latin1'));
    const bytes = frame(this.opts.runLength === false ? data : encodeRunLength(data));
    if (!this.noAck) this.lastSent = bytes;
    this.opts.write(bytes);
  }
}
