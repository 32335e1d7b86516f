// Opening a trace for a command: a missing or corrupt file becomes a one-line user error.
import { existsSync } from 'node:fs';
import { TraceReader } from '../trace/reader.ts';
import { TraceFormatError } from '../trace/errors.ts';
import { UserError } from './errors.ts';

export function openTrace(path: string | undefined, command: string): TraceReader {
  if (path === undefined) throw new UserError(`${command}: which trace? (usage: replay-anywhere ${command} FILE)`, 2);
  if (!existsSync(path)) throw new UserError(`${command}: no such file: ${path}`);
  try {
    return TraceReader.open(path);
  } catch (err) {
    if (err instanceof TraceFormatError) throw new UserError(`${command}: ${err.message}`);
    throw new UserError(`${command}: cannot read ${path}: ${(err as Error).message}`);
  }
}
