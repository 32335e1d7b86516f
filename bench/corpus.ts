// The real-program corpus: Debian's own programs doing realistic work, each recorded and replayed
// with the real CLI and compared (stdout bytes, exit status, every event verified). A program
// that cannot work yet stays in the table as failing with its reason: there are no skips.
//
//   npm run corpus                  table on stdout (progress on stderr when it is a terminal)
//   npm run corpus -- --json        a JSON array, one object per program
//   npm run corpus -- NAME...       only the named programs
//
// Inputs are generated into a temporary folder with deterministic content; every program runs
// with that folder as its working directory, LC_ALL=C and TZ=UTC.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'bin', 'replay-anywhere.js');

export interface CorpusProgram {
  /** Short unique name shown in the table. */
  name: string;
  /** Absolute program path and arguments, run in the input folder. */
  command: string[];
  /** File in the input folder fed to stdin. */
  stdin?: string;
  /** Exit status the program must have when it runs correctly (default 0). */
  expectStatus?: number;
  /** Why it is expected to fail today (documentation only: it is still run and reported). */
  note?: string;
}

export interface CorpusResult {
  program: string;
  ok: boolean;
  reason: string | null;
  events: number | null;
  instructions: number | null;
  ticks: number | null;
  traceBytes: number | null;
  recordSeconds: number | null;
  replaySeconds: number | null;
}

const py = '/usr/bin/python3';

/** The corpus, as data. Paths are Debian's (merged /usr). */
export const programs: CorpusProgram[] = [
  // coreutils
  { name: 'ls', command: ['/usr/bin/ls', '-laR', '--time-style=long-iso', 'tree'] },
  { name: 'ls /usr/bin', command: ['/usr/bin/ls', '-l', '/usr/bin'] },
  { name: 'cat', command: ['/usr/bin/cat', 'words.txt', 'data.csv'] },
  { name: 'wc', command: ['/usr/bin/wc', 'words.txt', 'data.csv', 'numbers.txt'] },
  { name: 'sort', command: ['/usr/bin/sort', 'words.txt'] },
  { name: 'sort -n', command: ['/usr/bin/sort', '-n', '-r', 'numbers.txt'] },
  { name: 'sort -t, -k', command: ['/usr/bin/sort', '-t,', '-k3,3n', '-k2,2', 'data.csv'] },
  { name: 'uniq -c', command: ['/usr/bin/uniq', '-c', 'sorted.txt'] },
  { name: 'cut', command: ['/usr/bin/cut', '-d,', '-f2,4', 'data.csv'] },
  { name: 'tr', command: ['/usr/bin/tr', 'a-z', 'A-Z'], stdin: 'words.txt' },
  { name: 'seq', command: ['/usr/bin/seq', '-w', '1', '3', '200000'] },
  { name: 'factor', command: ['/usr/bin/factor', '600851475143', '9999999967', '1234567890123456789', '18446744073709551557', '2305843009213693951'] },
  { name: 'base64', command: ['/usr/bin/base64', 'blob.bin'] },
  { name: 'md5sum', command: ['/usr/bin/md5sum', 'blob.bin', 'words.txt', 'data.csv'] },
  { name: 'sha256sum', command: ['/usr/bin/sha256sum', 'blob.bin', 'words.txt'] },
  { name: 'sha512sum', command: ['/usr/bin/sha512sum', 'blob.bin'] },
  { name: 'b2sum', command: ['/usr/bin/b2sum', 'blob.bin'] },
  { name: 'cksum', command: ['/usr/bin/cksum', 'blob.bin', 'words.txt'] },
  { name: 'du', command: ['/usr/bin/du', '-a', '-b', 'tree'] },
  { name: 'find', command: ['/usr/bin/find', 'tree', '-name', '*.txt', '-size', '+1k', '-printf', '%p %s\\n'] },
  { name: 'stat', command: ['/usr/bin/stat', 'words.txt', 'tree', '/etc/passwd'] },
  { name: 'date', command: ['/usr/bin/date', '-u', '-d', '@1700000000', '+%Y-%m-%d %H:%M:%S %A %j'] },
  { name: 'date now', command: ['/usr/bin/date', '--rfc-3339=ns'] },
  { name: 'env', command: ['/usr/bin/env', '-i', 'A=1', 'B=two', '/usr/bin/env'] },
  { name: 'head', command: ['/usr/bin/head', '-n', '25', 'words.txt'] },
  { name: 'tail', command: ['/usr/bin/tail', '-n', '25', 'words.txt'] },
  { name: 'split', command: ['/usr/bin/split', '--verbose', '-l', '2000', 'words.txt', 'out/part-'] },
  { name: 'od', command: ['/usr/bin/od', '-A', 'x', '-t', 'x1z', '-N', '4096', 'blob.bin'] },
  { name: 'tac', command: ['/usr/bin/tac', 'numbers.txt'] },
  { name: 'paste', command: ['/usr/bin/paste', '-d:', 'numbers.txt', 'words.txt'] },
  { name: 'nl', command: ['/usr/bin/nl', '-ba', 'data.csv'] },
  { name: 'comm', command: ['/usr/bin/comm', '-3', 'a-sorted.txt', 'b-sorted.txt'] },
  { name: 'join', command: ['/usr/bin/join', '-t,', 'keys-a.csv', 'keys-b.csv'] },
  { name: 'shuf', command: ['/usr/bin/shuf', '--random-source=blob.bin', '-n', '20', 'words.txt'] },
  { name: 'fold', command: ['/usr/bin/fold', '-w', '37', 'words.txt'] },
  { name: 'numfmt', command: ['/usr/bin/numfmt', '--to=iec-i', '--suffix=B'], stdin: 'numbers.txt' },
  // text tools
  { name: 'grep', command: ['/usr/bin/grep', '-n', '-E', '^(al|be)[a-z]*a$', 'words.txt'] },
  { name: 'grep -r', command: ['/usr/bin/grep', '-r', '-c', 'line', 'tree'] },
  { name: 'sed', command: ['/usr/bin/sed', '-E', 's/([a-z]+)o([a-z]*)/\\2-\\1/g; /^b/d', 'words.txt'] },
  { name: 'mawk', command: ['/usr/bin/mawk', '-F,', '{ s[$3 % 7] += $4 } END { for (k in s) print k, s[k] }', 'data.csv'] },
  { name: 'gawk', command: ['/usr/bin/gawk', '-F,', '{ n[$2]++ } END { PROCINFO["sorted_in"] = "@ind_str_asc"; for (k in n) printf "%s %d\\n", k, n[k] }', 'data.csv'] },
  { name: 'diff -u', command: ['/usr/bin/diff', '-u', 'a.txt', 'b.txt'], expectStatus: 1 },
  { name: 'cmp', command: ['/usr/bin/cmp', 'a.txt', 'b.txt'], expectStatus: 1 },
  { name: 'rev', command: ['/usr/bin/rev', 'words.txt'] },
  { name: 'xxd', command: ['/usr/bin/xxd', '-l', '8192', 'blob.bin'] },
  // compressors and archives
  { name: 'gzip', command: ['/usr/bin/gzip', '-9', '-c', 'words.txt'] },
  { name: 'gzip -d', command: ['/usr/bin/gzip', '-d', '-c', 'words.txt.gz'] },
  { name: 'bzip2', command: ['/usr/bin/bzip2', '-c', 'words.txt'] },
  { name: 'bzip2 -d', command: ['/usr/bin/bzip2', '-d', '-c', 'words.txt.bz2'] },
  { name: 'xz', command: ['/usr/bin/xz', '-6', '-c', 'words.txt'] },
  { name: 'xz -d', command: ['/usr/bin/xz', '-d', '-c', 'words.txt.xz'] },
  { name: 'tar -c', command: ['/usr/bin/tar', '--sort=name', '--mtime=@0', '--owner=0', '--group=0', '-cf', '-', 'tree'] },
  { name: 'tar -tv', command: ['/usr/bin/tar', '-tvf', 'tree.tar'] },
  { name: 'tar -cz', command: ['/usr/bin/tar', '-czf', '-', 'tree'], note: 'tar runs gzip in a child process' },
  { name: 'file', command: ['/usr/bin/file', 'blob.bin', 'words.txt', 'words.txt.gz', 'tree.tar', '/usr/bin/ls', 'script.py'] },
  // interpreters
  { name: 'perl -e', command: ['/usr/bin/perl', '-e', 'my %h; $h{$_ % 97} += $_ for 1..200000; print join(",", map { "$_=$h{$_}" } sort { $a <=> $b } keys %h), "\\n"'] },
  { name: 'perl -ne', command: ['/usr/bin/perl', '-ne', '$c{length $_}++; END { print "$_ $c{$_}\\n" for sort { $a <=> $b } keys %c }', 'words.txt'] },
  { name: 'python3 compute', command: [py, 'compute.py'] },
  { name: 'python3 file I/O', command: [py, 'fileio.py'] },
  { name: 'python3 json', command: [py, 'json_work.py'] },
  { name: 'python3 re', command: [py, 're_work.py'] },
  { name: 'python3 hashlib', command: [py, 'hash_work.py'] },
  { name: 'python3 sqlite3', command: [py, 'sqlite_work.py'] },
  { name: 'python3 subprocess', command: [py, '-c', 'import subprocess; print(subprocess.run(["/usr/bin/echo", "hi"], capture_output=True).stdout)'], note: 'forks a child' },
  { name: 'python3 threads', command: [py, '-c', 'import threading; r = []; t = threading.Thread(target=lambda: r.append(sum(range(10**5)))); t.start(); t.join(); print(r)'], note: 'starts a thread' },
  { name: 'sqlite3', command: ['/usr/bin/sqlite3', ':memory:'], stdin: 'queries.sql' },
  { name: 'bc', command: ['/usr/bin/bc', '-l'], stdin: 'pi.bc' },
  { name: 'make -n', command: ['/usr/bin/make', '-n', '-f', 'Makefile', 'all'] },
  { name: 'make', command: ['/usr/bin/make', '-s', '-f', 'Makefile', 'all'], note: 'make runs recipes in child shells' },
  { name: 'git log', command: ['/usr/bin/git', '-C', 'repo', 'log', '--stat', '--format=%H %an %s'] },
  { name: 'git cat-file', command: ['/usr/bin/git', '-C', 'repo', 'cat-file', '-p', 'HEAD^{tree}'] },
  { name: 'git diff', command: ['/usr/bin/git', '-C', 'repo', 'diff', 'HEAD~1', 'HEAD'] },
  { name: 'sh pipeline', command: ['/usr/bin/sh', '-c', 'sort words.txt | uniq | wc -l'], note: 'the shell forks' },
];

/** Debian packages the corpus runs programs from (installed by the set-up when root). */
const corpusPackages = ['coreutils', 'grep', 'sed', 'mawk', 'gawk', 'diffutils', 'gzip', 'bzip2', 'xz-utils', 'tar', 'file', 'perl', 'python3', 'sqlite3', 'bc', 'make', 'git', 'findutils', 'xxd', 'util-linux'];

function installedPackage(pkg: string): boolean {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).includes('install ok installed');
  } catch {
    return false;
  }
}

/** Installs the missing Debian packages with apt-get when root; otherwise says what is missing. */
export function setupCorpus(say: (s: string) => void = () => {}): void {
  const missing = corpusPackages.filter((p) => !installedPackage(p));
  if (missing.length === 0) return;
  const cmd = `apt-get install -y ${missing.join(' ')}`;
  if (process.getuid?.() !== 0) {
    say(`missing Debian packages: ${missing.join(', ')} (their programs will fail as "not installed"). Run: sudo ${cmd}`);
    return;
  }
  say(`installing Debian packages: ${missing.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const r = spawnSync('sh', ['-c', `apt-get update -qq && apt-get install -y -qq ${missing.join(' ')}`], { stdio: ['ignore', 'ignore', 'inherit'], env });
  if (r.status !== 0) say(`apt-get failed (status ${r.status}); the programs of ${missing.join(', ')} will fail as "not installed"`);
}

/** Deterministic pseudo-random numbers (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

const env = { ...process.env, LC_ALL: 'C', TZ: 'UTC', GIT_CONFIG_NOSYSTEM: '1' };

/** Writes the corpus inputs into `dir` (same content on every run). */
export function prepareInputs(dir: string): void {
  const r = rng(20261124);
  const syll = ['al', 'be', 'co', 'da', 'er', 'fo', 'ga', 'hi', 'io', 'ka', 'lo', 'mu', 'no', 'pa', 'ri', 'so', 'ta', 'un', 've', 'zo'];
  const word = () => Array.from({ length: 2 + (r() % 4) }, () => syll[r() % syll.length]).join('');
  const words = Array.from({ length: 20000 }, word);
  const w = (name: string, content: string | Buffer) => {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), content);
  };
  w('words.txt', words.join('\n') + '\n');
  w('sorted.txt', [...words].sort().join('\n') + '\n');
  w('numbers.txt', Array.from({ length: 5000 }, () => String(r() % 10_000_000)).join('\n') + '\n');
  w('data.csv', Array.from({ length: 8000 }, (_, i) => `${i},${syll[r() % 8]},${r() % 1000},${r() % 100000}`).join('\n') + '\n');
  const blob = Buffer.alloc(256 * 1024);
  for (let i = 0; i < blob.length; i += 4) blob.writeUInt32LE(r(), i);
  w('blob.bin', blob);
  const lines = Array.from({ length: 3000 }, (_, i) => `line ${i}: ${words[i]}`);
  w('a.txt', lines.join('\n') + '\n');
  w('b.txt', lines.map((l, i) => (i % 97 === 5 ? l.replace(/[aeiou]/g, 'y') : l)).filter((_, i) => i % 211 !== 3).join('\n') + '\n');
  // comm needs sorted input (byte order: LC_ALL=C).
  w('a-sorted.txt', [...lines].sort().join('\n') + '\n');
  w('b-sorted.txt', lines.filter((_, i) => i % 7 !== 2).concat(words.slice(0, 50)).sort().join('\n') + '\n');
  w('keys-a.csv', Array.from({ length: 2000 }, (_, i) => `k${String(i * 3).padStart(5, '0')},${words[i]}`).join('\n') + '\n');
  w('keys-b.csv', Array.from({ length: 2000 }, (_, i) => `k${String(i * 2).padStart(5, '0')},${r() % 1000}`).join('\n') + '\n');
  for (let d = 0; d < 6; d++) {
    for (let f = 0; f < 8; f++) {
      const ext = f % 3 === 0 ? 'dat' : 'txt';
      w(`tree/d${d}/s${f % 2}/f${f}.${ext}`, lines.slice(0, 10 + ((d * 8 + f) * 37) % 300).join('\n') + '\n');
    }
  }
  mkdirSync(join(dir, 'out'), { recursive: true });
  writeFileSync(join(dir, 'words.txt.gz'), execFileSync('/usr/bin/gzip', ['-c', join(dir, 'words.txt')]));
  if (existsSync('/usr/bin/bzip2')) writeFileSync(join(dir, 'words.txt.bz2'), execFileSync('/usr/bin/bzip2', ['-c', join(dir, 'words.txt')]));
  if (existsSync('/usr/bin/xz')) writeFileSync(join(dir, 'words.txt.xz'), execFileSync('/usr/bin/xz', ['-c', join(dir, 'words.txt')]));
  writeFileSync(join(dir, 'tree.tar'), execFileSync('/usr/bin/tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '-cf', '-', 'tree'], { cwd: dir }));

  w('compute.py', [
    'def primes(n):',
    '    sieve = bytearray([1]) * (n + 1)',
    '    sieve[0:2] = b"\\0\\0"',
    '    for i in range(2, int(n ** 0.5) + 1):',
    '        if sieve[i]:',
    '            sieve[i * i::i] = bytearray(len(range(i * i, n + 1, i)))',
    '    return [i for i, v in enumerate(sieve) if v]',
    'p = primes(300000)',
    'print(len(p), p[-5:], sum(p) % 1000003)',
    'fib = [0, 1]',
    'for _ in range(2000): fib.append(fib[-1] + fib[-2])',
    'print(str(fib[-1])[:40], len(str(fib[-1])))',
    'print(sorted((x * 7919) % 10007 for x in range(20000))[::2500])',
    '',
  ].join('\n'));
  w('fileio.py', [
    'import os',
    'counts = {}',
    'with open("words.txt") as f:',
    '    for line in f:',
    '        counts[line[0]] = counts.get(line[0], 0) + 1',
    'os.makedirs("out", exist_ok=True)',
    'with open("out/py-counts.txt", "w") as f:',
    '    for k in sorted(counts): f.write(f"{k} {counts[k]}\\n")',
    'with open("out/py-counts.txt") as f: print(f.read(), end="")',
    'with open("blob.bin", "rb") as f:',
    '    data = f.read()',
    'print(len(data), sum(data[::97]))',
    'print(sorted(os.listdir("tree")))',
    '',
  ].join('\n'));
  w('json_work.py', [
    'import json',
    'rows = [line.split(",") for line in open("data.csv").read().split()]',
    'doc = {"rows": [{"id": int(a), "tag": b, "n": int(c), "v": int(d)} for a, b, c, d in rows]}',
    's = json.dumps(doc, sort_keys=True)',
    'back = json.loads(s)',
    'print(len(s), len(back["rows"]), sum(r["v"] for r in back["rows"]))',
    'print(json.dumps(back["rows"][:3], indent=1))',
    '',
  ].join('\n'));
  w('re_work.py', [
    'import re',
    'text = open("words.txt").read()',
    'print(len(re.findall(r"\\b(?:al|be)\\w*a\\b", text)))',
    'print(re.sub(r"(\\w)o(\\w)", r"\\2\\1", text[:400]))',
    'pat = re.compile(r"^(?P<a>\\d+),(?P<b>[a-z]+),(?P<c>\\d+),", re.M)',
    'print(sum(int(m["c"]) for m in pat.finditer(open("data.csv").read())))',
    '',
  ].join('\n'));
  w('hash_work.py', [
    'import hashlib, zlib',
    'data = open("blob.bin", "rb").read()',
    'for name in ["md5", "sha1", "sha256", "sha512", "blake2b", "sha3_256"]:',
    '    print(name, hashlib.new(name, data).hexdigest())',
    'print(zlib.crc32(data), len(zlib.compress(data * 2, 9)))',
    '',
  ].join('\n'));
  w('sqlite_work.py', [
    'import sqlite3',
    'db = sqlite3.connect("out/py.sqlite")',
    'db.execute("drop table if exists t")',
    'db.execute("create table t (id integer primary key, tag text, n integer, v integer)")',
    'db.executemany("insert into t values (?, ?, ?, ?)", (l.split(",") for l in open("data.csv").read().split()))',
    'db.commit()',
    'for row in db.execute("select tag, count(*), sum(v), max(n) from t group by tag order by tag"): print(row)',
    'db.close()',
    '',
  ].join('\n'));
  w('script.py', '#!/usr/bin/python3\nprint("hello")\n');
  w('queries.sql', [
    'create table t (id integer primary key, tag text, n integer);',
    'with recursive c(x) as (select 1 union all select x + 1 from c where x < 20000)',
    "  insert into t select x, substr('abcdefgh', x % 8 + 1, 1), (x * 7919) % 1000 from c;",
    'create index t_n on t(n);',
    'select tag, count(*), sum(n), avg(n) from t group by tag order by tag;',
    'select count(*) from t where n between 100 and 200;',
    '',
  ].join('\n'));
  w('pi.bc', 'scale=400\n4*a(1)\ne(1)\nsqrt(2)\n');
  w('Makefile', [
    'SRCS := $(wildcard tree/*/*/*.txt)',
    'OBJS := $(patsubst tree/%.txt,build/%.o,$(SRCS))',
    'all: $(OBJS)',
    '\t@echo linked $(words $(OBJS)) objects',
    'build/%.o: tree/%.txt',
    '\t@mkdir -p $(dir $@) && wc -l $< > $@',
    '',
  ].join('\n'));
  // A small git repository with fixed authors and dates.
  const repo = join(dir, 'repo');
  mkdirSync(repo, { recursive: true });
  const gitEnv = { ...env, GIT_AUTHOR_NAME: 'Ada', GIT_AUTHOR_EMAIL: 'ada@example.org', GIT_COMMITTER_NAME: 'Ada', GIT_COMMITTER_EMAIL: 'ada@example.org' };
  const git = (args: string[], date: string) =>
    execFileSync('/usr/bin/git', args, { cwd: repo, env: { ...gitEnv, GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date }, stdio: ['ignore', 'ignore', 'pipe'] });
  if (existsSync('/usr/bin/git')) {
    git(['init', '-q', '-b', 'main'], '@0 +0000');
    for (let i = 0; i < 5; i++) {
      writeFileSync(join(repo, `file${i % 3}.txt`), lines.slice(i * 40, i * 40 + 400).join('\n') + '\n');
      git(['add', '-A'], '@0 +0000');
      git(['commit', '-q', '-m', `commit number ${i}`], `@${1700000000 + i * 3600} +0000`);
    }
  }
}

interface RunOpts {
  /** Names of the programs to run (all when absent). */
  only?: string[];
  /** Called before each program (progress). */
  onProgress?: (index: number, total: number, name: string) => void;
}

/** First line of stderr that is not the recorder's standing CPUID warning. */
function firstLine(s: string): string {
  return s.split('\n').find((l) => l.trim() !== '' && !l.includes('CPUID faulting is not used yet')) ?? '';
}

/** The line of the recorder's stderr that says why the recording is not usable, if any. */
function recorderComplaint(stderr: string): string | null {
  const lines = stderr.split('\n').filter((l) => l.startsWith('replay-anywhere:') && !l.includes('CPUID faulting is not used yet'));
  const line = lines.find((l) => l.startsWith('replay-anywhere: record:')) ?? lines[0];
  return line ? line.replace(/^replay-anywhere: (record: )?/, '') : null;
}

/** Records and replays one program in `dir`; never throws for a failure of the program. */
export function runOne(p: CorpusProgram, dir: string): CorpusResult {
  const res: CorpusResult = { program: p.name, ok: false, reason: null, events: null, instructions: null, ticks: null, traceBytes: null, recordSeconds: null, replaySeconds: null };
  if (!existsSync(p.command[0])) {
    res.reason = `not installed: ${p.command[0]}`;
    return res;
  }
  const slug = p.name.replace(/[^A-Za-z0-9]+/g, '_');
  const trace = join(dir, '.traces', `${slug}.rrz`);
  const summaryPath = join(dir, '.traces', `${slug}.json`);
  mkdirSync(dirname(trace), { recursive: true });
  rmSync(summaryPath, { force: true });
  const input = p.stdin ? readFileSync(join(dir, p.stdin)) : Buffer.alloc(0);
  const spawn = (args: string[]) => {
    const start = performance.now();
    const r = spawnSync(process.execPath, [cli, ...args], { cwd: dir, env, input, maxBuffer: 1 << 30 });
    if (r.error) throw r.error;
    return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString(), seconds: (performance.now() - start) / 1000 };
  };

  const rec = spawn(['record', '-o', trace, '--', ...p.command]);
  res.recordSeconds = rec.seconds;
  if (existsSync(trace)) res.traceBytes = statSync(trace).size;
  const complaint = recorderComplaint(rec.stderr);
  const expectStatus = p.expectStatus ?? 0;
  if (complaint) {
    res.reason = `record: ${complaint}`;
  } else if (rec.status !== expectStatus) {
    res.reason = `record: exit status ${rec.status}, expected ${expectStatus}: ${firstLine(rec.stderr)}`;
  }
  if (!existsSync(trace)) {
    res.reason ??= 'record: no trace written';
    return res;
  }

  const rep = spawn(['run', '--quiet', '--summary-json', summaryPath, trace]);
  res.replaySeconds = rep.seconds;
  let summary: { verified: boolean; exitStatus: number | null; instructions: number; ticks: number; events: number; divergence: null | { event: number; reason: string } };
  try {
    summary = JSON.parse(readFileSync(summaryPath, 'utf8'));
  } catch {
    res.reason ??= `replay: no summary (exit status ${rep.status}): ${firstLine(rep.stderr)}`;
    return res;
  }
  res.events = summary.events;
  res.instructions = summary.instructions;
  res.ticks = summary.ticks;
  if (res.reason) return res; // the recording's reason comes first
  if (summary.divergence) {
    res.reason = `replay: divergence at event ${summary.divergence.event}: ${summary.divergence.reason}`;
  } else if (!summary.verified) {
    res.reason = `replay: not verified: ${firstLine(rep.stderr)}`;
  } else if (!rep.stdout.equals(rec.stdout)) {
    let i = 0;
    while (i < rep.stdout.length && i < rec.stdout.length && rep.stdout[i] === rec.stdout[i]) i++;
    res.reason = `replay: stdout differs at byte ${i} (recorded ${rec.stdout.length} bytes, replayed ${rep.stdout.length})`;
  } else if (rep.status !== rec.status || summary.exitStatus !== rec.status) {
    res.reason = `replay: exit status ${rep.status} (summary ${summary.exitStatus}), recorded ${rec.status}`;
  } else {
    res.ok = true;
  }
  return res;
}

/** Runs the corpus (or the `only` subset, in corpus order) in a fresh input folder. */
export function runCorpus(opts: RunOpts = {}): CorpusResult[] {
  const selected = opts.only ? programs.filter((p) => opts.only!.includes(p.name)) : programs;
  if (opts.only) {
    const unknown = opts.only.filter((n) => !programs.some((p) => p.name === n));
    if (unknown.length > 0) throw new Error(`unknown corpus programs: ${unknown.join(', ')}`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'ra-corpus-'));
  try {
    prepareInputs(dir);
    return selected.map((p, i) => {
      opts.onProgress?.(i, selected.length, p.name);
      return runOne(p, dir);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Markdown table of the results, with the fidelity figure on top. */
export function formatCorpusTable(rows: CorpusResult[]): string {
  const n = (x: number | null) => (x === null ? '-' : String(x));
  const s = (x: number | null) => (x === null ? '-' : x.toFixed(2));
  const ok = rows.filter((r) => r.ok).length;
  const lines = [
    `${ok} of ${rows.length} programs replay exactly (same stdout, same exit status, every event verified).`,
    '',
    '| program | ok | events | instructions | ticks | trace KiB | record s | replay s | reason |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const kib = r.traceBytes === null ? '-' : (r.traceBytes / 1024).toFixed(0);
    lines.push(`| ${r.program} | ${r.ok ? 'yes' : '**no**'} | ${n(r.events)} | ${n(r.instructions)} | ${n(r.ticks)} | ${kib} | ${s(r.recordSeconds)} | ${s(r.replaySeconds)} | ${(r.reason ?? '').replace(/\|/g, '\\|')} |`);
  }
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const only = args.filter((a) => !a.startsWith('--'));
  const tty = process.stderr.isTTY;
  setupCorpus((m) => process.stderr.write(`corpus: ${m}\n`));
  const results = runCorpus({
    only: only.length > 0 ? only : undefined,
    onProgress: tty ? (i, total, name) => process.stderr.write(`\rcorpus: ${i + 1}/${total} ${name}`.padEnd(60)) : undefined,
  });
  if (tty) process.stderr.write('\r'.padEnd(61) + '\r');
  process.stdout.write(json ? JSON.stringify(results, null, 2) + '\n' : formatCorpusTable(results) + '\n');
}
