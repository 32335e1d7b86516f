// replay-anywhere command line: dispatch to one module per command.
import { UserError } from './errors.ts';

export interface Command {
  summary: string;
  help: string;
  run(argv: string[]): Promise<number>;
}

const commands: Record<string, () => Promise<Command>> = {
  record: async () => (await import('./commands/record.ts')).default,
  run: async () => (await import('./commands/run.ts')).default,
  info: async () => (await import('./commands/info.ts')).default,
  dump: async () => (await import('./commands/dump.ts')).default,
  debug: async () => (await import('./commands/debug.ts')).default,
};

async function usage(): Promise<string> {
  const lines = ['usage: replay-anywhere COMMAND [OPTIONS]', '', 'Record a Linux x86-64 program, replay it anywhere in a software CPU.', '', 'commands:'];
  for (const [name, load] of Object.entries(commands)) {
    try {
      lines.push(`  ${name.padEnd(8)} ${(await load()).summary}`);
    } catch {
      // A command whose module is not there yet is not listed.
    }
  }
  lines.push('', 'Run `replay-anywhere COMMAND --help` for a command\'s options.');
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write((await usage()) + '\n');
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    process.stdout.write('replay-anywhere 0.1.0\n');
    return 0;
  }
  const load = commands[name];
  if (!load) throw new UserError(`unknown command "${name}" (commands: ${Object.keys(commands).join(', ')})`, 2);
  const command = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    const dashDash = rest.indexOf('--');
    const helpAt = Math.max(rest.indexOf('--help'), rest.indexOf('-h'));
    if (dashDash < 0 || helpAt < dashDash) {
      process.stdout.write(command.help.trimEnd() + '\n');
      return 0;
    }
  }
  return command.run(rest);
}

// A reader that goes away (`dump | head`) ends the command quietly, as it does for other tools.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof UserError) {
    process.stderr.write(`replay-anywhere: ${err.message}\n`);
    process.exitCode = err.exitStatus;
  } else {
    const e = err as Error;
    process.stderr.write(`replay-anywhere: internal error: ${e?.message ?? String(err)}\n`);
    if (process.env.REPLAY_ANYWHERE_DEBUG) process.stderr.write(`${e?.stack}\n`);
    process.exitCode = 70;
  }
}
