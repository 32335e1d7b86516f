// Processes: fork, vfork, posix_spawn, exec and wait, recorded for real (ptrace) and replayed in the
// emulator, one address space per process. Exact outputs, exit statuses and verification.
import test from 'ava';
import { fixture } from '../helpers/fixtures.ts';
import { cli, recordAndReplay, replaysExactly } from '../helpers/round-trip.ts';

const same = replaysExactly;

interface InfoProcess { pid: number; parent?: number; argv: string[]; exitCode?: number | null; exitSignal?: number | null }
function processes(trace: string): InfoProcess[] {
  const r = cli(['info', '--json', trace]);
  return JSON.parse(r.stdout.toString()).processes;
}

test.serial('fork + wait: the child exit code reaches the parent', (t) => {
  const rt = same(t, [fixture('fork_wait')], 'child: value 42\nparent: value 7, child exited with 42\n');
  const ps = processes(rt.trace);
  t.is(ps.length, 2);
  t.is(ps[1].parent, ps[0].pid);
  t.is(ps[1].exitCode, 42);
  t.is(ps[0].exitCode, 0);
});

test.serial('fork + exec + wait: the child runs /bin/echo; record and run exit with the first process status', (t) => {
  const rt = same(t, [fixture('fork_exec')], 'before fork\nhello from echo\necho exited with 0\n', 3);
  const ps = processes(rt.trace);
  t.deepEqual(ps.map((p) => p.argv), [[fixture('fork_exec')], ['echo', 'hello', 'from', 'echo']]);
  t.deepEqual(ps.map((p) => p.exitCode), [3, 0]);
  // dump --pid shows only the child's events.
  const dump = cli(['dump', '--json', '--pid', String(ps[1].pid), rt.trace]);
  t.is(dump.status, 0, dump.stderr);
  const events: { pid: number; kind: string }[] = JSON.parse(dump.stdout.toString());
  t.true(events.length > 10);
  t.true(events.every((e) => e.pid === ps[1].pid));
  t.true(events.some((e) => e.kind === 'exec'));
});

test.serial('posix_spawn of /bin/echo (clone with CLONE_VM | CLONE_VFORK)', (t) => {
  same(t, [fixture('spawn'), '/bin/echo', 'spawned', 'echo'], 'spawned echo\n/bin/echo exited with 0\n');
});

test.serial('posix_spawn of /bin/true', (t) => {
  same(t, [fixture('spawn'), '/bin/true'], '/bin/true exited with 0\n');
});

test.serial('vfork + exec: the child shares the parent memory until it execs', (t) => {
  same(t, [fixture('vfork_exec')], 'vforked\nparent sees 9, child status 0\n');
});

test.serial('a pipeline between two children', (t) => {
  const rt = same(t, [fixture('pipeline')], 'reader: 100 numbers, sum 338350\nwriter 0, reader 0\n');
  t.is(processes(rt.trace).length, 3);
});

test.serial('syscalls interrupted by an unhandled SIGCHLD are restarted (read: ERESTARTSYS, nanosleep: restart_syscall)', (t) => {
  const rt = same(t, [fixture('restart')], 'read 5 bytes: late\nnanosleep returned 0\n');
  const dump = JSON.parse(cli(['dump', '--json', rt.trace]).stdout.toString()) as { kind: string; syscall?: string; result?: number }[];
  const syscalls = dump.filter((e) => e.kind === 'syscall');
  t.true(syscalls.some((e) => e.syscall === 'read' && e.result === -512), 'a read interrupted with ERESTARTSYS');
  t.true(syscalls.some((e) => e.syscall === 'clock_nanosleep' && e.result === -516), 'a nanosleep interrupted with ERESTART_RESTARTBLOCK');
  t.true(syscalls.some((e) => e.syscall === 'restart_syscall'));
});

test.serial('a SIGCHLD handler reaps the child while the parent waits in pause()', (t) => {
  const rt = same(t, [fixture('sigchld')], 'reaped the child in the SIGCHLD handler: status 5\n');
  const dump = JSON.parse(cli(['dump', '--json', rt.trace]).stdout.toString()) as { kind: string; signo?: number }[];
  t.true(dump.some((e) => e.kind === 'signal' && e.signo === 17));
});

test.serial("Debian's sh: ls /usr/bin | sort | head -5 (only the user's output is echoed, SIGCHLD handler, SIGPIPE)", (t) => {
  const rt = recordAndReplay(['/bin/sh', '-c', 'ls /usr/bin | sort | head -5']);
  t.teardown(rt.cleanup);
  t.is(rt.recorded.status, 0, rt.recorded.stderr);
  t.is(rt.recorded.stdout.toString().split('\n').length, 6);
  t.is(rt.summary.divergence, null, rt.replayed.stderr);
  t.is(rt.replayed.status, 0);
  t.is(rt.replayed.stdout.toString(), rt.recorded.stdout.toString());
  const ps = processes(rt.trace);
  t.deepEqual(ps.map((p) => p.argv), [['/bin/sh', '-c', 'ls /usr/bin | sort | head -5'], ['ls', '/usr/bin'], ['sort'], ['head', '-5']]);
});

test.serial("output goes back to the stream the user saw it on, whatever fd the process wrote to (1>&2)", (t) => {
  const rt = recordAndReplay(['/bin/sh', '-c', '/bin/echo out; /bin/echo swapped 1>&2']);
  t.teardown(rt.cleanup);
  t.is(rt.recorded.status, 0, rt.recorded.stderr);
  t.true(rt.summary.verified, rt.replayed.stderr);
  t.is(rt.recorded.stdout.toString(), 'out\n');
  t.is(rt.replayed.stdout.toString(), 'out\n');
  t.regex(rt.recorded.stderr, /^swapped$/m);
  t.regex(rt.replayed.stderr, /^swapped$/m);
});
