// `replay-anywhere debug FILE`: a GDB remote-protocol server over the replay, and Debian's gdb
// attached to it (or, with --port, only the server, for a gdb started elsewhere).
import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { createServer, isIP, type Server, type Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { delimiter, join } from 'node:path';
import { DebugSessionError, openDebugSession } from '../../debugger/session.ts';
import type { DebugTarget } from '../../debugger/target.ts';
import { serveGdb, type GdbServerOptions } from '../../debugger/gdb/server.ts';
import { TraceFormatError } from '../../trace/errors.ts';
import { intOption, parseArgs } from '../args.ts';
import { UserError } from '../errors.ts';
import { openTrace } from '../open-trace.ts';
import type { Command } from '../main.ts';

const DEFAULT_HOST = '127.0.0.1';

const help = `usage: replay-anywhere debug [OPTIONS] FILE [-- GDB-ARGS...]

Debug a recorded trace with gdb, forwards and backwards: the replay runs in the software CPU
behind a GDB remote-protocol server, and Debian's gdb is started attached to it (like
\`rr replay\`). continue, step, next, finish, breakpoints and watchpoints work, and so do
reverse-continue, reverse-step, reverse-next, reverse-stepi and reverse-finish. The past
cannot change: writing registers or memory is refused.

gdb does not need the recorded program: the executable and the libraries it mapped are served
from the trace, so \`break main\` works when the program has symbols.

options:
  --pid PID       the process to debug (default: the first one recorded; see \`info\`)
  --goto EVENT    start at the first moment of the process at or after event EVENT (see \`dump\`)
  --gdb PATH      the gdb to start (default: gdb from PATH)
  --port N        do not start gdb: serve on port N (0: any free port), print the gdb command
                  to connect, serve one connection and exit when gdb detaches or kills
  --host ADDR     listen on ADDR instead of ${DEFAULT_HOST}. Anything but a loopback address
                  lets other machines connect: the server gives full read access to the
                  recorded memory (passwords, keys... whatever the program held), so a warning
                  is printed
  -h, --help      this help

GDB-ARGS after \`--\` are passed to gdb after \`-q -ex 'target remote HOST:PORT'\`, e.g.
  replay-anywhere debug prog.rrz -- -ex 'break main' -ex continue

exit status: gdb's (the server's 0 with --port); 1 when the trace, process, port or gdb is
unusable. REPLAY_ANYWHERE_GDB_LOG=1 logs every packet on stderr.`;

function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

/** An executable named like `gdb` (searched in PATH) or given as a path; undefined when absent. */
function findExecutable(name: string): string | undefined {
  const candidates = name.includes('/') ? [name] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, name));
  for (const path of candidates) {
    try {
      if (!statSync(path).isFile()) continue;
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not this one
    }
  }
  return undefined;
}

function listen(host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') reject(new UserError(`debug: port ${port} on ${host} is in use (choose another, or --port 0 for any free one)`));
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') reject(new UserError(`debug: cannot listen on ${host}: not an address of this machine`));
      else if (err.code === 'EACCES') reject(new UserError(`debug: not allowed to listen on ${host} port ${port}`));
      else reject(new UserError(`debug: cannot listen on ${host} port ${port}: ${err.message}`));
    });
    server.listen({ host, port, exclusive: true }, () => resolve(server));
  });
}

/** Accept one connection, serve it, close the listener. */
function serveOne(server: Server, target: DebugTarget, options: GdbServerOptions, abandon: Promise<void>): Promise<string> {
  return new Promise((resolve, reject) => {
    let socket: Socket | undefined;
    server.once('connection', (s: Socket) => {
      socket = s;
      server.close(); // one debugger at a time: later connections are refused
      s.setNoDelay(true);
      serveGdb(target, s, options).then(resolve, reject);
    });
    void abandon.then(() => {
      if (!socket) {
        server.close();
        resolve('no connection');
      } else {
        socket.destroy();
      }
    });
  });
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

const command: Command = {
  summary: 'debug a trace with gdb, forwards and backwards',
  help,
  async run(argv) {
    const dashDash = argv.indexOf('--');
    const gdbArgs = dashDash >= 0 ? argv.slice(dashDash + 1) : [];
    const args = parseArgs(dashDash >= 0 ? argv.slice(0, dashDash) : argv, { values: ['pid', 'goto', 'port', 'host', 'gdb'] }, 'debug');
    if (args.positional.length > 1) throw new UserError(`debug: one trace at a time (got ${args.positional.length} files; gdb arguments go after --)`, 2);
    const pid = intOption(args, 'pid', 'debug');
    const gotoEvent = intOption(args, 'goto', 'debug');
    const port = intOption(args, 'port', 'debug');
    if (port !== undefined && port > 65535) throw new UserError(`debug: --port ${port} is not a TCP port (0-65535)`);
    const hostOption = args.options.get('host');
    if (hostOption === true || hostOption === '') throw new UserError('debug: --host needs an address');
    const host = hostOption ?? DEFAULT_HOST;
    const serveOnly = port !== undefined;
    if (serveOnly && gdbArgs.length > 0) throw new UserError('debug: gdb arguments (after --) need gdb started by this command: drop --port');
    let gdbPath: string | undefined;
    if (!serveOnly) {
      const want = args.options.get('gdb');
      const name = typeof want === 'string' ? want : 'gdb';
      gdbPath = findExecutable(name);
      if (!gdbPath) {
        throw new UserError(
          want === undefined
            ? 'debug: gdb is not installed (Debian: apt-get install gdb), or give its path with --gdb, or serve only with --port N'
            : `debug: --gdb ${name}: no such executable`,
        );
      }
    }

    const reader = openTrace(args.positional[0], 'debug');
    const tty = process.stderr.isTTY === true;
    if (tty && gotoEvent !== undefined) process.stderr.write(`replay-anywhere: replaying to event ${gotoEvent}...\r`);
    let target: DebugTarget;
    try {
      target = await openDebugSession(reader, { pid, gotoEvent });
    } catch (err) {
      reader.close();
      if (err instanceof DebugSessionError || err instanceof TraceFormatError) throw new UserError(`debug: ${err.message}`);
      throw err;
    } finally {
      if (tty && gotoEvent !== undefined) process.stderr.write('\x1b[K');
    }

    const options: GdbServerOptions = {
      notice: (message) => process.stderr.write(`replay-anywhere: ${message}\n`),
    };
    if (process.env.REPLAY_ANYWHERE_GDB_LOG) options.log = (dir, text) => process.stderr.write(`[gdb ${dir === 'recv' ? '<-' : '->'}] ${text}\n`);

    let server: Server;
    try {
      server = await listen(host, port ?? 0);
    } catch (err) {
      target.close();
      reader.close();
      throw err;
    }
    const address = server.address();
    const boundPort = typeof address === 'object' && address ? address.port : port ?? 0;
    const wildcard = host === '0.0.0.0' || host === '::';
    const connectHost = wildcard ? (host === '::' ? '::1' : DEFAULT_HOST) : host;
    const hostPort = isIP(connectHost) === 6 ? `[${connectHost}]:${boundPort}` : `${connectHost}:${boundPort}`;
    if (!isLoopback(host)) {
      process.stderr.write(
        `replay-anywhere: warning: listening on ${host}, not a loopback address: whoever can reach port ${boundPort} can read all of the recorded memory\n`,
      );
    }

    try {
      if (serveOnly) {
        process.stdout.write(`listening on ${host}:${boundPort}\nconnect with: gdb -q -ex ${quote(`target remote ${hostPort}`)}\n`);
        const end = await serveOne(server, target, options, new Promise(() => {}));
        if (tty) process.stderr.write(`replay-anywhere: gdb ${end === 'disconnected' ? 'disconnected' : end}\n`);
        return 0;
      }
      const gdb = spawn(gdbPath!, ['-q', '-ex', `target remote ${hostPort}`, ...gdbArgs], { stdio: 'inherit' });
      // Ctrl-C at the terminal reaches gdb (which interrupts the replay through the protocol)
      // and us: we keep running until gdb exits.
      const ignore = () => {};
      process.on('SIGINT', ignore);
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
        gdb.once('error', (err: NodeJS.ErrnoException) => reject(new UserError(`debug: cannot start ${gdbPath}: ${err.code ?? err.message}`)));
        gdb.once('exit', (code, signal) => resolve({ code, signal }));
      });
      const gdbGone = exited.then(() => undefined, () => undefined);
      const served = serveOne(server, target, options, gdbGone);
      try {
        const { code, signal } = await exited;
        await served.catch(() => undefined);
        if (signal) return 128 + (osConstants.signals[signal] ?? 0);
        return code ?? 1;
      } finally {
        process.off('SIGINT', ignore);
      }
    } finally {
      server.close();
      target.close();
      reader.close();
    }
  },
};

export default command;
