// Threads (no PMU): the recorder runs one thread of a process at a time and switches at syscalls
// that block (futex waits...), writing a switch event; replay swaps thread contexts in the
// process's address space at those events. Real programs, recorded for real and replayed.
import test, { type ExecutionContext } from 'ava';
import { fixture } from '../helpers/fixtures.ts';
import { cli, recordAndReplay, type RoundTrip, replaysExactly } from '../helpers/round-trip.ts';
import { Replayer } from '../../src/replay/replayer.ts';
import { TraceReader } from '../../src/trace/reader.ts';

const pthread = (name: string) => fixture(name, ['-O1', '-pthread']);

const same = replaysExactly;

interface DumpEvent { kind: string; pid: number; tid: number; syscall?: string; noReturn?: boolean; processExit?: boolean; argv?: string[] }
function events(trace: string): DumpEvent[] {
  const r = cli(['dump', '--json', trace]);
  return JSON.parse(r.stdout.toString());
}

/** The threads seen in the trace, and how many switch events it has. */
function threadStats(trace: string): { tids: Set<number>; switches: number; pids: Set<number> } {
  const evs = events(trace);
  return { tids: new Set(evs.map((e) => e.tid)), pids: new Set(evs.map((e) => e.pid)), switches: evs.filter((e) => e.kind === 'switch').length };
}

test.serial('one thread: pthread_create and pthread_join with a return value', (t) => {
  const rt = same(t, [pthread('thread')], 'starting a thread\njoined: 42\n');
  const s = threadStats(rt.trace);
  t.is(s.pids.size, 1);
  t.is(s.tids.size, 2);
  t.true(s.switches >= 2);
  const info = JSON.parse(cli(['info', '--json', rt.trace]).stdout.toString());
  t.true(info.complete);
});

test.serial('two threads increment a counter under a mutex', (t) => {
  const rt = same(t, [pthread('thread_mutex')], 'counter = 200000\n');
  const s = threadStats(rt.trace);
  t.is(s.tids.size, 3);
  t.true(s.switches >= 2);
});

test.serial('eight threads take turns with a condition variable', (t) => {
  const rt = same(t, [pthread('thread_cond')], 'turns 40 total 420\n');
  const s = threadStats(rt.trace);
  t.is(s.tids.size, 9);
  t.true(s.switches > 8);
});

test.serial('producer/consumer through a bounded queue', (t) => {
  const rt = same(t, [pthread('thread_queue')], 'consumed sum 500500\n');
  t.true(threadStats(rt.trace).switches > 10);
});

test.serial('threads exit (pthread_exit, return) while others run; pthread_join sees the cleared tid', (t) => {
  const rt = same(t, [pthread('thread_exit')], 'quick results 306, slow 7, done 26\n');
  const exits = events(rt.trace).filter((e) => e.kind === 'exit');
  t.is(exits.length, 5);
});

test.serial('python3 threading: four threads sum ranges', (t) => {
  const script = [
    'import threading',
    'res = [0] * 4',
    'def work(i): res[i] = sum(range(i * 100000, (i + 1) * 100000))',
    'ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]',
    'for x in ts: x.start()',
    'for x in ts: x.join()',
    'print("total", sum(res))',
  ].join('\n');
  const rt = same(t, ['/usr/bin/python3', '-c', script], 'total 79999800000\n');
  t.true(threadStats(rt.trace).tids.size >= 5);
});

test.serial('a thread spinning in user code while another waits stops the recording: it needs a PMU', (t) => {
  process.env.RA_SPIN_TIMEOUT = '1';
  let rt: RoundTrip;
  try {
    rt = recordAndReplay([pthread('thread_spin')]);
  } finally {
    delete process.env.RA_SPIN_TIMEOUT;
  }
  t.teardown(rt.cleanup);
  t.not(rt.recorded.status, 0);
  t.is(rt.recorded.stdout.toString(), 'spinning\n');
  t.regex(rt.recorded.stderr, /ran 1 s without a syscall while another thread waited to run: .*this program needs a PMU/);
  const info = JSON.parse(cli(['info', '--json', rt.trace]).stdout.toString());
  t.false(info.complete);
  // What was recorded replays, up to the incomplete end.
  t.is(rt.summary.divergence, null, rt.replayed.stderr);
  t.is(rt.replayed.stdout.toString(), 'spinning\n');
});

test.serial('a priority-inheritance mutex: uncontended it records and replays; contended, the recording stops naming FUTEX_LOCK_PI', (t) => {
  const rt = recordAndReplay([pthread('thread_pi')]);
  t.teardown(rt.cleanup);
  t.is(rt.recorded.stdout.toString(), 'counter 60000\n', rt.recorded.stderr);
  t.is(rt.summary.divergence, null, rt.replayed.stderr);
  t.is(rt.replayed.stdout.toString(), 'counter 60000\n');
  process.env.RA_SPIN_TIMEOUT = '1';
  let contended: RoundTrip;
  try {
    contended = recordAndReplay([pthread('thread_pi'), 'contended']);
  } finally {
    delete process.env.RA_SPIN_TIMEOUT;
  }
  t.teardown(contended.cleanup);
  t.not(contended.recorded.status, 0);
  t.regex(contended.recorded.stderr, /has waited 1 s in futex \(op 6, FUTEX_LOCK_PI: a contended priority-inheritance mutex\) while another thread waited to run: .*cannot be recorded yet/);
  t.is(contended.summary.divergence, null, contended.replayed.stderr);
});

// exec while other threads live: the kernel ends them and the new image runs as the process's
// only thread, with the process's pid as its tid (an exec'ing thread other than the main one takes
// it; its own tid vanishes without a report).
interface Info { complete: boolean; threads: number; processes: { pid: number; argv: string[]; threads: number[]; exitCode?: number | null; exitSignal?: number | null }[] }
const info = (trace: string): Info => JSON.parse(cli(['info', '--json', trace]).stdout.toString());

/** Checks an exec from thread `execer` of a process of `threads` threads, all of which but the
 * exec'ing one end with an exit event before the exec event. Returns the process's pid. */
function execAmongThreads(t: ExecutionContext, rt: RoundTrip, threads: number, fromMain: boolean, argv: string[]): number {
  const evs = events(rt.trace);
  const i = info(rt.trace);
  t.true(i.complete);
  t.is(i.processes.length, 1);
  const p = i.processes[0];
  t.deepEqual(p.argv, argv);
  t.is(p.threads.length, threads);
  t.is(i.threads, threads);
  t.is(p.exitCode, 0);
  t.is(p.exitSignal, null);
  const execs = evs.filter((e) => e.kind === 'exec');
  t.is(execs.length, 2);
  const exec = evs.indexOf(execs[1]);
  t.is(execs[1].pid, p.pid);
  t.is(execs[1].tid, p.pid);
  // The execve event is the exec'ing thread's, just before the exec event (after the leader's end
  // when another thread exec'ed).
  const execve = evs.slice(0, exec).reverse().find((e) => e.kind === 'syscall');
  t.is(execve?.syscall, 'execve');
  t.true(execve?.noReturn);
  t.is(execve!.tid === p.pid, fromMain);
  // Every other thread of the old image ended before the new image ran; the new image is one thread.
  const before = evs.slice(0, exec);
  const ended = new Set(before.filter((e) => e.kind === 'exit').map((e) => e.tid));
  t.false(before.some((e) => e.kind === 'exit' && e.processExit));
  t.deepEqual([...ended].sort(), p.threads.filter((tid) => tid !== execve!.tid).sort());
  const after = evs.slice(exec);
  t.deepEqual(new Set(after.map((e) => e.tid)), new Set([p.pid]));
  t.is(after.filter((e) => e.kind === 'exit' && e.processExit).length, 1);
  return p.pid;
}

test.serial('exec from the main thread while a second thread sleeps', (t) => {
  const rt = same(t, [pthread('thread_exec'), 'main'], 'two threads, now exec\nafter exec from the main thread\n');
  execAmongThreads(t, rt, 2, true, ['echo', 'after exec from the main thread']);
});

test.serial('exec from the main thread while four other threads live, three of them waiting in the kernel', (t) => {
  const rt = same(t, [pthread('thread_exec'), 'main', '3'], 'two threads, now exec\nafter exec from the main thread\n');
  execAmongThreads(t, rt, 5, true, ['echo', 'after exec from the main thread']);
});

test.serial('exec from a second thread while the main thread waits in pthread_join: it takes the process\'s pid', (t) => {
  const started = Date.now();
  const rt = same(t, [pthread('thread_exec'), 'second'], 'two threads, now exec\nafter exec from the second thread\n');
  t.true(Date.now() - started < 8000, 'the recorder waited for the exec\'ing thread\'s vanished tid');
  const pid = execAmongThreads(t, rt, 2, false, ['echo', 'after exec from the second thread']);
  // Replay: from the exec event on, the process has one thread, the new image's, under its pid.
  const reader = TraceReader.open(rt.trace);
  const replayer = new Replayer(reader, {});
  try {
    for (const ev of reader.events(0)) {
      replayer.apply(ev);
      replayer.eventNumber++;
      if (ev.kind === 'exec' && replayer.eventNumber > 1) {
        t.deepEqual(replayer.threadsOf(pid).map((x) => x.tid), [pid]);
        t.is(replayer.machineOf(pid), replayer.threadsOf(pid)[0].space.machine);
        break;
      }
    }
  } finally {
    replayer.closeAll();
    reader.close();
  }
});

test.serial('exec from a second thread while the main thread and three more threads wait in the kernel', (t) => {
  const rt = same(t, [pthread('thread_exec'), 'second', '3'], 'two threads, now exec\nafter exec from the second thread\n');
  execAmongThreads(t, rt, 5, false, ['echo', 'after exec from the second thread']);
});
