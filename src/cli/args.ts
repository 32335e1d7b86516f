// A small option parser: --flag, --name value, --name=value, and `--` ending the options.
import { UserError } from './errors.ts';

export interface OptionSpec {
  /** Options that take a value. */
  values?: string[];
  /** Options that are plain flags. */
  flags?: string[];
  /** Short aliases, e.g. { o: 'output' }. */
  aliases?: Record<string, string>;
  /** Stop parsing options at the first positional argument (for `record -- PROG ARGS`). */
  stopAtPositional?: boolean;
}

export interface ParsedArgs {
  options: Map<string, string | true>;
  positional: string[];
}

export function parseArgs(argv: string[], spec: OptionSpec, command: string): ParsedArgs {
  const values = new Set(spec.values ?? []);
  const flags = new Set([...(spec.flags ?? []), 'help']);
  const options = new Map<string, string | true>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('-') && arg !== '-') {
      let name = arg.startsWith('--') ? arg.slice(2) : arg.slice(1);
      let value: string | undefined;
      const eq = name.indexOf('=');
      if (eq >= 0) {
        value = name.slice(eq + 1);
        name = name.slice(0, eq);
      }
      if (!arg.startsWith('--')) name = spec.aliases?.[name] ?? (name === 'h' ? 'help' : name);
      if (values.has(name)) {
        if (value === undefined) {
          if (i + 1 >= argv.length) throw new UserError(`${command}: option --${name} needs a value`);
          value = argv[++i];
        }
        options.set(name, value);
      } else if (flags.has(name) && value === undefined) {
        options.set(name, true);
      } else {
        throw new UserError(`${command}: unknown option ${arg} (see ${command} --help)`);
      }
      continue;
    }
    positional.push(arg);
    if (spec.stopAtPositional) {
      positional.push(...argv.slice(i + 1));
      break;
    }
  }
  return { options, positional };
}

/** Parse an option as a non-negative integer, with a clear error. */
export function intOption(args: ParsedArgs, name: string, command: string): number | undefined {
  const v = args.options.get(name);
  if (v === undefined) return undefined;
  if (v === true || !/^\d+$/.test(v)) throw new UserError(`${command}: --${name} needs a non-negative integer, got ${JSON.stringify(v)}`);
  return Number(v);
}
