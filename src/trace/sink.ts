// Append-only synchronous file output that knows its position. Synchronous writes keep the
// recorder simple and signal-safe: when write returns, the bytes are the kernel's.
import * as fs from 'node:fs';

export class FileSink {
  position: number;

  constructor(readonly fd: number, position = 0) {
    this.position = position;
  }

  write(...parts: Uint8Array[]): number {
    const at = this.position;
    for (const p of parts) {
      let done = 0;
      while (done < p.length) done += fs.writeSync(this.fd, p, done, p.length - done, this.position + done);
      this.position += p.length;
    }
    return at;
  }
}
