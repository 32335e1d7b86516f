// The GDB remote protocol server: one gdb connection over a DebugTarget (a replay that moves
// forwards and backwards). All-stop mode: gdb sends a packet, the server answers; a resume
// (vCont, c, s, bc, bs) is answered with a stop reply when the target stops, and the interrupt
// byte (gdb's Ctrl-C) meanwhile asks the target to stop.
//
// The past cannot change: register and memory writes are refused with `E.<message>`. gdb 13
// shows the message for registers ("Could not write register "rax"; remote failure reply
// 'E.cannot write register rax: this is a replay...'") but only "Cannot access memory at address"
// for memory, so every refusal is also written to the terminal through options.notice.
// Breakpoints and watchpoints go to the target (no guest memory is patched).
import type { Duplex } from 'node:stream';
import type { DebugTarget, ResumeRequest, Stop, WatchKind } from '../target.ts';
import { HostIo } from './hostio.ts';
import { escapeBinary, PacketLink, unescapeBinary } from './packets.ts';
import { encodeRegisters, GDB_REGISTERS, readRegister, toHex, type RegisterState } from './registers.ts';
import { stopReply } from './stop-reply.ts';
import { featureDocument } from './target-description.ts';
import { ALL, ANY, formatThreadId, parseThreadId, type ThreadRef } from './thread-ids.ts';

/** The largest packet gdb may send us (qSupported PacketSize); gdb also sizes its reads by it. */
export const PACKET_SIZE = 0x10000;

/** Why the session ended. */
export type SessionEnd = 'detached' | 'killed' | 'disconnected';

export interface GdbServerOptions {
  /** Every packet in both directions (REPLAY_ANYWHERE_GDB_LOG). */
  log?(direction: 'recv' | 'send', text: string): void;
  /** A message for the person at the terminal, for refusals gdb shows without their reason. */
  notice?(message: string): void;
}

/** The message every refused write carries. */
export const READ_ONLY_MESSAGE = 'this is a replay: the recorded past cannot be changed';

type Reply = string | Buffer | null;

const WATCH_KINDS: Record<string, WatchKind> = { '2': 'write', '3': 'read', '4': 'access' };

/** `E.text` with only what is safe inside a packet. */
function errorReply(message: string): string {
  return `E.${message.replace(/[^\x20-\x7e]|[#$}*]/g, '?')}`;
}

function hexNumber(s: string | undefined): number | undefined {
  if (s === undefined || !/^[0-9a-fA-F]{1,16}$/.test(s)) return undefined;
  const v = BigInt(`0x${s}`);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined;
}

/** Serve one gdb connection until gdb detaches, kills or disconnects. */
export function serveGdb(target: DebugTarget, socket: Duplex, options: GdbServerOptions = {}): Promise<SessionEnd> {
  return new RemoteSession(target, socket, options).done;
}

class RemoteSession {
  readonly done: Promise<SessionEnd>;
  private finish!: (end: SessionEnd) => void;
  private ended = false;
  private readonly link: PacketLink;
  private readonly hostIo: HostIo;
  private readonly queue: Buffer[] = [];
  private busy = false;
  private running = false;
  private interruptPending = false;
  private afterReply: (() => void) | null = null;

  // What gdb announced in its qSupported.
  private gdbSwbreak = false;
  private gdbHwbreak = false;
  private multiprocess = false;

  /** Thread for register reads (Hg) and for resumes (Hc): a tid, or ANY/ALL meaning the stopped one. */
  private gThread = ANY;
  private cThread = ANY;
  private lastStop: Stop;
  private exited = false;

  private readonly breakpoints = new Map<number, { sw: number; hw: number }>();
  private readonly watchpoints = new Map<string, number>();

  constructor(private readonly target: DebugTarget, private readonly socket: Duplex, private readonly options: GdbServerOptions) {
    this.done = new Promise((resolve) => (this.finish = resolve));
    this.hostIo = new HostIo((path) => target.file(path));
    const first = target.threads()[0];
    this.lastStop = { tid: first ?? target.pid, cause: { kind: 'step' } };
    this.link = new PacketLink({
      write: (bytes) => {
        if (!this.ended) socket.write(bytes);
      },
      onPacket: (data) => {
        this.queue.push(data);
        void this.pump();
      },
      onInterrupt: () => this.interrupt(),
      log: options.log,
    });
    socket.on('data', (chunk: Buffer) => this.link.feed(chunk));
    socket.on('end', () => this.end('disconnected'));
    socket.on('close', () => this.end('disconnected'));
    socket.on('error', () => this.end('disconnected'));
  }

  private end(how: SessionEnd): void {
    if (this.ended) return;
    this.ended = true;
    // Let what was written reach gdb (the OK to D or vKill) before the connection closes.
    this.socket.end();
    if (this.running) {
      // The session is done only when the target no longer runs: the caller then closes it.
      this.endHow = how;
      this.target.interrupt();
    } else {
      this.finish(how);
    }
  }

  private endHow: SessionEnd | null = null;

  private interrupt(): void {
    if (this.running) this.target.interrupt();
    else if (this.busy) this.interruptPending = true;
    // Otherwise nothing runs: gdbserver ignores it too.
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0 && !this.ended) {
        const packet = this.queue.shift()!;
        let reply: Reply;
        try {
          reply = await this.handle(packet);
        } catch (err) {
          reply = errorReply((err as Error)?.message ?? String(err));
        }
        if (reply !== null && !this.ended) this.link.send(reply);
        const after = this.afterReply;
        this.afterReply = null;
        after?.();
      }
    } finally {
      this.busy = false;
      this.interruptPending = false;
    }
  }

  // ---- threads ----

  private alive(tid: number): boolean {
    return !this.exited && this.target.threads().includes(tid);
  }

  /** A thread named by Hg/Hc/T/vCont, checked against this process; ANY/ALL resolve later. */
  private threadFromRef(ref: ThreadRef): number | undefined {
    if (ref.pid !== undefined && ref.pid !== ALL && ref.pid !== ANY && ref.pid !== this.target.pid) return undefined;
    return ref.tid;
  }

  /** The stopped thread when `tid` is ANY/ALL, else `tid`. */
  private resolve(tid: number): number {
    return tid === ANY || tid === ALL ? this.lastStop.tid : tid;
  }

  private threadId(tid: number): string {
    return formatThreadId(tid, this.multiprocess ? this.target.pid : undefined);
  }

  private registersOf(tid: number): RegisterState {
    if (this.exited) throw new Error('the process has exited: no registers');
    if (!this.alive(tid)) throw new Error(`thread ${tid} is not alive here`);
    return this.target.registers(tid);
  }

  // ---- stops ----

  private stopReply(stop: Stop): string {
    return stopReply(stop, {
      swbreak: this.gdbSwbreak,
      hwbreak: this.gdbHwbreak,
      isHardwareBreakpoint: (address) => {
        const b = this.breakpoints.get(address);
        return b !== undefined && b.hw > 0 && b.sw === 0;
      },
      registers: (tid) => {
        try {
          return this.target.registers(tid);
        } catch {
          return undefined;
        }
      },
      threadId: (tid) => this.threadId(tid),
      exitSuffix: this.multiprocess ? `;process:${this.target.pid.toString(16)}` : '',
    });
  }

  private async resume(direction: ResumeRequest['direction'], step: boolean, tid: number): Promise<Reply> {
    if (this.exited) return this.stopReply(this.lastStop);
    const request: ResumeRequest = { direction, step, tid: this.resolve(tid) };
    this.running = true;
    let stop: Stop;
    try {
      const pending = this.target.resume(request);
      if (this.interruptPending) this.target.interrupt();
      stop = await pending;
    } catch (err) {
      // gdb shows "Remote failure reply: E.<message>" and considers the thread stopped.
      return errorReply(`cannot ${direction === 'backward' ? 'reverse-' : ''}${step ? 'step' : 'continue'}: ${(err as Error)?.message ?? String(err)}`);
    } finally {
      this.running = false;
      this.interruptPending = false;
      if (this.endHow) this.finish(this.endHow);
    }
    this.lastStop = stop;
    if (stop.cause.kind === 'exited') this.exited = true;
    // gdb takes the reported thread as the one both H selections now point to.
    this.gThread = stop.tid;
    this.cThread = stop.tid;
    return this.stopReply(stop);
  }

  /** vCont;action[:thread]...: the first step action wins (all-stop: the others run along). */
  private vCont(actions: string[]): Promise<Reply> | Reply {
    let step: number | undefined;
    let cont: number | undefined;
    for (const action of actions) {
      const [what, thread] = action.split(':');
      const ref = thread === undefined ? { tid: ALL } : parseThreadId(thread);
      if (!ref) return 'E.malformed thread id in vCont';
      const tid = this.threadFromRef(ref);
      if (tid === undefined) continue;
      const kind = what[0];
      if (kind === 's' || kind === 'S') step ??= tid;
      else if (kind === 'c' || kind === 'C') cont ??= tid;
      else return errorReply(`vCont action ${what} is not supported`);
    }
    if (step !== undefined) return this.resume('forward', true, step === ALL ? this.cThread : step);
    if (cont !== undefined) return this.resume('forward', false, cont === ALL ? this.cThread : cont);
    return 'E.vCont names no thread of this process';
  }

  // ---- breakpoints and watchpoints ----

  private breakpoint(insert: boolean, type: string, addrHex: string, kindHex: string): Reply {
    const address = hexNumber(addrHex);
    const kind = hexNumber(kindHex.split(';')[0]);
    if (address === undefined || kind === undefined) return 'E.malformed breakpoint packet';
    if (type === '0' || type === '1') {
      const b = this.breakpoints.get(address) ?? { sw: 0, hw: 0 };
      const before = b.sw + b.hw;
      const field = type === '0' ? 'sw' : 'hw';
      if (insert) b[field]++;
      else if (b[field] > 0) b[field]--;
      else return 'OK'; // removing what is not there: nothing to do, as gdbserver answers
      const after = b.sw + b.hw;
      if (after === 0) this.breakpoints.delete(address);
      else this.breakpoints.set(address, b);
      if (before === 0 && after > 0) this.target.setBreakpoint(address);
      if (before > 0 && after === 0) this.target.removeBreakpoint(address);
      return 'OK';
    }
    const watch = WATCH_KINDS[type];
    if (!watch) return '';
    if (kind <= 0) return 'E.a watchpoint needs a length';
    const key = `${watch}:${address}:${kind}`;
    const count = this.watchpoints.get(key) ?? 0;
    if (insert) {
      if (count === 0) this.target.setWatchpoint(address, kind, watch);
      this.watchpoints.set(key, count + 1);
    } else if (count > 0) {
      if (count === 1) {
        this.watchpoints.delete(key);
        this.target.removeWatchpoint(address, kind, watch);
      } else {
        this.watchpoints.set(key, count - 1);
      }
    }
    return 'OK';
  }

  // ---- qXfer ----

  private xferRead(object: string, annex: string, range: string): Reply {
    let data: Uint8Array | undefined;
    switch (object) {
      case 'features': {
        const doc = featureDocument(annex);
        if (doc === undefined) return `E.no target description named ${annex}`;
        data = Buffer.from(doc, 'utf8');
        break;
      }
      case 'auxv':
        data = this.target.auxv();
        break;
      case 'exec-file': {
        if (annex !== '' && hexNumber(annex) !== this.target.pid) return `E.no process ${annex} in this recording`;
        data = Buffer.from(this.target.execPath, 'utf8');
        break;
      }
      default:
        return '';
    }
    const [offHex, lenHex] = range.split(',');
    const offset = hexNumber(offHex);
    const length = hexNumber(lenHex);
    if (offset === undefined || length === undefined) return 'E.malformed qXfer range';
    if (offset >= data.length) return 'l';
    const end = Math.min(data.length, offset + length);
    return Buffer.concat([Buffer.from(end < data.length ? 'm' : 'l'), escapeBinary(data.subarray(offset, end))]);
  }

  // ---- the packets ----

  private qSupported(features: string): string {
    for (const f of features.split(';')) {
      if (f === 'swbreak+') this.gdbSwbreak = true;
      if (f === 'hwbreak+') this.gdbHwbreak = true;
      if (f === 'multiprocess+') this.multiprocess = true;
    }
    return [
      `PacketSize=${PACKET_SIZE.toString(16)}`,
      'qXfer:features:read+',
      'qXfer:auxv:read+',
      'qXfer:exec-file:read+',
      'QStartNoAckMode+',
      'ReverseContinue+',
      'ReverseStep+',
      'swbreak+',
      'hwbreak+',
      'vContSupported+',
      ...(this.multiprocess ? ['multiprocess+'] : []),
    ].join(';');
  }

  private readMemory(args: string): Reply {
    const [addrHex, lenHex] = args.split(',');
    const length = hexNumber(lenHex);
    if (length === undefined) return 'E.malformed memory read';
    if (length === 0) return '';
    const address = hexNumber(addrHex);
    // Addresses past 2^53 (the vsyscall page, kernel space) are never mapped in a replay.
    if (address === undefined) return 'E14';
    const bytes = this.target.readMemory(address, Math.min(length, PACKET_SIZE / 2));
    return bytes.length === 0 ? 'E14' : toHex(bytes);
  }

  private refuseWrite(what: string): string {
    this.options.notice?.(`gdb asked to ${what}: refused, ${READ_ONLY_MESSAGE}`);
    return errorReply(`cannot ${what}: ${READ_ONLY_MESSAGE}`);
  }

  private async handle(packet: Buffer): Promise<Reply> {
    // Only X (and vFile:pwrite) carry binary data; everything else is ASCII.
    if (packet[0] === 0x58 /* X */) {
      const colon = packet.indexOf(0x3a);
      const head = packet.toString('latin1', 1, colon < 0 ? packet.length : colon);
      const [addr, len] = head.split(',');
      if (colon >= 0) unescapeBinary(packet.subarray(colon + 1)); // well-formed or a protocol error
      // gdb probes with an empty write to learn whether X is understood: nothing changes, say so.
      if (hexNumber(len) === 0) return 'OK';
      return this.refuseWrite(`write ${hexNumber(len) ?? '?'} bytes of memory at 0x${addr}`);
    }
    const p = packet.toString('latin1');
    switch (p[0]) {
      case '?':
        return this.stopReply(this.lastStop);
      case 'g':
        return toHex(encodeRegisters(this.registersOf(this.resolve(this.gThread))));
      case 'G':
        return this.refuseWrite('write registers');
      case 'p': {
        const n = hexNumber(p.slice(1));
        if (n === undefined || n >= GDB_REGISTERS.length) return `E.no register number ${p.slice(1)}`;
        return toHex(readRegister(this.registersOf(this.resolve(this.gThread)), n));
      }
      case 'P': {
        const n = hexNumber(p.slice(1).split('=')[0]);
        const name = n !== undefined && n < GDB_REGISTERS.length ? GDB_REGISTERS[n].name : `number ${p.slice(1).split('=')[0]}`;
        return this.refuseWrite(`write register ${name}`);
      }
      case 'm':
        return this.readMemory(p.slice(1));
      case 'M': {
        const [addr, rest] = p.slice(1).split(',');
        return this.refuseWrite(`write ${hexNumber(rest?.split(':')[0]) ?? '?'} bytes of memory at 0x${addr}`);
      }
      case 'H': {
        const ref = parseThreadId(p.slice(2));
        const tid = ref && this.threadFromRef(ref);
        if (tid === undefined) return 'E.no such thread';
        if (tid !== ANY && tid !== ALL && !this.alive(tid)) return `E.thread ${tid} is not alive here`;
        if (p[1] === 'g') this.gThread = tid;
        else if (p[1] === 'c') this.cThread = tid;
        else return '';
        return 'OK';
      }
      case 'T': {
        const ref = parseThreadId(p.slice(1));
        const tid = ref && this.threadFromRef(ref);
        return tid !== undefined && this.alive(tid) ? 'OK' : 'E01';
      }
      case 'c':
      case 's':
      case 'C':
      case 'S': {
        // c [addr], C sig[;addr]: a signal to deliver is ignored (the recording decides which
        // signals arrive); resuming elsewhere would change the past.
        const addr = p[0] === 'c' || p[0] === 's' ? p.slice(1) : p.split(';')[1];
        if (addr) return this.refuseWrite(`resume at 0x${addr}`);
        return this.resume('forward', p[0] === 's' || p[0] === 'S', this.cThread);
      }
      case 'b':
        if (p === 'bc') return this.resume('backward', false, this.cThread);
        if (p === 'bs') return this.resume('backward', true, this.cThread);
        return '';
      case 'Z':
      case 'z': {
        const [type, addr, kind] = p.slice(1).split(',');
        if (addr === undefined || kind === undefined) return 'E.malformed breakpoint packet';
        return this.breakpoint(p[0] === 'Z', type, addr, kind);
      }
      case 'D':
        this.afterReply = () => this.end('detached');
        return 'OK';
      case 'k':
        this.end('killed');
        return null;
      case 'q':
        return this.query(p);
      case 'Q':
        if (p === 'QStartNoAckMode') {
          this.afterReply = () => this.link.disableAcks();
          return 'OK';
        }
        if (p === 'QNonStop:0') return 'OK';
        if (p.startsWith('QNonStop:')) return 'E.non-stop mode is not supported';
        return '';
      case 'v':
        return this.vPacket(p);
      default:
        return '';
    }
  }

  private query(p: string): Reply {
    const colon = p.indexOf(':');
    const name = colon < 0 ? p : p.slice(0, colon);
    const rest = colon < 0 ? '' : p.slice(colon + 1);
    switch (name) {
      case 'qSupported':
        return this.qSupported(rest);
      case 'qAttached':
        // "Attached": quitting gdb detaches (a replay has nothing to kill).
        return '1';
      case 'qC':
        return `QC${this.threadId(this.lastStop.tid)}`;
      case 'qfThreadInfo': {
        const threads = this.exited ? [] : this.target.threads();
        return threads.length ? `m${threads.map((t) => this.threadId(t)).join(',')}` : 'l';
      }
      case 'qsThreadInfo':
        return 'l';
      case 'qSymbol':
        return 'OK';
      case 'qXfer': {
        // qXfer:object:read:annex:offset,length
        const parts = rest.split(':');
        if (parts.length !== 4 || parts[1] !== 'read') return '';
        return this.xferRead(parts[0], parts[2], parts[3]);
      }
      default:
        return '';
    }
  }

  private vPacket(p: string): Promise<Reply> | Reply {
    if (p === 'vCont?') return 'vCont;c;C;s;S';
    if (p.startsWith('vCont;')) return this.vCont(p.slice(6).split(';'));
    if (p.startsWith('vFile:')) return this.hostIo.handle(p.slice(6)) ?? '';
    if (p.startsWith('vKill')) {
      this.afterReply = () => this.end('killed');
      return 'OK';
    }
    return '';
  }
}
