// End to end: C fixtures recorded for real, then debugged by Debian's gdb in batch mode through
// `replay-anywhere debug`, forwards and backwards. Lines are found by their /* @name */ marks in
// the fixture source; values are the ones the program computes.
import test from 'ava';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture, FIXTURES_DIR } from '../helpers/fixtures.ts';
import { CLI, cli } from '../helpers/round-trip.ts';

const DEBUG_CFLAGS = ['-g', '-O0'];

/** Line numbers of the `/* @name *\/` marks of a fixture. */
function marks(name: string): Record<string, number> {
  const out: Record<string, number> = {};
  readFileSync(join(FIXTURES_DIR, `${name}.c`), 'utf8').split('\n').forEach((line, i) => {
    for (const m of line.matchAll(/\/\* @([\w-]+) \*\//g)) out[m[1]] = i + 1;
  });
  return out;
}

const L = marks('debug_basic');
const LT = marks('debug_threads');

const dir = mkdtempSync(join(tmpdir(), 'ra-gdb-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function record(name: string, program: string, expectedStatus: number): string {
  const trace = join(dir, `${name}.rrz`);
  const r = cli(['record', '-o', trace, '--', program]);
  if (r.status !== expectedStatus || !existsSync(trace)) throw new Error(`record ${name}: status ${r.status}: ${r.stderr}`);
  return trace;
}

let basicTrace: string;
let threadsTrace: string;
test.before(() => {
  basicTrace = record('basic', fixture('debug_basic', DEBUG_CFLAGS), 42);
  threadsTrace = record('threads', fixture('debug_threads', [...DEBUG_CFLAGS, '-pthread']), 0);
});

interface GdbRun {
  /** What each command printed on stdout, in order. */
  out: string[];
  stdout: string;
  stderr: string;
  status: number | null;
  /** Everything, for assertion messages. */
  all: string;
}

/** Runs gdb in batch mode through `replay-anywhere debug TRACE -- ...` with these commands. */
function gdb(trace: string, commands: string[], extra: string[] = []): GdbRun {
  const args = ['debug', ...extra, trace, '--', '-batch', '-nx'];
  commands.forEach((c, i) => args.push('-ex', `echo <<${i}>>\\n`, '-ex', c));
  args.push('-ex', `echo <<${commands.length}>>\\n`);
  const r = cli(args);
  const stdout = r.stdout.toString();
  const out: string[] = [];
  for (let i = 0; i < commands.length; i++) {
    const from = stdout.indexOf(`<<${i}>>\n`);
    const to = stdout.indexOf(`<<${i + 1}>>\n`);
    out.push(from < 0 ? '' : stdout.slice(from + `<<${i}>>\n`.length, to < 0 ? undefined : to));
  }
  return { out, stdout, stderr: r.stderr, status: r.status, all: `status ${r.status}\n--- stdout\n${stdout}\n--- stderr\n${r.stderr}` };
}

const at = (fn: string, line: number) => new RegExp(`\\b${fn} \\([^)]*\\) at \\S*debug_\\w+\\.c:${line}\\n${line}\\t`);

test.serial('break at a function, continue, print arguments and locals, finish with the return value', (t) => {
  const g = gdb(basicTrace, ['break square', 'continue', 'print x', 'continue', 'print x', 'finish', 'next', 'info locals']);
  t.regex(g.out[0], new RegExp(`^Breakpoint 1 at 0x[0-9a-f]+: file \\S*debug_basic\\.c, line ${L['square-body']}\\.`), g.all);
  t.regex(g.out[1], new RegExp(`Breakpoint 1, square \\(x=1\\) at \\S*debug_basic\\.c:${L['square-body']}\\n${L['square-body']}\\t  int r = x \\* x;`), g.all);
  t.is(g.out[2], '$1 = 1\n');
  t.regex(g.out[3], /Breakpoint 1, square \(x=2\)/, g.all);
  t.is(g.out[4], '$2 = 2\n');
  t.regex(g.out[5], new RegExp(`main \\(\\) at \\S*debug_basic\\.c:${L['call-square']}\\n${L['call-square']}\\t[^\\n]*\\nValue returned is \\$3 = 4\\n`), g.all);
  t.regex(g.out[6], new RegExp(`^${L['call-bump']}\\t    bump\\(i\\);`), g.all);
  t.is(g.out[7], 'i = 2\ntotal = 5\n', g.all);
});

test.serial('next steps over calls, line by line through the loop', (t) => {
  const g = gdb(basicTrace, [`break debug_basic.c:${L['call-square']}`, 'continue', 'next', 'print total', 'next', 'next', 'print i', 'next', 'print total', 'print counter']);
  t.regex(g.out[1], at('main', L['call-square']), g.all);
  t.regex(g.out[2], new RegExp(`^${L['call-bump']}\\t`), g.all);
  t.is(g.out[3], '$1 = 1\n');
  t.regex(g.out[4], new RegExp(`^${L.loop}\\t`), g.all);
  t.regex(g.out[5], new RegExp(`Breakpoint 1, main \\(\\) at \\S*debug_basic\\.c:${L['call-square']}|^${L['call-square']}\\t`), g.all);
  t.is(g.out[6], '$2 = 2\n');
  t.regex(g.out[7], new RegExp(`^${L['call-bump']}\\t`), g.all);
  t.is(g.out[8], '$3 = 5\n');
  t.is(g.out[9], '$4 = 1\n');
});

test.serial('continue to the end: gdb sees the recorded exit code', (t) => {
  const g = gdb(basicTrace, ['continue']);
  // total 30 + counter 10 + 2 = 42, which gdb prints in octal.
  t.regex(g.out[0], /\[Inferior 1 \(process \d+\) exited with code 052\]/, g.all);
});

test.serial('watch a variable, then reverse-continue to the writes that changed it', (t) => {
  const g = gdb(basicTrace, [`break debug_basic.c:${L.print}`, 'continue', 'print counter', 'watch counter', 'reverse-continue', 'x/i $pc', 'print by', 'reverse-continue', 'print by', 'continue']);
  t.regex(g.out[1], at('main', L.print), g.all);
  t.is(g.out[2], '$1 = 10\n');
  t.regex(g.out[3], /^Hardware watchpoint 2: counter/, g.all);
  // Backward, the stop is at the instruction that wrote (as gdb's record-full and rr do).
  const write = (by: number) => new RegExp(`\\n0x[0-9a-f]+ in bump \\(by=${by}\\) at \\S*debug_basic\\.c:${L['bump-write']}\\n${L['bump-write']}\\t  counter \\+= by;`);
  t.regex(g.out[4], /^\nHardware watchpoint 2: counter\n\nOld value = 10\nNew value = 6\n/, g.all);
  t.regex(g.out[4], write(4), g.all);
  // Exactly at the store, not an instruction earlier or later.
  t.regex(g.out[5], STORE_TO_COUNTER, g.all);
  t.is(g.out[6], '$2 = 4\n');
  t.regex(g.out[7], /^\nHardware watchpoint 2: counter\n\nOld value = 6\nNew value = 3\n/, g.all);
  t.regex(g.out[7], write(3), g.all);
  t.is(g.out[8], '$3 = 3\n');
  // Forward again: the write by 3 happens next, and the stop is just after it.
  t.regex(g.out[9], new RegExp(`^\\nHardware watchpoint 2: counter\\n\\nOld value = 3\\nNew value = 6\\nbump \\(by=3\\) at \\S*debug_basic\\.c:${L['bump-end']}\\n`), g.all);
});

const STORE_TO_COUNTER = /^=> 0x[0-9a-f]+ <bump\+\d+>:\tmov    %eax,0x[0-9a-f]+\(%rip\)\s+# 0x[0-9a-f]+ <counter>\n$/;

// From just after a store (a forward watchpoint stop, or a stepi over it), reversing undoes that
// store first: reverse-continue stops at it, as gdb's record-full does.
test.serial('reverse-continue right after a watched store stops at that store', (t) => {
  const g = gdb(basicTrace, [`break debug_basic.c:${L['call-bump']}`, 'continue', 'continue', 'delete', 'watch counter', 'continue', 'reverse-continue', 'x/i $pc', 'print by']);
  t.regex(g.out[5], /Old value = 1\nNew value = 3\n/, g.all);
  t.regex(g.out[6], /^\nHardware watchpoint 2: counter\n\nOld value = 3\nNew value = 1\n/, g.all);
  t.regex(g.out[7], STORE_TO_COUNTER, g.all);
  t.is(g.out[8], '$1 = 2\n');
});

test.serial('reverse-step goes back into the function just returned from; reverse-finish to its call', (t) => {
  const g = gdb(basicTrace, [`break debug_basic.c:${L['call-bump']}`, 'continue', 'continue', 'reverse-step', 'reverse-step', 'print r', 'print x', 'reverse-finish', 'print i']);
  t.regex(g.out[2], at('main', L['call-bump']), g.all);
  // Back from line call-bump: into square (x=2), at its closing brace, then its return line.
  t.regex(g.out[3], new RegExp(`square \\(x=2\\) at \\S*debug_basic\\.c:${L['square-end']}\\n${L['square-end']}\\t`), g.all);
  t.regex(g.out[4], new RegExp(`^${L['square-return']}\\t  return r;`), g.all);
  t.is(g.out[5], '$1 = 4\n');
  t.is(g.out[6], '$2 = 2\n');
  // Back in main, in the middle of the line that called square.
  t.regex(g.out[7], new RegExp(`^0x[0-9a-f]+ in main \\(\\) at \\S*debug_basic\\.c:${L['call-square']}\\n${L['call-square']}\\t`), g.all);
  t.is(g.out[8], '$3 = 2\n');
});

test.serial('stepi and reverse-stepi round trips come back to identical registers', (t) => {
  // gdb keeps orig_rax, fs_base and gs_base in its "system" group, out of `info all-registers`.
  const regs = ['info registers', 'info all-registers', 'info registers orig_rax fs_base gs_base'];
  const g = gdb(basicTrace, [
    'break square', 'continue', ...regs, 'stepi 25', ...regs, 'reverse-stepi 25', ...regs,
    'delete', `break debug_basic.c:${L.print}`, 'continue', ...regs, 'next', ...regs, 'reverse-next', ...regs,
  ]);
  const [a, aAll, aSys, , b, bAll, , , c, cAll, cSys] = g.out.slice(2, 13);
  t.regex(a, /^rax\s+0x1\s+1\n/, g.all);
  t.regex(a, /\nrip\s+0x[0-9a-f]+\s+0x[0-9a-f]+ <square\+\d+>\n/);
  t.regex(a, /\neflags\s+0x[0-9a-f]+\s+\[ [A-Z ]+ \]\n/);
  for (const name of ['st7', 'fctrl', 'ftag', 'xmm15', 'mxcsr']) t.regex(aAll, new RegExp(`\\n${name}\\s`), name);
  t.regex(aSys, /^orig_rax\s+0x[0-9a-f]+\s+-?\d+\nfs_base\s+0x[0-9a-f]{6,}\s+\d+\ngs_base\s+0x0\s+0\n$/, 'fs_base points at the TLS block');
  t.not(b, a, 'stepi moved');
  t.not(bAll, aAll);
  t.is(c, a, g.all);
  t.is(cAll, aAll);
  t.is(cSys, aSys);
  // Over printf and its write(2): next, then reverse-next.
  const [d, dAll, dSys, next, e, , , back, f, fAll, fSys] = g.out.slice(16, 27);
  t.regex(next, new RegExp(`^${L.return}\\t`), g.all);
  t.not(e, d);
  t.regex(back, new RegExp(`Breakpoint 2, main \\(\\) at \\S*debug_basic\\.c:${L.print}\\n${L.print}\\t  printf`), g.all);
  t.is(f, d, g.all);
  t.is(fAll, dAll);
  t.is(fSys, dSys);
});

test.serial('threads: info threads lists them, breakpoints name the thread that hit them', (t) => {
  const g = gdb(threadsTrace, ['break work', 'continue', 'info threads', 'next', 'print n', 'continue', 'print results[0]', 'info threads', 'continue']);
  t.regex(g.out[1], new RegExp(`Thread \\d+ hit Breakpoint 1, work \\(arg=0x0\\) at \\S*debug_threads\\.c:${LT['work-first']}\\n`), g.all);
  const threads = (text: string) => text.split('\n').filter((l) => /^[* ] \d+\s+Thread \d+\.\d+ /.test(l));
  t.is(threads(g.out[2]).length, 3, g.all);
  t.regex(g.out[2], /\n\* 2\s+Thread (\d+)\.\d+\s+work \(arg=0x0\) at /, g.all);
  t.regex(g.out[2], /\n  1\s+Thread (\d+)\.\1\s/, 'the main thread: its tid is the pid');
  t.regex(g.out[3], new RegExp(`^${LT['work-body']}\\t`), g.all);
  t.is(g.out[4], '$1 = 0\n');
  t.regex(g.out[5], /Thread 3 hit Breakpoint 1, work \(arg=0x1\)/, g.all);
  t.is(g.out[6], '$2 = 100\n');
  t.regex(g.out[7], /\n\* 3\s+Thread \d+\.\d+\s+work \(arg=0x1\)/, g.all);
  t.regex(g.out[8], /\[Inferior 1 \(process \d+\) exited normally\]/, g.all);
});

test.serial('the recorded binary deleted after recording: gdb gets it, and the libraries, from the trace', (t) => {
  const sub = mkdtempSync(join(dir, 'gone-'));
  const program = join(sub, 'debug_basic');
  copyFileSync(fixture('debug_basic', DEBUG_CFLAGS), program);
  const trace = record('gone', program, 42);
  rmSync(program);
  const g = gdb(trace, ['break main', 'continue', 'info sharedlibrary', 'print counter', 'continue']);
  t.regex(g.stdout, new RegExp(`Reading ${program} from remote target`), g.all);
  t.regex(g.out[0], new RegExp(`Breakpoint 1 at 0x[0-9a-f]+: file \\S*debug_basic\\.c, line ${L['main-first']}\\.`), g.all);
  t.regex(g.out[1], at('main', L['main-first']), g.all);
  t.regex(g.out[2], /Yes\s+target:\S*libc\.so\.6/, g.all);
  t.is(g.out[3], '$1 = 0\n');
  t.regex(g.out[4], /exited with code 052/, g.all);
});

test.serial('writes are refused: gdb shows why for registers, the terminal says so for memory', (t) => {
  const g = gdb(basicTrace, ['break square', 'continue', 'set var $rax = 0x1234567', 'set var counter = 5', 'print counter']);
  t.regex(g.stderr, /Could not write register "rax"; remote failure reply 'E\.cannot write register rax: this is a replay: the recorded past cannot be changed'/, g.all);
  t.regex(g.stderr, /Cannot access memory at address 0x[0-9a-f]+/, g.all);
  t.regex(g.stderr, /replay-anywhere: gdb asked to write 4 bytes of memory at 0x[0-9a-f]+: refused, this is a replay/, g.all);
  t.is(g.out[4], '$1 = 0\n');
});

test.serial('--goto starts at an event; reverse-continue with nothing to hit reaches the start of the recording', (t) => {
  const events = JSON.parse(cli(['dump', '--json', basicTrace]).stdout.toString()) as { event: number; kind: string; syscall?: string }[];
  const write = events.find((e) => e.kind === 'syscall' && e.syscall === 'write');
  t.truthy(write);
  const g = gdb(basicTrace, ['bt', 'print counter', 'reverse-continue', 'print $pc'], ['--goto', String(write!.event)]);
  t.regex(g.out[0], new RegExp(`in __printf [^]* in main \\(\\) at \\S*debug_basic\\.c:${L.print}\\n$`), g.all);
  t.is(g.out[1], '$1 = 10\n');
  t.regex(g.out[2], /^\nNo more reverse-execution history\.\n0x[0-9a-f]+ in _start \(\) from target:\S*ld-linux-x86-64\.so\.2\n$/, g.all);
  t.regex(g.out[3], /^\$2 = \(void \(\*\)\(\)\) 0x[0-9a-f]+ <_start>\n$/, g.all);
});

test.serial('a recorded SIGSEGV: gdb stops at the faulting line, then sees the process die of it', (t) => {
  const trace = record('segv', fixture('segv', DEBUG_CFLAGS), 128 + 11);
  const g = gdb(trace, ['continue', 'print p', 'continue']);
  // test/fixtures/segv.c: line 4 is `*p = 1;`.
  t.regex(g.out[0], /\nProgram received signal SIGSEGV, Segmentation fault\.\n0x[0-9a-f]+ in main \(\) at \S*segv\.c:4\n4\t  \*p = 1;\n$/, g.all);
  t.is(g.out[1], '$1 = (volatile int *) 0x0\n');
  t.regex(g.out[2], /^\nProgram terminated with signal SIGSEGV, Segmentation fault\.\nThe program no longer exists\.\n$/, g.all);
});

test.serial('Ctrl-C at the terminal interrupts a long continue: gdb stops the replay through the protocol', async (t) => {
  const trace = record('spin', fixture('debug_spin', ['-g', '-O1']), 0);
  const spin = marks('debug_spin').spin;
  // A terminal's Ctrl-C sends SIGINT to the whole foreground process group: the command and gdb.
  const p = spawn(process.execPath, [CLI, 'debug', trace, '--', '-batch', '-nx', '-ex', 'break main', '-ex', 'continue', '-ex', 'delete', '-ex', 'continue', '-ex', 'info program'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    try {
      process.kill(-p.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  let out = '';
  let sent = false;
  const exited = new Promise<number | null>((resolve) => p.once('exit', resolve));
  const onData = (d: Buffer) => {
    out += d.toString();
    if (!sent && out.includes('Breakpoint 1, main')) {
      sent = true;
      setTimeout(() => process.kill(-p.pid!, 'SIGINT'), 700);
    }
  };
  p.stdout.on('data', onData);
  p.stderr.on('data', onData);
  t.is(await exited, 0, out);
  t.regex(out, new RegExp(`\\nProgram received signal SIGINT, Interrupt\\.\\n(0x[0-9a-f]+ in )?main \\(\\) at \\S*debug_spin\\.c:${spin}\\n`), out);
  t.regex(out, /It stopped with signal SIGINT, Interrupt\./, out);
  t.notRegex(out, /exited/, 'the loop was cut short');
});

test.serial('--port serves one gdb connection and exits when gdb detaches', async (t) => {
  const server = spawn(process.execPath, [CLI, 'debug', '--port', '0', basicTrace], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  const port = await new Promise<number>((resolve, reject) => {
    server.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /^listening on 127\.0\.0\.1:(\d+)\nconnect with: gdb -q -ex 'target remote 127\.0\.0\.1:\d+'\n/.exec(stdout);
      if (m) resolve(Number(m[1]));
    });
    server.once('exit', (code) => reject(new Error(`debug exited (${code}) before listening: ${stdout}`)));
  });
  const exited = new Promise<number | null>((resolve) => server.once('exit', resolve));
  const g = await new Promise<string>((resolve) => {
    const p = spawn('gdb', ['-batch', '-nx', '-ex', `target remote 127.0.0.1:${port}`, '-ex', 'print $pc', '-ex', 'break square', '-ex', 'continue', '-ex', 'print x'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.once('exit', () => resolve(out));
  });
  t.regex(g, /\$1 = \(void \(\*\)\(\)\) 0x[0-9a-f]+ <_start>/, g);
  t.regex(g, /Breakpoint 1, square \(x=1\)/, g);
  t.regex(g, /\$2 = 1\n/, g);
  t.is(await exited, 0);
});

test.serial('info proc mappings: the regions of the replayed process, with the program and libc named', (t) => {
  const g = gdb(basicTrace, ['break main', 'continue', 'info proc mappings']);
  t.regex(g.out[2], /^process \d+\nMapped address spaces:\n/, g.all);
  t.regex(g.out[2], /debug_basic-[0-9a-f]+\n/, g.all);
  t.regex(g.out[2], /\/libc\.so\.6\n/, g.all);
  t.regex(g.out[2], /\[stack\]\n/, g.all);
  t.notRegex(g.stderr, /unable to open \/proc file/, g.all);
});
