// replay-anywhere record [-o FILE] [--json] -- PROGRAM [ARGS...]
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import type { Command } from '../main.ts';
import { parseArgs } from '../args.ts';
import { UserError } from '../errors.ts';
import { ProgramStartError, record } from '../../recorder/record.ts';

/** `<program basename>-<N>.rrz` in the current folder, first free N. */
function defaultOutput(program: string): string {
  const base = basename(program) || 'trace';
  for (let n = 0; ; n++) {
    const name = `${base}-${n}.rrz`;
    if (!existsSync(name)) return name;
  }
}

const command: Command = {
  summary: 'run a program and record it into a trace',
  help: `usage: replay-anywhere record [-o FILE] [--json] [--patch-sites] -- PROGRAM [ARGS...]

Runs PROGRAM for real (its input and output stay live) and records everything a replay needs into
a self-contained .rrz trace. Exits with the program's exit status (128+N when signal N ended it).

options:
  -o, --output FILE  where to write the trace (default: PROGRAM-N.rrz in the current folder)
  --json             after the program ended, print {"trace","events","exitStatus","complete"} on stdout
  --patch-sites      trap rdtsc, rdtscp and cpuid by int3 patches in the program's code even where
                     the CPU can trap them itself (done anyway where it cannot; \`info\` says which)`,

  async run(argv: string[]): Promise<number> {
    const args = parseArgs(argv, { values: ['output'], flags: ['json', 'patch-sites'], aliases: { o: 'output' }, stopAtPositional: true }, 'record');
    const cmd = args.positional;
    if (cmd.length === 0) throw new UserError('record: no program given (usage: replay-anywhere record [-o FILE] -- PROGRAM [ARGS...])', 2);
    const explicit = args.options.get('output');
    const output = typeof explicit === 'string' ? explicit : defaultOutput(cmd[0]);
    const tty = process.stderr.isTTY;
    let result;
    try {
      result = await record({
        command: cmd,
        output,
        patchSites: args.options.has('patch-sites'),
        onProgress: tty ? (n) => process.stderr.write(`\rreplay-anywhere: recording: ${n} events`) : undefined,
      });
    } catch (err) {
      if (err instanceof ProgramStartError) throw new UserError(`record: ${err.message}`, err.exitStatus);
      throw err;
    }
    if (tty && result.events >= 1000) process.stderr.write('\n');
    if (!result.complete) process.stderr.write(`replay-anywhere: record: trace incomplete: ${result.reason}\n`);
    if (typeof explicit !== 'string') process.stderr.write(`replay-anywhere: trace written to ${output}\n`);
    if (args.options.has('json')) {
      process.stdout.write(JSON.stringify({ trace: result.tracePath, events: result.events, exitStatus: result.exitStatus, complete: result.complete }) + '\n');
    }
    return result.exitStatus;
  },
};

export default command;
