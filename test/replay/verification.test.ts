// The replay checks every event against the trace: a tampered trace diverges at the tampered event
// with a precise report; bad files end in one-line errors.
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TraceReader } from '../../src/trace/reader.ts';
import { TraceWriter } from '../../src/trace/writer.ts';
import type { SyscallEvent, TraceEvent } from '../../src/trace/schema.ts';
import { setReg } from '../../src/replay/registers.ts';
import { fixture } from '../helpers/fixtures.ts';
import { cli } from '../helpers/round-trip.ts';

const dir = mkdtempSync(join(tmpdir(), 'ra-verify-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const original = join(dir, 'hello.rrz');
test.before(() => {
  const r = cli(['record', '-o', original, '--', fixture('hello')]);
  if (r.status !== 0) throw new Error(r.stderr);
});

/** Copy the trace, passing each event through `edit`. Blobs are re-added from the original. */
function rewrite(path: string, edit: (ev: TraceEvent, n: number) => TraceEvent): void {
  const r = TraceReader.open(original);
  const { formatMajor, formatMinor, ...header } = r.header;
  void formatMajor, formatMinor;
  const w = TraceWriter.create(path, header);
  for (const ref of r.blobRefs()) w.addBlob(r.blob(ref));
  let n = 0;
  for (const ev of r.events()) w.append(edit(ev, n++));
  w.close({ complete: true });
  r.close();
}

function writeEventNumber(): number {
  const r = TraceReader.open(original);
  let n = 0;
  for (const ev of r.events()) {
    if (ev.kind === 'syscall' && ev.number === 1) return n;
    n++;
  }
  throw new Error('no write in the trace');
}

test('the untouched trace verifies', (t) => {
  const r = cli(['run', original]);
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout.toString(), 'hello, world\n');
});

test('a syscall argument changed in the trace is a divergence at that event, registers side by side', (t) => {
  const tampered = join(dir, 'tampered-arg.rrz');
  const target = writeEventNumber();
  rewrite(tampered, (ev, n) => {
    if (n !== target) return ev;
    const regs = Uint8Array.from((ev as SyscallEvent).regs);
    setReg(regs, 'rdx', 99n);  // the byte count of write(1, buf, 13)
    return { ...ev, regs } as SyscallEvent;
  });
  const summary = join(dir, 'summary.json');
  const r = cli(['run', '--summary-json', summary, tampered]);
  t.is(r.status, 125);
  t.is(r.stdout.length, 0);
  t.regex(r.stderr, new RegExp(`^replay-anywhere: divergence at event ${target}: registers differ at syscall write: rdx \\(rdx recorded 0x63, replayed 0xd\\)`));
  t.regex(r.stderr, /rdx +0x63 +0xd +<-- differs/);
  t.regex(r.stderr, /last blocks executed:\n {2}block 0x[0-9a-f]+/);
  const s = JSON.parse(readFileSync(summary, 'utf8'));
  t.false(s.verified);
  t.deepEqual(s.divergence, { event: target, reason: 'registers differ at syscall write: rdx (rdx recorded 0x63, replayed 0xd)' });
});

test('a different syscall number in the trace is a divergence naming both syscalls', (t) => {
  const tampered = join(dir, 'tampered-nr.rrz');
  const target = writeEventNumber();
  rewrite(tampered, (ev, n) => (n === target ? ({ ...ev, number: 0 } as SyscallEvent) : ev));
  const r = cli(['run', tampered]);
  t.is(r.status, 125);
  t.regex(r.stderr, new RegExp(`divergence at event ${target}: expected syscall read \\(0\\), the program made write \\(1\\)`));
});

test('run on a file that is not a trace: one line, exit 1', (t) => {
  const junk = join(dir, 'junk.rrz');
  writeFileSync(junk, 'not a trace at all, just some text that is long enough');
  const r = cli(['run', junk]);
  t.is(r.status, 1);
  t.regex(r.stderr, /^replay-anywhere: run: .*junk\.rrz: not a replay-anywhere trace.*\n$/);
  t.is(r.stderr.split('\n').length, 2);
});

test('run on a missing file and with no file', (t) => {
  const missing = cli(['run', join(dir, 'nope.rrz')]);
  t.is(missing.status, 1);
  t.regex(missing.stderr, /^replay-anywhere: run: no such file: .*nope\.rrz\n$/);
  const none = cli(['run']);
  t.is(none.status, 2);
  t.is(none.stderr, 'replay-anywhere: run: which trace? (usage: replay-anywhere run FILE)\n');
});

test('a trace cut short replays what it has and says so', (t) => {
  const data = readFileSync(original);
  const cut = join(dir, 'cut.rrz');
  writeFileSync(cut, data.subarray(0, Math.floor(data.length * 0.9)));
  const r = cli(['run', '--quiet', cut]);
  t.is(r.status, 1);
  t.is(r.stderr, 'replay-anywhere: the trace ends before the program exited (it was cut short)\n');
});
