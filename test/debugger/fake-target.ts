// A DebugTarget with made-up state, for testing the protocol server without a replay: two
// threads, a few mapped pages, scripted stops, and a log of what the server asked for.
import type { DebugTarget, ResumeRequest, Stop, WatchKind } from '../../src/debugger/target.ts';

export interface Mapped {
  start: number;
  bytes: Uint8Array;
}

export class FakeTarget implements DebugTarget {
  readonly pid = 4242;
  readonly execPath = '/home/someone/prog';
  liveThreads = [4242, 4243];
  memory: Mapped[] = [];
  files = new Map<string, Uint8Array>();
  auxvBytes = Uint8Array.from([6, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  /** What resume() answers, in order; a function is called with the request. */
  stops: (Stop | ((req: ResumeRequest) => Stop | Promise<Stop>))[] = [];
  calls: string[] = [];
  resumes: ResumeRequest[] = [];
  interrupted = 0;
  closed = false;
  private wakeInterrupt: (() => void) | null = null;

  threads(): number[] {
    return [...this.liveThreads];
  }

  /** Register images whose user_regs_struct slot i is (tid << 16) + i; FXSAVE byte k is k. */
  registers(tid: number): { regs: Uint8Array; fxsave: Uint8Array } {
    if (!this.liveThreads.includes(tid)) throw new Error(`no thread ${tid}`);
    const regs = new Uint8Array(216);
    const dv = new DataView(regs.buffer);
    for (let i = 0; i < 27; i++) dv.setBigUint64(i * 8, BigInt(tid) * 65536n + BigInt(i), true);
    return { regs, fxsave: Uint8Array.from({ length: 512 }, (_, k) => k & 0xff) };
  }

  readMemory(addr: number, length: number): Uint8Array {
    const out: number[] = [];
    for (let a = addr; a < addr + length; a++) {
      const m = this.memory.find((r) => a >= r.start && a < r.start + r.bytes.length);
      if (!m) break;
      out.push(m.bytes[a - m.start]);
    }
    return Uint8Array.from(out);
  }

  auxv(): Uint8Array {
    return this.auxvBytes;
  }

  file(path: string): Uint8Array | undefined {
    return this.files.get(path);
  }

  setBreakpoint(address: number): void {
    this.calls.push(`setBreakpoint ${address.toString(16)}`);
  }

  removeBreakpoint(address: number): void {
    this.calls.push(`removeBreakpoint ${address.toString(16)}`);
  }

  setWatchpoint(address: number, length: number, kind: WatchKind): void {
    this.calls.push(`setWatchpoint ${address.toString(16)} ${length} ${kind}`);
  }

  removeWatchpoint(address: number, length: number, kind: WatchKind): void {
    this.calls.push(`removeWatchpoint ${address.toString(16)} ${length} ${kind}`);
  }

  async resume(request: ResumeRequest): Promise<Stop> {
    this.resumes.push(request);
    const next = this.stops.shift();
    if (!next) throw new Error('no more scripted stops');
    return typeof next === 'function' ? next(request) : next;
  }

  /** A scripted stop that runs until interrupt() is called. */
  untilInterrupted(tid: number): () => Promise<Stop> {
    return () => new Promise<Stop>((resolve) => (this.wakeInterrupt = () => resolve({ tid, cause: { kind: 'interrupted' } })));
  }

  interrupt(): void {
    this.interrupted++;
    const wake = this.wakeInterrupt;
    this.wakeInterrupt = null;
    wake?.();
  }

  close(): void {
    this.closed = true;
  }
}
