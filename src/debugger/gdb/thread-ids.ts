// Thread ids on the wire: `tid` in hex, or `p<pid>.<tid>` once both sides agreed on multiprocess.
// -1 means all, 0 means any; `p<pid>` alone means all threads of that process.

export const ALL = -1;
export const ANY = 0;

export interface ThreadRef {
  /** Undefined when the id had no `p` part. */
  pid?: number;
  tid: number;
}

function part(s: string): number | undefined {
  if (s === '-1') return ALL;
  if (!/^[0-9a-fA-F]+$/.test(s)) return undefined;
  const v = Number.parseInt(s, 16);
  return Number.isSafeInteger(v) ? v : undefined;
}

/** Parse a thread id, or undefined when it is malformed. */
export function parseThreadId(s: string): ThreadRef | undefined {
  if (s.startsWith('p')) {
    const dot = s.indexOf('.');
    const pid = part(dot < 0 ? s.slice(1) : s.slice(1, dot));
    const tid = dot < 0 ? ALL : part(s.slice(dot + 1));
    if (pid === undefined || tid === undefined) return undefined;
    return { pid, tid };
  }
  const tid = part(s);
  return tid === undefined ? undefined : { tid };
}

export function formatThreadId(tid: number, pid: number | undefined): string {
  return pid === undefined ? tid.toString(16) : `p${pid.toString(16)}.${tid.toString(16)}`;
}
