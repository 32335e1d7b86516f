// Minimal shape checks of decoded records: the kind is known and the fields the schema requires have
// the right types. Decoded bytes (msgpackr gives Buffers) are normalised to plain Uint8Array views
// so readers see exactly what writers stored. Each check returns a reason string, or null when fine.
import type { TraceEvent, TraceHeader } from './schema.ts';

type Obj = Record<string, unknown>;

const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);
const isNum = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
const HEX64 = /^[0-9a-f]{64}$/;

/** Whether checks also normalise (reader: Buffers to Uint8Array, integer rdtsc values to bigint). */
let normalise = true;

function asBytes(o: Obj, k: string): boolean {
  const v = o[k];
  if (!(v instanceof Uint8Array)) return false;
  if (normalise && v.constructor !== Uint8Array) o[k] = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return true;
}

export function isBlobRefShape(v: unknown): boolean {
  return isObj(v) && typeof v.blob === 'string' && HEX64.test(v.blob) && isInt(v.size) && v.size >= 0;
}

/** Bytes: inline Uint8Array or BlobRef. */
function asBytesOrRef(o: Obj, k: string): boolean {
  return asBytes(o, k) || isBlobRefShape(o[k]);
}

function checkWrites(v: unknown, where: string): string | null {
  if (!Array.isArray(v)) return `${where} is not an array`;
  for (let i = 0; i < v.length; i++) {
    const w = v[i];
    if (!isObj(w) || !isNum(w.addr) || !asBytesOrRef(w, 'data')) return `${where}[${i}] is not a memory write {addr, data}`;
  }
  return null;
}

function checkMappings(v: unknown, where: string): string | null {
  if (!Array.isArray(v)) return `${where} is not an array`;
  for (let i = 0; i < v.length; i++) {
    const m = v[i];
    if (!isObj(m) || !isNum(m.start) || !isNum(m.end) || !isInt(m.prot) || !isInt(m.flags) || typeof m.name !== 'string' || !isNum(m.fileOffset))
      return `${where}[${i}] is not a mapping {start, end, prot, flags, name, fileOffset}`;
    if (m.data !== undefined && !asBytesOrRef(m, 'data')) return `${where}[${i}].data is not bytes`;
  }
  return null;
}

const isStrArray = (v: unknown) => Array.isArray(v) && v.every((s) => typeof s === 'string');

function checkPoint(v: unknown, where: string): string | null {
  if (!isObj(v)) return `${where} is not an execution point`;
  if (v.ticks !== undefined && !isNum(v.ticks)) return `${where}.ticks is not a number`;
  if (!asBytes(v, 'regs') || !asBytes(v, 'fpregs')) return `${where} has no regs/fpregs bytes`;
  if (!asBytesOrRef(v, 'pages')) return `${where}.pages is not bytes`;
  return null;
}

/** Check an event without changing it (writer side). */
export function checkEventShape(e: unknown): string | null {
  normalise = false;
  try {
    return checkEvent(e);
  } finally {
    normalise = true;
  }
}

/** Check one decoded event, normalising it in place; null when it has the schema's shape. */
export function checkEvent(e: unknown): string | null {
  if (!isObj(e)) return 'record is not a map';
  const kind = e.kind;
  if (!isInt(e.tid) || !isInt(e.pid)) return `${String(kind)} event without integer tid/pid`;
  if (e.ticks !== undefined && !isNum(e.ticks)) return `${String(kind)} event with non-numeric ticks`;
  const bad = (f: string) => `${String(kind)} event: field "${f}" missing or of the wrong type`;
  switch (kind) {
    case 'syscall':
      if (!isInt(e.number)) return bad('number');
      if (!asBytes(e, 'regs')) return bad('regs');
      if (!isNum(e.result)) return bad('result');
      if (e.noReturn !== undefined && typeof e.noReturn !== 'boolean') return bad('noReturn');
      if (e.notOurOutput !== undefined && typeof e.notOurOutput !== 'boolean') return bad('notOurOutput');
      if (e.echoFd !== undefined && e.echoFd !== 1 && e.echoFd !== 2) return bad('echoFd');
      if (e.output !== undefined && !asBytesOrRef(e, 'output')) return bad('output');
      return checkWrites(e.writes, 'syscall event: writes') ?? (e.mappings === undefined ? null : checkMappings(e.mappings, 'syscall event: mappings'));
    case 'exec':
      if (typeof e.path !== 'string') return bad('path');
      if (!isStrArray(e.argv)) return bad('argv');
      if (!asBytes(e, 'regs')) return bad('regs');
      if (!asBytes(e, 'fpregs')) return bad('fpregs');
      if (!asBytes(e, 'auxv')) return bad('auxv');
      if (!isNum(e.brk)) return bad('brk');
      if (e.stackLimit !== undefined && !isNum(e.stackLimit)) return bad('stackLimit');
      return checkMappings(e.mappings, 'exec event: mappings');
    case 'rdtsc':
      if (!isNum(e.rip)) return bad('rip');
      if (e.insn !== 'rdtsc' && e.insn !== 'rdtscp') return bad('insn');
      if (typeof e.value !== 'bigint') {
        if (isInt(e.value)) {
          if (normalise) e.value = BigInt(e.value);
        }
        else return bad('value');
      }
      if (e.aux !== undefined && !isInt(e.aux)) return bad('aux');
      return null;
    case 'signal':
      if (!isInt(e.signo)) return bad('signo');
      if (!isInt(e.code)) return bad('code');
      if (typeof e.synchronous !== 'boolean') return bad('synchronous');
      if (e.addr !== undefined && !isNum(e.addr)) return bad('addr');
      if (!asBytes(e, 'regs')) return bad('regs');
      if (typeof e.fatal !== 'boolean') return bad('fatal');
      if (e.handlerRegs !== undefined && !asBytes(e, 'handlerRegs')) return bad('handlerRegs');
      if (e.beforeSyscall !== undefined && typeof e.beforeSyscall !== 'boolean') return bad('beforeSyscall');
      if (e.inUserCode !== undefined && typeof e.inUserCode !== 'boolean') return bad('inUserCode');
      if (e.point !== undefined) {
        const why = checkPoint(e.point, 'signal event: point');
        if (why) return why;
      }
      return checkWrites(e.writes, 'signal event: writes');
    case 'clone':
      if (!isInt(e.childPid)) return bad('childPid');
      if (!isInt(e.childTid)) return bad('childTid');
      if (!isInt(e.flags)) return bad('flags');
      if (!asBytes(e, 'regs')) return bad('regs');
      if (!asBytes(e, 'fpregs')) return bad('fpregs');
      return e.writes === undefined ? null : checkWrites(e.writes, 'clone event: writes');
    case 'switch':
      if (e.regs !== undefined && !asBytes(e, 'regs')) return bad('regs');
      return e.preempted === undefined ? null : checkPoint(e.preempted, 'switch event: preempted');
    case 'exit':
      if (e.code !== null && !isInt(e.code)) return bad('code');
      if (e.signal !== null && !isInt(e.signal)) return bad('signal');
      if (typeof e.processExit !== 'boolean') return bad('processExit');
      return null;
    default:
      return `unknown event kind ${JSON.stringify(typeof kind === 'string' ? kind.slice(0, 40) : kind)}`;
  }
}

/** Check a decoded header (without formatMajor/formatMinor, which live in the fixed prefix). */
export function checkHeader(h: unknown): string | null {
  if (!isObj(h)) return 'header is not a map';
  for (const k of ['producer', 'recordedAt', 'hostname', 'kernel', 'cwd'])
    if (typeof h[k] !== 'string') return `header field "${k}" missing or not a string`;
  if (!isStrArray(h.command)) return 'header field "command" is not a list of strings';
  if (!isStrArray(h.maskedFeatures)) return 'header field "maskedFeatures" is not a list of strings';
  if (typeof h.cpuidFaulting !== 'boolean') return 'header field "cpuidFaulting" is not a boolean';
  const t = h.tickMode;
  if (!isObj(t) || !((t.kind === 'no-pmu' && typeof t.reason === 'string') || (t.kind === 'pmu' && typeof t.event === 'string')))
    return 'header field "tickMode" is not {kind: "no-pmu", reason} or {kind: "pmu", event}';
  if (!Array.isArray(h.cpuid)) return 'header field "cpuid" is not a list';
  for (let i = 0; i < h.cpuid.length; i++) {
    const l = h.cpuid[i];
    if (!isObj(l) || !['leaf', 'subleaf', 'eax', 'ebx', 'ecx', 'edx'].every((k) => isInt(l[k]))) return `header cpuid[${i}] is not a CPUID leaf`;
  }
  if (h.xcr0 !== undefined && !isInt(h.xcr0)) return 'header field "xcr0" is not an integer';
  if (h.patchedInstructions !== undefined && !isStrArray(h.patchedInstructions)) return 'header field "patchedInstructions" is not a list of strings';
  return null;
}

export type { TraceEvent, TraceHeader };
