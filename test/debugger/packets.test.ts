// The remote protocol's framing: checksums, escaping, run-length encoding, packets split across
// reads, acks and no-ack mode.
import test from 'ava';
import {
  checksum, decodeRunLength, encodeRunLength, escapeBinary, frame, PacketDecoder, PacketLink, unescapeBinary,
} from '../../src/debugger/gdb/packets.ts';

const b = (s: string) => Buffer.from(s, 'latin1');

test('checksum is the modulo-256 sum in two lower-case hex digits', (t) => {
  t.is(checksum(b('')), '00');
  t.is(checksum(b('OK')), '9a');
  t.is(checksum(b('qSupported')), '37');
  t.is(checksum(new Uint8Array([0xff, 0x02])), '01');
  t.is(frame('OK').toString(), '$OK#9a');
  t.is(frame('').toString(), '$#00');
});

test('escaping covers $ # } * and round-trips every byte value', (t) => {
  t.deepEqual(escapeBinary(b('a$b#c}d*e')), b('a}\x04b}\x03c}]d}\x0ae'));
  t.deepEqual(unescapeBinary(b('a}\x04b}\x03c}]d}\x0ae')), b('a$b#c}d*e'));
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  const escaped = escapeBinary(all);
  t.is(escaped.length, 256 + 4);
  for (const special of [0x23, 0x24, 0x2a]) t.false(escaped.includes(special), `0x${special.toString(16)} appears unescaped`);
  t.deepEqual(unescapeBinary(escaped), Buffer.from(all));
  t.throws(() => unescapeBinary(b('abc}')), { message: /lone escape/ });
});

test('run-length decoding expands X*c to c-29 more copies', (t) => {
  t.deepEqual(decodeRunLength(b('0* ')), b('0000')); // ' ' is 32: three more
  t.deepEqual(decodeRunLength(b('a*"b')), b('aaaaaab')); // '"' is 34: five more
  t.deepEqual(decodeRunLength(b('x*~')), b('x'.repeat(98))); // '~' is 126: 97 more
  t.deepEqual(decodeRunLength(b('no runs')), b('no runs'));
  t.throws(() => decodeRunLength(b('*a')));
  t.throws(() => decodeRunLength(b('a*')));
});

test('run-length encoding never uses # or $ as a count, and round-trips', (t) => {
  for (let n = 1; n <= 400; n++) {
    const data = b('ab' + 'z'.repeat(n) + 'cd' + '0'.repeat(n % 17));
    const enc = encodeRunLength(data);
    const framed = frame(enc);
    // Only the frame's own $ and # delimit it.
    t.is(framed.indexOf(0x24, 1), -1, `n=${n}`);
    t.is(framed.indexOf(0x23), framed.length - 3, `n=${n}`);
    t.deepEqual(decodeRunLength(enc), data, `n=${n}`);
    if (n >= 10) t.true(enc.length < data.length, `n=${n} did not shrink`);
  }
  // Escape pairs are left alone: a run never repeats the second half of one.
  const bin = escapeBinary(Buffer.from([0x24, 0x24, 0x24, 0x24, 0x24, 0x24]));
  t.deepEqual(unescapeBinary(decodeRunLength(encodeRunLength(bin))), Buffer.from([0x24, 0x24, 0x24, 0x24, 0x24, 0x24]));
});

test('the decoder reassembles packets split across reads, byte by byte', (t) => {
  const stream = Buffer.concat([b('+'), frame('qSupported:multiprocess+'), b('-'), frame('g'), Buffer.from([3]), frame('m1000,4')]);
  const whole = new PacketDecoder().feed(stream);
  t.deepEqual(whole.map((i) => i.kind), ['ack', 'packet', 'nack', 'packet', 'interrupt', 'packet']);
  const bytewise = new PacketDecoder();
  const items = [];
  for (const byte of stream) items.push(...bytewise.feed(Buffer.from([byte])));
  t.deepEqual(items, whole);
  t.deepEqual(items.filter((i) => i.kind === 'packet').map((i) => 'data' in i && i.data.toString()), ['qSupported:multiprocess+', 'g', 'm1000,4']);
  // Split inside the checksum.
  const d = new PacketDecoder();
  t.deepEqual(d.feed(b('$OK#9')), []);
  t.true(d.pending);
  t.deepEqual(d.feed(b('a')), [{ kind: 'packet', data: b('OK') }]);
});

test('a bad checksum is reported, a 0x03 inside a packet is data, checksums accept upper case', (t) => {
  const d = new PacketDecoder();
  t.deepEqual(d.feed(b('$OK#00')), [{ kind: 'bad-checksum', data: b('OK') }]);
  t.deepEqual(d.feed(b('$a\x03b#')), []);
  t.deepEqual(d.feed(b(checksum(b('a\x03b')))), [{ kind: 'packet', data: b('a\x03b') }]);
  t.deepEqual(d.feed(b('$vCont;c:1#A9'.replace('A9', checksum(b('vCont;c:1')).toUpperCase()))), [{ kind: 'packet', data: b('vCont;c:1') }]);
  // A run-length encoded packet arrives expanded.
  t.deepEqual(d.feed(frame('0* ')), [{ kind: 'packet', data: b('0000') }]);
});

function link() {
  const sent: string[] = [];
  const packets: string[] = [];
  let interrupts = 0;
  const l = new PacketLink({
    write: (bytes) => sent.push(bytes.toString('latin1')),
    onPacket: (data) => packets.push(data.toString('latin1')),
    onInterrupt: () => interrupts++,
    runLength: false,
  });
  return { l, sent, packets, interrupts: () => interrupts };
}

test('ack mode: packets are acked, bad ones nacked, a nack resends the last packet', (t) => {
  const { l, sent, packets } = link();
  l.feed(frame('qSupported'));
  t.deepEqual(sent, ['+']);
  t.deepEqual(packets, ['qSupported']);
  l.send('PacketSize=4000');
  t.is(sent[1], frame('PacketSize=4000').toString());
  l.feed(b('-'));
  t.is(sent[2], sent[1], 'resent after a nack');
  l.feed(b('+'));
  l.feed(b('$g#00'));
  t.is(sent[3], '-');
  t.deepEqual(packets, ['qSupported']);
  l.feed(b('-')); // nothing awaits an ack any more: nothing is resent
  t.is(sent.length, 4);
});

test('no-ack mode: after QStartNoAckMode nothing is acked or resent; interrupts still arrive', (t) => {
  const { l, sent, packets, interrupts } = link();
  l.feed(frame('QStartNoAckMode'));
  t.deepEqual(sent, ['+']);
  l.send('OK');
  l.disableAcks();
  t.false(l.ackMode);
  l.feed(b('+')); // gdb's ack of our OK, the last one
  l.feed(frame('?'));
  l.feed(b('$?#00')); // bad checksum: dropped silently
  l.send('T05thread:1;');
  l.feed(b('-'));
  l.feed(Buffer.from([3]));
  t.deepEqual(sent, ['+', frame('OK').toString(), frame('T05thread:1;').toString()]);
  t.deepEqual(packets, ['QStartNoAckMode', '?']);
  t.is(interrupts(), 1);
});

test('sent packets are run-length encoded by default', (t) => {
  const sent: Buffer[] = [];
  const l = new PacketLink({ write: (x) => sent.push(x), onPacket: () => {}, onInterrupt: () => {} });
  l.disableAcks();
  l.send('0'.repeat(64));
  const enc = sent[0].toString('latin1');
  t.true(enc.length < 20, enc);
  const got = new PacketDecoder().feed(sent[0]);
  t.deepEqual(got, [{ kind: 'packet', data: b('0'.repeat(64)) }]);
});
