// The one error a trace reader throws for a file it cannot trust: bad magic, a newer format, a
// truncated or corrupted frame, a record without the schema's shape. The message says what and
// where (chunk number, byte offset), so a user can tell a damaged file from a bug.
export class TraceFormatError extends Error {
  constructor(message: string, readonly path?: string, readonly offset?: number) {
    super(path ? `${path}: ${message}` : message);
    this.name = 'TraceFormatError';
  }
}
