// `replay-anywhere run FILE`: replay a trace in the emulator, show the program's output again,
// exit with the recorded exit status.
import { writeFileSync } from 'node:fs';
import { replayTrace, type ReplayResult } from '../../replay/replayer.ts';
import { TraceFormatError } from '../../trace/errors.ts';
import { parseArgs } from '../args.ts';
import { UserError } from '../errors.ts';
import { openTrace } from '../open-trace.ts';
import { Progress } from '../progress.ts';
import type { Command } from '../main.ts';

/** What --summary-json writes: the replay result without the multi-line report. */
export type ReplaySummary = Omit<ReplayResult, 'divergence'> & { divergence: null | { event: number; reason: string } };

/** Exit status of `run` when the replay diverged from the trace. */
export const DIVERGENCE_EXIT_STATUS = 125;

const help = `usage: replay-anywhere run [OPTIONS] FILE

Replay a recorded trace inside the software CPU. What the program wrote to stdout and
stderr while it was recorded is written again, every syscall is checked against the trace,
and the command exits with the recorded exit status (128+N when signal N killed it).
No syscall is made on the program's behalf: replaying a trace from anywhere is safe.

options:
  --summary-json PATH   write {"verified","exitStatus","instructions","ticks","events","seconds","divergence"} to PATH
  --quiet               no summary line on stderr
  -h, --help            this help

exit status: the recorded one; ${DIVERGENCE_EXIT_STATUS} when the replay diverged from the trace.`;

const command: Command = {
  summary: 'replay a trace in the software CPU and verify it',
  help,
  async run(argv) {
    const args = parseArgs(argv, { values: ['summary-json'], flags: ['quiet'] }, 'run');
    if (args.positional.length > 1) throw new UserError(`run: one trace at a time (got ${args.positional.length} files)`, 2);
    const reader = openTrace(args.positional[0], 'run');
    const progress = new Progress('replaying');
    let result;
    try {
      result = replayTrace(reader, {
        output: (fd, data) => {
          progress.clear();
          (fd === 1 ? process.stdout : process.stderr).write(data);
        },
        onProgress: (done, total) => progress.update(done, total),
      });
    } catch (err) {
      if (err instanceof TraceFormatError) throw new UserError(`run: ${err.message}`);
      throw err;
    } finally {
      progress.clear();
      reader.close();
    }
    const summaryPath = args.options.get('summary-json');
    if (typeof summaryPath === 'string') {
      const { divergence, ...rest } = result;
      const summary: ReplaySummary = { ...rest, divergence: divergence && { event: divergence.event, reason: divergence.reason } };
      writeFileSync(summaryPath, JSON.stringify(summary, null, 2) + '\n');
    }
    if (result.divergence) {
      const d = result.divergence;
      process.stderr.write(`replay-anywhere: divergence at event ${d.event}: ${d.reason}\n${d.report ? d.report + '\n' : ''}`);
      return DIVERGENCE_EXIT_STATUS;
    }
    if (!args.options.has('quiet')) {
      const mips = result.seconds > 0 ? result.instructions / result.seconds / 1e6 : 0;
      const incomplete = reader.complete ? '' : ` (trace incomplete: ${reader.incompleteReason ?? 'no footer'})`;
      process.stderr.write(
        `replay-anywhere: verified ${result.events} events, ${result.instructions} instructions, ${result.ticks} ticks in ${result.seconds.toFixed(2)} s (${mips.toFixed(0)} MIPS)${incomplete}\n`,
      );
    }
    if (result.exitStatus === null) {
      process.stderr.write(`replay-anywhere: the trace ends before the program exited${reader.complete ? '' : ' (it was cut short)'}\n`);
      return 1;
    }
    return result.exitStatus;
  },
};

export default command;
