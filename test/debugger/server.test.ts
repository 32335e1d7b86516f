// The protocol server over a made-up target, driven packet by packet through a real TCP
// connection: what every supported packet answers, what the target is asked to do.
import test, { type ExecutionContext } from 'ava';
import { connect, createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { frame, PacketDecoder, unescapeBinary } from '../../src/debugger/gdb/packets.ts';
import { encodeRegisters, gdbRegNumber, readRegister, toHex } from '../../src/debugger/gdb/registers.ts';
import { serveGdb, type SessionEnd } from '../../src/debugger/gdb/server.ts';
import { TARGET_XML } from '../../src/debugger/gdb/target-description.ts';
import { FakeTarget } from './fake-target.ts';

class Client {
  private readonly decoder = new PacketDecoder();
  private readonly replies: Buffer[] = [];
  private waiting: ((b: Buffer) => void) | null = null;
  acks = 0;
  ackMode = true;

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const item of this.decoder.feed(chunk)) {
        if (item.kind === 'ack') this.acks++;
        if (item.kind !== 'packet') continue;
        if (this.ackMode) socket.write('+');
        if (this.waiting) {
          const w = this.waiting;
          this.waiting = null;
          w(item.data);
        } else {
          this.replies.push(item.data);
        }
      }
    });
  }

  next(): Promise<Buffer> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    return new Promise((resolve) => (this.waiting = resolve));
  }

  async ask(packet: string | Buffer): Promise<string> {
    return (await this.askRaw(packet)).toString('latin1');
  }

  askRaw(packet: string | Buffer): Promise<Buffer> {
    this.socket.write(frame(packet));
    return this.next();
  }

  send(packet: string): void {
    this.socket.write(frame(packet));
  }
}

interface Setup {
  target: FakeTarget;
  client: Client;
  ended: Promise<SessionEnd>;
  notices: string[];
}

async function setup(t: ExecutionContext, prepare?: (target: FakeTarget) => void, features = 'multiprocess+;swbreak+;hwbreak+'): Promise<Setup> {
  const target = new FakeTarget();
  target.memory.push({ start: 0x400000, bytes: Uint8Array.from({ length: 0x100 }, (_, i) => i) });
  target.files.set('/home/someone/prog', Buffer.from('\x7fELF and the rest of the program $#}*'));
  target.files.set('/usr/lib/x86_64-linux-gnu/libc.so.6', Buffer.from('libc'));
  prepare?.(target);
  const notices: string[] = [];
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  let ended!: Promise<SessionEnd>;
  const accepted = new Promise<void>((resolve) =>
    server.once('connection', (s) => {
      ended = serveGdb(target, s, { notice: (m) => notices.push(m) });
      resolve();
    }),
  );
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  await accepted;
  server.close();
  t.teardown(() => socket.destroy());
  const client = new Client(socket);
  if (features !== '') {
    const supported = await client.ask(`qSupported:${features}`);
    t.true(supported.startsWith('PacketSize='), supported);
  }
  return { target, client, ended, notices };
}

async function noAck(s: Setup): Promise<void> {
  s.client.ackMode = true;
  const ok = await s.client.ask('QStartNoAckMode');
  if (ok !== 'OK') throw new Error(ok);
  s.client.ackMode = false;
}

test('qSupported announces what the server does, multiprocess only when gdb offers it', async (t) => {
  const { client } = await setup(t, undefined, '');
  const reply = await client.ask('qSupported:swbreak+;hwbreak+;xmlRegisters=i386');
  const features = reply.split(';');
  for (const f of ['qXfer:features:read+', 'qXfer:auxv:read+', 'qXfer:exec-file:read+', 'QStartNoAckMode+', 'ReverseContinue+', 'ReverseStep+', 'swbreak+', 'hwbreak+', 'vContSupported+']) {
    t.true(features.includes(f), f);
  }
  t.regex(features[0], /^PacketSize=[0-9a-f]+$/);
  t.false(features.includes('multiprocess+'));
  t.is(await client.ask('qC'), 'QC1092'); // 4242 in hex, no p<pid>. part
  t.is(await client.ask('qfThreadInfo'), 'm1092,1093');
  const multi = await client.ask('qSupported:multiprocess+;swbreak+');
  t.true(multi.split(';').includes('multiprocess+'));
  t.is(await client.ask('qC'), 'QCp1092.1092');
  t.is(await client.ask('qfThreadInfo'), 'mp1092.1092,p1092.1093');
  t.is(await client.ask('qsThreadInfo'), 'l');
});

test('acks until QStartNoAckMode, none after', async (t) => {
  const s = await setup(t);
  const before = s.client.acks;
  t.true(before >= 1, 'qSupported was acked');
  await noAck(s);
  const acksAfterSwitch = s.client.acks;
  t.is(await s.client.ask('qAttached'), '1');
  t.is(await s.client.ask('vMustReplyEmpty'), '');
  t.is(s.client.acks, acksAfterSwitch);
});

test('? and registers: the stopped thread, expedited registers, g and p', async (t) => {
  const s = await setup(t);
  await noAck(s);
  const main = s.target.registers(4242);
  const rip = toHex(readRegister(main, gdbRegNumber('rip')));
  const stop = await s.client.ask('?');
  t.is(stop, `T05thread:p1092.1092;6:${toHex(readRegister(main, 6))};7:${toHex(readRegister(main, 7))};10:${rip};`);
  t.is(await s.client.ask('g'), toHex(encodeRegisters(main)));
  t.is(await s.client.ask('p10'), rip);
  t.is(await s.client.ask('p3b'), toHex(readRegister(main, 59)));
  t.regex(await s.client.ask('p3c'), /^E/);
  // Another thread's registers after Hg.
  t.is(await s.client.ask('Hgp1092.1093'), 'OK');
  t.is(await s.client.ask('g'), toHex(encodeRegisters(s.target.registers(4243))));
  t.is(await s.client.ask('Hg1093'), 'OK');
  t.is(await s.client.ask('p0'), toHex(readRegister(s.target.registers(4243), 0)));
  t.regex(await s.client.ask('Hgp1092.99'), /^E\./);
  t.is(await s.client.ask('Tp1092.1093'), 'OK');
  t.is(await s.client.ask('T99'), 'E01');
  t.is(await s.client.ask('Tp77.1093'), 'E01', 'another process');
  t.is(await s.client.ask('Hg0'), 'OK');
  t.is(await s.client.ask('g'), toHex(encodeRegisters(main)));
});

test('memory reads: whole, short at the end of a mapping, error when nothing is readable', async (t) => {
  const s = await setup(t);
  await noAck(s);
  t.is(await s.client.ask('m400010,4'), '10111213');
  t.is(await s.client.ask('m4000fe,8'), 'feff', 'short read up to the unmapped page');
  t.is(await s.client.ask('m500000,4'), 'E14');
  t.is(await s.client.ask('mffffffffff600000,8'), 'E14', 'beyond what a replay maps');
  t.is(await s.client.ask('m400000,0'), '');
});

test('writes are refused with a message gdb shows, and the terminal is told', async (t) => {
  const s = await setup(t);
  await noAck(s);
  const g = await s.client.ask('G' + '00'.repeat(560));
  t.regex(g, /^E\.cannot write registers: this is a replay: the recorded past cannot be changed$/);
  t.regex(await s.client.ask('P10=0000000000000000'), /^E\.cannot write register rip: this is a replay/);
  t.regex(await s.client.ask('M400000,2:abcd'), /^E\.cannot write 2 bytes of memory at 0x400000: this is a replay/);
  t.regex(await s.client.ask(Buffer.concat([Buffer.from('X400000,2:'), Buffer.from([0x7d, 0x03, 0x01])])), /^E\.cannot write 2 bytes of memory at 0x400000/);
  t.regex(await s.client.ask('c400000'), /^E\.cannot resume at 0x400000/);
  t.is(await s.client.ask('X400000,0:'), 'OK', "gdb's probe for X writes nothing");
  t.is(s.notices.length, 5);
  t.regex(s.notices[0], /refused, this is a replay/);
  t.deepEqual(s.target.resumes, []);
});

test('breakpoints go to the target once per address; stops report swbreak or hwbreak', async (t) => {
  const s = await setup(t);
  await noAck(s);
  t.is(await s.client.ask('Z0,401000,1'), 'OK');
  t.is(await s.client.ask('Z1,401000,1'), 'OK');
  t.is(await s.client.ask('Z1,402000,1'), 'OK');
  t.deepEqual(s.target.calls, ['setBreakpoint 401000', 'setBreakpoint 402000']);
  s.target.stops.push({ tid: 4243, cause: { kind: 'breakpoint', address: 0x401000 } }, { tid: 4242, cause: { kind: 'breakpoint', address: 0x402000 } });
  t.regex(await s.client.ask('vCont;c:p1092.-1'), /^T05thread:p1092\.1093;.*;swbreak:;$/);
  t.regex(await s.client.ask('vCont;c'), /^T05thread:p1092\.1092;.*;hwbreak:;$/);
  t.deepEqual(s.target.resumes.map((r) => r.tid), [4242, 4243], 'continuing all threads names the one that stopped last');
  t.is(await s.client.ask('z0,401000,1'), 'OK');
  t.is(await s.client.ask('z1,401000,1'), 'OK');
  t.is(await s.client.ask('z1,402000,1'), 'OK');
  t.is(await s.client.ask('z0,403000,1'), 'OK', 'removing an absent breakpoint is harmless');
  t.deepEqual(s.target.calls.slice(2), ['removeBreakpoint 401000', 'removeBreakpoint 402000']);
});

test('watchpoints of any length and kind; stops name the data address', async (t) => {
  const s = await setup(t);
  await noAck(s);
  t.is(await s.client.ask('Z2,601040,4'), 'OK');
  t.is(await s.client.ask('Z3,601100,1000'), 'OK');
  t.is(await s.client.ask('Z4,601003,3'), 'OK');
  t.deepEqual(s.target.calls, ['setWatchpoint 601040 4 write', 'setWatchpoint 601100 4096 read', 'setWatchpoint 601003 3 access']);
  s.target.stops.push(
    { tid: 4242, cause: { kind: 'watchpoint', watch: 'write', address: 0x601042 } },
    { tid: 4243, cause: { kind: 'watchpoint', watch: 'read', address: 0x601100 } },
    { tid: 4242, cause: { kind: 'watchpoint', watch: 'access', address: 0x601004 } },
  );
  t.regex(await s.client.ask('c'), /;watch:601042;$/);
  t.regex(await s.client.ask('bc'), /^T05thread:p1092\.1093;.*;rwatch:601100;$/);
  t.deepEqual(s.target.resumes.slice(1), [{ direction: 'backward', step: false, tid: 4242 }]);
  t.regex(await s.client.ask('vCont;c'), /;awatch:601004;$/);
  t.is(await s.client.ask('z2,601040,4'), 'OK');
  t.is(await s.client.ask('z3,601100,1000'), 'OK');
  t.is(await s.client.ask('z4,601003,3'), 'OK');
  t.deepEqual(s.target.calls.slice(3), ['removeWatchpoint 601040 4 write', 'removeWatchpoint 601100 4096 read', 'removeWatchpoint 601003 3 access']);
  t.is(await s.client.ask('Z5,0,0'), '', 'unknown breakpoint types are unsupported');
});

test('resumes: forward and backward, step and continue, of the thread gdb names', async (t) => {
  const s = await setup(t);
  await noAck(s);
  s.target.stops.push(
    { tid: 4243, cause: { kind: 'step' } },
    { tid: 4243, cause: { kind: 'step' } },
    { tid: 4242, cause: { kind: 'replay-start' } },
    { tid: 4242, cause: { kind: 'replay-end' } },
    { tid: 4242, cause: { kind: 'step' } },
    { tid: 4242, cause: { kind: 'step' } },
  );
  t.regex(await s.client.ask('vCont;s:p1092.1093;c:p1092.-1'), /^T05thread:p1092\.1093;[^]*;$/);
  t.is(await s.client.ask('Hcp1092.1093'), 'OK');
  t.regex(await s.client.ask('bs'), /^T05thread:p1092\.1093;/);
  t.regex(await s.client.ask('bc'), /^T05thread:p1092\.1092;.*;replaylog:begin;$/);
  t.regex(await s.client.ask('vCont;c:-1'), /;replaylog:end;$/);
  t.regex(await s.client.ask('s'), /^T05/);
  t.regex(await s.client.ask('vCont;S0b:p1092.1092'), /^T05/, 'a signal gdb would deliver is ignored: the recording decides');
  t.deepEqual(s.target.resumes, [
    { direction: 'forward', step: true, tid: 4243 },
    { direction: 'backward', step: true, tid: 4243 },
    { direction: 'backward', step: false, tid: 4243 },
    { direction: 'forward', step: false, tid: 4242 },
    { direction: 'forward', step: true, tid: 4242 },
    { direction: 'forward', step: true, tid: 4242 },
  ]);
  t.is(await s.client.ask('vCont?'), 'vCont;c;C;s;S');
  t.regex(await s.client.ask('vCont;t:p1092.1092'), /^E\./);
});

test('signals, exit codes and deaths in stop replies use gdb numbers', async (t) => {
  const s = await setup(t, undefined, 'swbreak+');
  await noAck(s);
  s.target.stops.push(
    { tid: 4242, cause: { kind: 'signal', signo: 11 } },
    { tid: 4242, cause: { kind: 'signal', signo: 10 } },
    { tid: 4242, cause: { kind: 'signal', signo: 34 } },
    { tid: 4242, cause: { kind: 'exited', code: 42, signal: null } },
  );
  t.regex(await s.client.ask('c'), /^T0bthread:1092;/);
  t.regex(await s.client.ask('c'), /^T1ethread:1092;/, 'SIGUSR1 is 30 for gdb');
  t.regex(await s.client.ask('c'), /^T2ethread:1092;/, 'SIGRTMIN+2 (34) is gdb 46');
  t.is(await s.client.ask('c'), 'W2a');
  t.is(await s.client.ask('?'), 'W2a');
  t.is(await s.client.ask('qfThreadInfo'), 'l');
  t.is(s.target.resumes.length, 3 + 1);
  t.is(await s.client.ask('c'), 'W2a', 'nothing runs after the exit');
  t.is(s.target.resumes.length, 4);

  const k = await setup(t);
  k.target.stops.push({ tid: 4242, cause: { kind: 'exited', code: null, signal: 9 } });
  t.is(await k.client.ask('c'), 'X09;process:1092');
});

test('an interrupt byte while the target runs stops it: T02', async (t) => {
  const s = await setup(t);
  await noAck(s);
  s.target.stops.push(s.target.untilInterrupted(4243));
  s.client.send('vCont;c');
  await new Promise((r) => setTimeout(r, 50));
  t.is(s.target.interrupted, 0);
  s.client.socket.write(Buffer.from([3]));
  t.regex(await s.client.next().then((b) => b.toString()), /^T02thread:p1092\.1093;/);
  t.is(s.target.interrupted, 1);
  // An interrupt when nothing runs is ignored.
  s.client.socket.write(Buffer.from([3]));
  t.is(await s.client.ask('qAttached'), '1');
  t.is(s.target.interrupted, 1);
});

test('a failing resume answers E.message (gdb warns and stays stopped)', async (t) => {
  const s = await setup(t);
  await noAck(s);
  s.target.stops.push(() => {
    throw new Error('engine fault # 3');
  });
  t.is(await s.client.ask('vCont;c'), 'E.cannot continue: engine fault ? 3');
  t.regex(await s.client.ask('?'), /^T05/);
});

test('qXfer: target.xml in pieces, auxv, exec-file', async (t) => {
  const s = await setup(t);
  await noAck(s);
  let xml = '';
  for (let offset = 0; ; offset += 0x100) {
    const r = await s.client.askRaw(`qXfer:features:read:target.xml:${offset.toString(16)},100`);
    xml += unescapeBinary(r.subarray(1)).toString();
    if (r[0] === 0x6c /* l */) break;
    t.is(r[0], 0x6d /* m */);
  }
  t.is(xml, TARGET_XML);
  t.regex(await s.client.ask('qXfer:features:read:other.xml:0,100'), /^E\./);
  const auxv = await s.client.askRaw('qXfer:auxv:read::0,1000');
  t.deepEqual(unescapeBinary(auxv.subarray(1)), Buffer.from(s.target.auxvBytes));
  t.is(auxv[0], 0x6c);
  t.is(await s.client.ask('qXfer:auxv:read::1000,1000'), 'l');
  t.is(await s.client.ask('qXfer:exec-file:read:1092:0,1000'), 'l/home/someone/prog');
  t.is(await s.client.ask('qXfer:exec-file:read::0,5'), 'm/home');
  t.regex(await s.client.ask('qXfer:exec-file:read:99:0,1000'), /^E\./);
  t.is(await s.client.ask('qXfer:threads:read::0,1000'), '', 'not offered: qfThreadInfo is used');
});

test('vFile serves the files of the trace read-only, ENOENT for the rest', async (t) => {
  const s = await setup(t);
  await noAck(s);
  const hex = (p: string) => Buffer.from(p).toString('hex');
  t.is(await s.client.ask('vFile:setfs:0'), 'F0');
  const fd = await s.client.ask(`vFile:open:${hex('/home/someone/prog')},0,0`);
  t.regex(fd, /^F[0-9a-f]+$/);
  const n = fd.slice(1);
  const content = s.target.files.get('/home/someone/prog')!;
  const r = await s.client.askRaw(`vFile:pread:${n},1000,0`);
  const semi = r.indexOf(0x3b);
  t.is(r.toString('latin1', 0, semi), `F${content.length.toString(16)}`);
  t.deepEqual(unescapeBinary(r.subarray(semi + 1)), Buffer.from(content));
  const tail = await s.client.askRaw(`vFile:pread:${n},4,${(content.length - 2).toString(16)}`);
  t.is(tail.toString('latin1', 0, 3), 'F2;');
  t.is(await s.client.ask(`vFile:pread:${n},10,1000`), 'F0;');
  const st = await s.client.askRaw(`vFile:fstat:${n}`);
  t.is(st.toString('latin1', 0, 4), 'F40;');
  const stat = unescapeBinary(st.subarray(4));
  t.is(stat.length, 64);
  t.is(stat.readBigUInt64BE(28), BigInt(content.length), 'st_size');
  t.is(await s.client.ask(`vFile:close:${n}`), 'F0');
  t.is(await s.client.ask(`vFile:close:${n}`), 'F-1,9');
  t.is(await s.client.ask(`vFile:pread:${n},10,0`), 'F-1,9');
  t.is(await s.client.ask(`vFile:open:${hex('/etc/passwd')},0,0`), 'F-1,2', 'nothing outside the trace');
  t.is(await s.client.ask(`vFile:open:${hex('/home/someone/prog')},241,1ff`), 'F-1,1e', 'no writing');
  t.is(await s.client.ask(`vFile:unlink:${hex('/home/someone/prog')}`), 'F-1,1e');
  t.regex(await s.client.ask(`vFile:open:${hex('/lib/x86_64-linux-gnu/libc.so.6')},0,0`), /^F[0-9a-f]+$/, 'the merged-/usr name');
  t.is(await s.client.ask(`vFile:readlink:${hex('/nope')}`), 'F-1,2');
  t.is(await s.client.ask('vFile:frobnicate:0'), '');
});

test('unknown packets get the empty reply; D, vKill, k and a closed socket end the session', async (t) => {
  const s = await setup(t);
  for (const p of ['qTStatus', 'qOffsets', 'vMustReplyEmpty', '!', 'QPassSignals:e', 'qRcmd,68656c70', 'jThreadsInfo', 'bz']) t.is(await s.client.ask(p), '', p);
  t.is(await s.client.ask('qSymbol::'), 'OK');
  t.is(await s.client.ask('D;1092'), 'OK');
  t.is(await s.ended, 'detached');

  const v = await setup(t);
  t.is(await v.client.ask('vKill;1092'), 'OK');
  t.is(await v.ended, 'killed');

  const k = await setup(t);
  k.client.send('k');
  t.is(await k.ended, 'killed');

  const c = await setup(t);
  c.client.socket.end();
  t.is(await c.ended, 'disconnected');
});

test('gdb going away while the target runs interrupts it; the session ends once it has stopped', async (t) => {
  const s = await setup(t);
  await noAck(s);
  let resolveStop!: () => void;
  s.target.stops.push(() => new Promise((resolve) => (resolveStop = () => resolve({ tid: 4242, cause: { kind: 'interrupted' } }))));
  s.client.send('vCont;c');
  await new Promise((r) => setTimeout(r, 50));
  let ended = false;
  void s.ended.then(() => (ended = true));
  s.client.socket.end();
  await new Promise((r) => setTimeout(r, 100));
  t.is(s.target.interrupted, 1);
  t.false(ended, 'still running: not ended yet');
  resolveStop();
  t.is(await s.ended, 'disconnected');
});
