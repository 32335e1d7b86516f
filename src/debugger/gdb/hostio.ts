// Host I/O (vFile:*): gdb opens the program's files "on the target" (its default sysroot is
// `target:`). Here the target's file system is the trace: the executable and the libraries the
// process mapped, stored in the blob store, served read-only. Any other name: ENOENT, so gdb on a
// machine without the recorded binaries still finds `main` and the libraries' symbols.
//
// Replies are `F<result>[,<errno>][;<binary attachment>]`, numbers in hex, errno values from
// gdb's File-I/O protocol.
import { escapeBinary } from './packets.ts';

/** File-I/O errno values (they are the protocol's own, which happen to match Linux's). */
const E = { ENOENT: 2, EBADF: 9, EINVAL: 22, EMFILE: 24, EROFS: 30 };

/** File-I/O open flags that ask for writing. */
const O_WRONLY = 0x1;
const O_RDWR = 0x2;
const O_APPEND = 0x8;
const O_CREAT = 0x200;
const O_TRUNC = 0x400;

const MAX_OPEN = 64;

/** Other names of a file on a merged-/usr Debian system, where gdb may ask for /lib64/ld-linux-x86-64.so.2
 * (the executable's PT_INTERP) or /lib/x86_64-linux-gnu/libc.so.6 (ld.so's name for it) while the
 * recording kept what the kernel reported mapped: /usr/lib/x86_64-linux-gnu/.... Only files of the
 * trace are ever served, so an alias can only find a file the process really mapped. */
export function aliases(path: string): string[] {
  const out: string[] = [];
  const top = /^\/(lib|lib64|bin|sbin)\//.exec(path);
  if (top) out.push(`/usr${path}`);
  const lib64 = /^(?:\/usr)?\/lib64\/([^/]+)$/.exec(path);
  if (lib64) out.push(`/usr/lib/x86_64-linux-gnu/${lib64[1]}`, `/lib/x86_64-linux-gnu/${lib64[1]}`);
  return out;
}

export type FileSource = (path: string) => Uint8Array | undefined;

function fail(errno: number): string {
  return `F-1,${errno.toString(16)}`;
}

function parseHexInt(s: string | undefined): number | undefined {
  if (s === undefined || !/^-?[0-9a-fA-F]+$/.test(s)) return undefined;
  const v = Number.parseInt(s, 16);
  return Number.isSafeInteger(v) ? v : undefined;
}

function decodePath(hex: string | undefined): string | undefined {
  if (hex === undefined || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) return undefined;
  return Buffer.from(hex, 'hex').toString('utf8');
}

/** struct stat in File-I/O layout: big-endian, 64 bytes. */
function fileioStat(size: number): Buffer {
  const b = Buffer.alloc(64);
  let at = 0;
  const u32 = (v: number) => ((b.writeUInt32BE(v >>> 0, at), (at += 4)));
  const u64 = (v: number) => ((b.writeBigUInt64BE(BigInt(v), at), (at += 8)));
  u32(0); // st_dev
  u32(0); // st_ino
  u32(0o100555); // st_mode: a regular, read-only file
  u32(1); // st_nlink
  u32(0); // st_uid
  u32(0); // st_gid
  u32(0); // st_rdev
  u64(size); // st_size
  u64(4096); // st_blksize
  u64(Math.ceil(size / 512)); // st_blocks
  u32(0); // st_atime
  u32(0); // st_mtime
  u32(0); // st_ctime
  return b;
}

export class HostIo {
  private readonly open = new Map<number, Uint8Array>();
  private nextFd = 3;

  constructor(private readonly files: FileSource) {}

  private lookup(path: string): Uint8Array | undefined {
    const direct = this.files(path);
    if (direct) return direct;
    for (const other of aliases(path)) {
      const data = this.files(other);
      if (data) return data;
    }
    return undefined;
  }

  /** Reply to one `vFile:` packet (`op` is what follows "vFile:"), or undefined when the
   * operation is unknown (an empty reply then tells gdb it is unsupported). */
  handle(op: string): string | Buffer | undefined {
    const colon = op.indexOf(':');
    const name = colon < 0 ? op : op.slice(0, colon);
    const args = colon < 0 ? [] : op.slice(colon + 1).split(',');
    switch (name) {
      case 'setfs':
        // Every process sees the same files here: the ones in the trace.
        return 'F0';
      case 'open': {
        const path = decodePath(args[0]);
        const flags = parseHexInt(args[1]);
        if (path === undefined || flags === undefined) return fail(E.EINVAL);
        if (flags & (O_WRONLY | O_RDWR | O_APPEND | O_CREAT | O_TRUNC)) return fail(E.EROFS);
        const data = this.lookup(path);
        if (!data) return fail(E.ENOENT);
        if (this.open.size >= MAX_OPEN) return fail(E.EMFILE);
        const fd = this.nextFd++;
        this.open.set(fd, data);
        return `F${fd.toString(16)}`;
      }
      case 'pread': {
        const [fd, count, offset] = args.map(parseHexInt);
        const data = fd === undefined ? undefined : this.open.get(fd);
        if (!data) return fail(E.EBADF);
        if (count === undefined || offset === undefined || count < 0 || offset < 0) return fail(E.EINVAL);
        const chunk = data.subarray(Math.min(offset, data.length), Math.min(offset + count, data.length));
        return Buffer.concat([Buffer.from(`F${chunk.length.toString(16)};`), escapeBinary(chunk)]);
      }
      case 'pwrite':
        // Every descriptor is open for reading only.
        return fail(E.EBADF);
      case 'close': {
        const fd = parseHexInt(args[0]);
        if (fd === undefined || !this.open.delete(fd)) return fail(E.EBADF);
        return 'F0';
      }
      case 'fstat': {
        const fd = parseHexInt(args[0]);
        const data = fd === undefined ? undefined : this.open.get(fd);
        if (!data) return fail(E.EBADF);
        const st = fileioStat(data.length);
        return Buffer.concat([Buffer.from(`F${st.length.toString(16)};`), escapeBinary(st)]);
      }
      case 'unlink':
        return fail(E.EROFS);
      case 'readlink': {
        const path = decodePath(args[0]);
        if (path === undefined) return fail(E.EINVAL);
        // Files in the trace are regular files, not links.
        return fail(this.lookup(path) ? E.EINVAL : E.ENOENT);
      }
      default:
        return undefined;
    }
  }
}
