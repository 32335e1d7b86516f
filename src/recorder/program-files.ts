// Whole files of the executables and libraries a recorded program mapped, kept in the trace so a
// debugger on another machine can read their symbols and debug info (the mappings themselves
// hold only the loaded segments). Stored once per file in the blob store, indexed in the footer.
import { readFileSync, statSync } from 'node:fs';
import type { TraceWriter } from '../trace/writer.ts';
import type { Bytes } from '../trace/schema.ts';

/** Footer extra naming each kept file: path -> its bytes (a blob). */
export const PROGRAM_FILES_EXTRA = 'files';
const PROT_EXEC = 4;
/** Larger files are not kept (a debugger then needs the file on the analysing machine). */
const MAX_FILE = 512 * 1024 * 1024;

export class ProgramFiles {
  private readonly files = new Map<string, Bytes>();

  /** A mapping seen in the trace: keep its file if it is executable code. */
  noteMapping(w: TraceWriter, name: string, prot: number): void {
    if (prot & PROT_EXEC && name.startsWith('/')) this.keep(w, name);
  }

  private keep(w: TraceWriter, path: string): void {
    if (this.files.has(path)) return;
    try {
      const st = statSync(path);
      if (!st.isFile() || st.size > MAX_FILE) return;
      this.files.set(path, w.addBlobKeyed(`${st.dev}:${st.ino}:${st.mtimeMs}:${st.size}`, () => readFileSync(path)));
    } catch {
      // Gone or unreadable since it was mapped: the trace still replays, only debugging lacks it.
    }
  }

  /** Writes the index into the footer (before the writer closes). */
  finish(w: TraceWriter): void {
    w.setExtra(PROGRAM_FILES_EXTRA, Object.fromEntries(this.files));
  }
}
