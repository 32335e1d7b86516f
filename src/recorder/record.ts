// Recording: run the program under the native ptrace helper (src/recorder-native) and turn its
// event stream into a .rrz trace through TraceWriter.
import { spawn } from 'node:child_process';
import { existsSync, unlinkSync } from 'node:fs';
import * as os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';
import { TraceWriter } from '../trace/writer.ts';
import type { CpuidLeaf, Mapping, MemoryWrite, TickMode, TraceEvent } from '../trace/schema.ts';
import { RecordSplitter, type HelperRecord, type RawMapping, type RawWrite } from './stream.ts';
import { ProgramFiles } from './program-files.ts';
import { DEFAULT_MASKED_FEATURES, cpuidMask, cpuidMaskArg, maskEnv } from './cpu-mask.ts';

// The CLI bundle (scripts/setup.mjs) defines RA_SOURCE_DIR, since import.meta.url is then the bundle's.
declare const RA_SOURCE_DIR: string | undefined;
const sourceDir = typeof RA_SOURCE_DIR === 'string' ? RA_SOURCE_DIR : join(dirname(fileURLToPath(import.meta.url)), '..');
export const HELPER_PATH = join(sourceDir, 'recorder-native', 'build', 'ra-recorder');
const PRODUCER = 'replay-anywhere 0.1.0';

export interface RecordOptions {
  command: string[];
  output: string;
  /** glibc hwcaps names to keep the program from using (default: what the replay CPU lacks). */
  maskedFeatures?: string[];
  /** The program's environment (default process.env); the CPU mask variables are added. */
  env?: NodeJS.ProcessEnv;
  onProgress?: (events: number) => void;
  /** Called once with a warning meant for the user (e.g. no CPUID faulting). Default: stderr. */
  onWarning?: (message: string) => void;
  /** Do not use CPUID faulting even where the CPU has it (as on a CPU without it). */
  noCpuidFaulting?: boolean;
  /** Trap rdtsc, rdtscp and cpuid by int3 patches even where the CPU can trap them itself. */
  patchSites?: boolean;
}

export interface RecordResult {
  /** The program's exit code, or 128 + the signal that ended it. */
  exitStatus: number;
  events: number;
  complete: boolean;
  tracePath: string;
  /** Why the trace is incomplete. */
  reason?: string;
}

/** The program could not be started (not found, not executable): no trace is left. */
export class ProgramStartError extends Error {
  constructor(readonly program: string, readonly errno: number, message: string, readonly exitStatus: number) {
    super(message);
    this.name = 'ProgramStartError';
  }
}

const ENOENT = 2;

export async function record(opts: RecordOptions): Promise<RecordResult> {
  if (opts.command.length === 0) throw new Error('record: no command given');
  if (!existsSync(HELPER_PATH)) throw new Error(`record: the recorder helper is not built (${HELPER_PATH}); run npm run build`);
  const masked = opts.maskedFeatures ?? [...DEFAULT_MASKED_FEATURES];
  const env = { ...(opts.env ?? process.env) };
  Object.assign(env, maskEnv(masked, env));
  const warn = opts.onWarning ?? ((m: string) => process.stderr.write(`replay-anywhere: ${m}\n`));

  // Under CPUID faulting the helper answers the program's CPUID with these bits cleared.
  const maskArg = cpuidMaskArg(cpuidMask(masked));
  const helperArgs = ['--stream-fd', '3'];
  if (maskArg) helperArgs.push('--cpuid-mask', maskArg);
  if (opts.noCpuidFaulting) helperArgs.push('--no-cpuid-faulting');
  if (opts.patchSites) helperArgs.push('--patch-sites');
  const child = spawn(HELPER_PATH, [...helperArgs, '--', ...opts.command], {
    stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
    env,
  });
  const helperExit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', () => resolve({ code: null, signal: null }));
  });

  let interrupted: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupted ??= sig;
    child.kill('SIGTERM');  // the helper kills the program (and EXITKILL would, were it to die)
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let writer: TraceWriter | undefined;
  let info: Extract<HelperRecord, { type: 'info' }> | undefined;
  let cpuid: CpuidLeaf[] = [];
  let exitStatus: number | undefined;
  let firstPid: number | undefined;
  let ended = false;
  let reason: string | undefined;
  let startError: ProgramStartError | undefined;
  let lastProgress = 0;

  const open = () => {
    if (writer) return writer;
    const tickMode: TickMode = info?.pmu ? { kind: 'pmu', event: info.pmuText } : { kind: 'no-pmu', reason: info?.pmuText ?? 'the recorder helper did not report' };
    writer = TraceWriter.create(opts.output, {
      producer: PRODUCER,
      recordedAt: new Date().toISOString(),
      hostname: os.hostname(),
      kernel: os.release(),
      command: [...opts.command],
      cwd: process.cwd(),
      tickMode,
      maskedFeatures: masked,
      // With faulting, the helper answered every CPUID of the program from `cpuid`, which is
      // the dump with the masked features' bits cleared; without it, `cpuid` is the raw dump.
      cpuidFaulting: info?.cpuidFaulting ?? false,
      cpuid,
      xcr0: info?.xcr0 ?? 0,
      ...(info?.patchedInstructions.length ? { patchedInstructions: info.patchedInstructions } : {}),
    });
    return writer;
  };

  const programFiles = new ProgramFiles();
  const mapping = (w: TraceWriter, m: RawMapping): Mapping => {
    programFiles.noteMapping(w, m.name, m.prot);
    const out: Mapping = { start: m.start, end: m.end, prot: m.prot, flags: m.flags, name: m.name, fileOffset: m.fileOffset };
    if (m.data) out.data = w.bytes(m.data);
    return out;
  };
  const writes = (w: TraceWriter, ws: RawWrite[]): MemoryWrite[] => ws.map((x) => ({ addr: x.addr, data: w.bytes(x.data) }));
  const copy = (b: Uint8Array) => b.slice();

  const handle = (r: HelperRecord) => {
    switch (r.type) {
      case 'info':
        info = r;
        if (!r.cpuidFaulting && !r.patchedInstructions.includes('cpuid')) warn('no CPUID faulting on this CPU: programs that probe CPUID themselves may pick instructions the replay CPU lacks');
        return;
      case 'cpuid': cpuid = r.leaves; return;
      case 'exec-failed':
        startError = new ProgramStartError(opts.command[0], r.errno,
          r.errno === ENOENT ? `program not found: ${opts.command[0]}` : `cannot run ${opts.command[0]}: ${r.message}`,
          r.errno === ENOENT ? 127 : 126);
        return;
      case 'stopped': case 'error': reason ??= r.message; return;
      case 'warning': warn(r.message); return;
      case 'end': ended = true; return;
      default: break;
    }
    const w = open();
    const base = r.ticks === undefined ? { pid: r.pid, tid: r.tid } : { pid: r.pid, tid: r.tid, ticks: r.ticks };
    let e: TraceEvent;
    switch (r.type) {
      case 'exec':
        firstPid ??= r.pid;
        e = { kind: 'exec', ...base, path: r.path, argv: r.argv, regs: copy(r.regs), fpregs: copy(r.fpregs), auxv: copy(r.auxv), brk: r.brk, stackLimit: r.stackLimit, mappings: r.mappings.map((m) => mapping(w, m)) };
        break;
      case 'syscall':
        e = { kind: 'syscall', ...base, number: r.number, regs: copy(r.regs), result: r.result, writes: writes(w, r.writes) };
        if (r.mappings.length) e.mappings = r.mappings.map((m) => mapping(w, m));
        if (r.noReturn) e.noReturn = true;
        if (r.output) e.output = w.bytes(r.output);
        if (r.outputTarget === 3) e.notOurOutput = true;
        else if (r.outputTarget === 1 || r.outputTarget === 2) e.echoFd = r.outputTarget;
        break;
      case 'rdtsc':
        e = { kind: 'rdtsc', ...base, rip: r.rip, insn: r.rdtscp ? 'rdtscp' : 'rdtsc', value: r.value };
        if (r.rdtscp) e.aux = r.aux;
        break;
      case 'signal':
        e = { kind: 'signal', ...base, signo: r.signo, code: r.code, synchronous: r.synchronous, regs: copy(r.regs), fatal: r.fatal, writes: writes(w, r.writes) };
        if (r.synchronous) e.addr = r.addr;
        if (r.handlerRegs) e.handlerRegs = copy(r.handlerRegs);
        if (r.placement === 1) e.beforeSyscall = true;
        if (r.placement === 2) e.inUserCode = true;
        break;
      case 'clone':
        e = { kind: 'clone', ...base, childPid: r.childPid, childTid: r.childTid, flags: r.flags, regs: copy(r.regs), fpregs: copy(r.fpregs) };
        if (r.writes.length) e.writes = writes(w, r.writes);
        break;
      case 'switch':
        e = { kind: 'switch', ...base };
        break;
      case 'exit':
        e = { kind: 'exit', ...base, code: r.signaled ? null : r.value, signal: r.signaled ? r.value : null, processExit: r.processExit };
        // `record` exits with the status of the first process (the one it started).
        if (r.processExit && r.pid === firstPid) exitStatus = r.signaled ? 128 + r.value : r.value;
        break;
    }
    w.append(e);
    if (opts.onProgress && w.eventCount - lastProgress >= 1000) {
      lastProgress = w.eventCount;
      opts.onProgress(w.eventCount);
    }
  };

  const splitter = new RecordSplitter();
  let streamError: string | undefined;
  try {
    for await (const chunk of child.stdio[3] as Readable) {
      for (const r of splitter.push(chunk as Uint8Array)) handle(r);
    }
  } catch (err) {
    streamError = `reading the recorder stream failed: ${(err as Error).message}`;
  }
  const hx = await helperExit;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);

  if (startError) {
    if (writer) {
      writer.close({ complete: false, reason: startError.message });
      unlinkSync(opts.output);
    }
    throw startError;
  }
  const w = open();
  if (interrupted) reason = `recording interrupted by ${interrupted}`;
  if (!ended && !reason) {
    reason = streamError
      ?? (splitter.leftover ? `the recorder stream ended inside a record (${splitter.leftover} bytes)` : 'the recorder stream ended early')
      + (hx.signal ? `: the helper was killed by ${hx.signal}` : hx.code ? `: the helper exited with status ${hx.code}` : '');
  }
  const complete = ended && !reason;
  const events = w.eventCount;
  programFiles.finish(w);
  w.close(complete ? { complete: true } : { complete: false, reason });
  if (exitStatus === undefined) exitStatus = interrupted ? 128 + (os.constants.signals[interrupted] ?? 1) : 1;
  const result: RecordResult = { exitStatus, events, complete, tracePath: opts.output };
  if (!complete) result.reason = reason;
  return result;
}
