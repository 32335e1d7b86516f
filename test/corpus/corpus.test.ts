// A fast subset of the real-program corpus (bench/corpus.ts, `npm run corpus` runs all of it):
// Debian programs recorded and replayed with the real CLI on generated inputs. Each must replay
// exactly: same stdout bytes, same exit status, every event verified.
import test from 'ava';
import { runCorpus, type CorpusResult } from '../../bench/corpus.ts';

const working = ['ls', 'cat', 'wc', 'sort', 'cut', 'tr', 'factor', 'sha256sum', 'grep', 'mawk', 'diff -u', 'gzip -d', 'tar -c', 'git cat-file', 'python3 threads'];

let results: Map<string, CorpusResult>;
test.before(() => {
  results = new Map(runCorpus({ only: working }).map((r) => [r.program, r]));
});

for (const name of working) {
  test(`${name} replays exactly`, (t) => {
    const r = results.get(name)!;
    t.is(r.reason, null);
    t.true(r.ok);
    t.true(r.events! > 10 && r.instructions! > r.ticks! && r.ticks! > 0, JSON.stringify(r));
    t.true(r.traceBytes! > 0 && r.recordSeconds! > 0 && r.replaySeconds! > 0);
  });
}
