/**
 * The few libc functions the FUSE transport needs, through Deno FFI. libc is opened on first
 * use, so importing this module needs no `--allow-ffi` until a mount is made.
 *
 * @module
 */

const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  // Blocking reads of /dev/fuse run on Deno's blocking pool so the event loop stays free.
  read: { parameters: ["i32", "buffer", "usize"], result: "isize", nonblocking: true },
  writev: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize", nonblocking: true },
  getuid: { parameters: [], result: "u32" },
  getgid: { parameters: [], result: "u32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

/** The loaded libc symbols. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let lib: Deno.DynamicLibrary<typeof SYMBOLS> | null = null;

/** libc, opened on first call. Throws a clear error when FFI is not permitted. */
export function libc(): Libc {
  if (!lib) {
    try {
      lib = Deno.dlopen("libc.so.6", SYMBOLS);
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        throw new Error("FUSE needs FFI: run deno with --allow-ffi (or -A)", { cause: e });
      }
      throw e;
    }
  }
  return lib.symbols;
}

/**
 * errno of the last failed synchronous libc call on this thread. Only meaningful right after a
 * synchronous call: nonblocking calls run on another thread.
 */
export function errno(): number {
  return new Deno.UnsafePointerView(libc().__errno_location()!).getInt32();
}

/** The message libc gives for an errno value. */
export function strerror(code: number): string {
  const p = libc().strerror(code);
  return p ? Deno.UnsafePointerView.getCString(p) : `errno ${code}`;
}

/** A NUL-terminated copy of a string, for path arguments. */
export function cstr(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0");
}

/** The address of a buffer, for building C structs that point at other buffers. */
export function addressOf(buf: Uint8Array | BigUint64Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}

/** An Error carrying an errno, with libc's message. */
export class ErrnoError extends Error {
  /** The errno value. */
  readonly errno: number;
  /** Creates the error for `what` (the call and its argument) failing with `code`. */
  constructor(what: string, code: number) {
    super(`${what}: ${strerror(code)} (errno ${code})`);
    this.name = "ErrnoError";
    this.errno = code;
  }
}

/** Linux errno values used by the FUSE layer. */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENOTTY: 25,
  EROFS: 30,
  ERANGE: 34,
  ENOSYS: 38,
  ENODATA: 61,
  ENOTCONN: 107,
} as const;
