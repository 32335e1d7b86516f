// `replay-anywhere debug`: its help, and bad input as one-line errors with a non-zero exit.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture } from '../helpers/fixtures.ts';
import { CLI, cli } from '../helpers/round-trip.ts';

const dir = mkdtempSync(join(tmpdir(), 'ra-debug-cmd-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

let trace: string;
test.before(() => {
  trace = join(dir, 'hello.rrz');
  const r = cli(['record', '-o', trace, '--', fixture('hello')]);
  if (r.status !== 0) throw new Error(r.stderr);
});

/** One line on stderr, prefixed like every other command's errors. */
function oneLineError(t: import('ava').ExecutionContext, r: { status: number | null; stderr: string }, pattern: RegExp): void {
  t.not(r.status, 0);
  t.is(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
  t.regex(r.stderr, /^replay-anywhere: debug: /);
  t.regex(r.stderr, pattern);
}

test('--help documents every option and the exit status', (t) => {
  const r = cli(['debug', '--help']);
  t.is(r.status, 0);
  const help = r.stdout.toString();
  for (const option of ['--pid PID', '--goto EVENT', '--gdb PATH', '--port N', '--host ADDR', '-- GDB-ARGS']) t.true(help.includes(option), option);
  t.regex(help, /full read access to the\s+recorded memory/);
  t.regex(help, /exit status/);
  t.regex(cli(['--help']).stdout.toString(), /\n  debug +debug a trace with gdb/);
});

test('a missing trace, a bad pid, event or port are one-line errors', (t) => {
  oneLineError(t, cli(['debug']), /which trace\?/);
  oneLineError(t, cli(['debug', join(dir, 'none.rrz')]), /no such file/);
  oneLineError(t, cli(['debug', trace, '--pid', '1']), /process 1 never runs in this trace/);
  oneLineError(t, cli(['debug', trace, '--pid', 'x']), /--pid needs a non-negative integer/);
  oneLineError(t, cli(['debug', trace, '--goto', '100000']), /--goto 100000: the trace has events 0 to \d+/);
  oneLineError(t, cli(['debug', trace, '--port', '65536']), /not a TCP port/);
  oneLineError(t, cli(['debug', trace, '--port', '0', '--', '-batch']), /need gdb started by this command/);
  oneLineError(t, cli(['debug', trace, '--bogus']), /unknown option --bogus/);
});

test('gdb missing: a one-line error naming the way out', (t) => {
  oneLineError(t, cli(['debug', trace, '--gdb', join(dir, 'no-gdb')]), /--gdb \S+no-gdb: no such executable/);
  const r = spawnSync(process.execPath, [CLI, 'debug', trace], { env: { ...process.env, PATH: dir }, encoding: 'utf8' });
  oneLineError(t, { status: r.status, stderr: r.stderr }, /gdb is not installed \(Debian: apt-get install gdb\)/);
});

test('a port in use is a one-line error', async (t) => {
  const busy = createServer();
  busy.listen(0, '127.0.0.1');
  await once(busy, 'listening');
  t.teardown(() => busy.close());
  const port = (busy.address() as { port: number }).port;
  const r = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
    const p = spawn(process.execPath, [CLI, 'debug', trace, '--port', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.once('exit', (status) => resolve({ status, stderr }));
  });
  oneLineError(t, r, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is in use`));
});

test('--host with a non-loopback address warns that the recorded memory is readable', async (t) => {
  const p = spawn(process.execPath, [CLI, 'debug', trace, '--port', '0', '--host', '0.0.0.0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => p.kill());
  let stdout = '';
  let stderr = '';
  p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes('connect with')) resolve();
    });
    p.once('exit', () => reject(new Error(`exited: ${stderr}`)));
  });
  t.regex(stdout, /^listening on 0\.0\.0\.0:\d+\nconnect with: gdb -q -ex 'target remote 127\.0\.0\.1:\d+'\n$/);
  t.regex(stderr, /^replay-anywhere: warning: listening on 0\.0\.0\.0, not a loopback address: whoever can reach port \d+ can read all of the recorded memory\n$/);
});
