/**
 * The one `Deno.dlopen` of the C library, and the error type every `ffi/` wrapper throws.
 *
 * Results that the kernel bounds well below 2^31 (byte counts of single reads and writes, fds,
 * status codes) are declared `i32`, so calls return plain numbers rather than `BigInt`; that
 * keeps the hot path (eventfd kicks) free of allocation.
 *
 * @module
 */

import { errnoName } from "./errno.ts";

/** Symbols loaded from `libc.so.6` (x86-64 Linux, glibc). */
export const LIBC_SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  /** `ssize_t read(...)`; result declared `i32`: exact for counts below 2 GiB. */
  read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  /** `ssize_t write(...)`; result declared `i32`: exact for counts below 2 GiB. */
  write: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  getpid: { parameters: [], result: "i32" },
  unlink: { parameters: ["buffer"], result: "i32" },
  chmod: { parameters: ["buffer", "u32"], result: "i32" },
  memfd_create: { parameters: ["buffer", "u32"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  /** `ssize_t sendmsg(...)`; result declared `i32` (control messages are small). */
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  /** `ssize_t recvmsg(...)`; result declared `i32` (control messages are small). */
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  /** `ssize_t recvfrom(...)`; result declared `i32` (one datagram). */
  recvfrom: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "buffer"],
    result: "i32",
  },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  /**
   * poll(2) on one of Deno's FFI threads: returns a Promise, so the calling thread's event loop
   * keeps running while it waits. errno stays on that thread: callers see only the result.
   */
  poll_nonblocking: {
    name: "poll",
    parameters: ["buffer", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
  /** `ioctl(fd, request, void *arg)`: request is u64 since values like 0xC008AF12 exceed i32. */
  ioctl_buf: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  /** `ioctl(fd, request, unsigned long arg)`. */
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
} as const;

/**
 * The loaded C library. Prefer the typed wrappers in the other `ffi/` files; they check results
 * and throw {@linkcode SyscallError}.
 *
 * @example
 * ```ts
 * import { libc } from "./libc.ts";
 * console.log(libc.symbols.getpid() === Deno.pid); // true
 * ```
 */
export const libc: Deno.DynamicLibrary<typeof LIBC_SYMBOLS> = Deno.dlopen(
  "libc.so.6",
  LIBC_SYMBOLS,
);

// errno lives in thread-local storage. A module instance belongs to one isolate, and an isolate
// (the main one or a Worker's) runs on one OS thread, so the address taken once here stays this
// thread's errno. Reading it through a typed array allocates nothing (EAGAIN on the hot path).
const errnoLocation = libc.symbols.__errno_location();
if (errnoLocation === null) throw new Error("libc: __errno_location() returned NULL");
const errnoCell = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(errnoLocation, 4));

/**
 * The calling thread's `errno`. Read it right after the failing call, before any other libc call.
 * Allocates nothing.
 *
 * @example
 * ```ts
 * import { errno, libc } from "./libc.ts";
 * if (libc.symbols.close(-1) < 0) console.log(errno()); // 9 (EBADF)
 * ```
 */
export function errno(): number {
  return errnoCell[0];
}

/**
 * The C library's description of an errno value, e.g. "Cannot allocate memory".
 *
 * @example
 * ```ts
 * import { strerror } from "./libc.ts";
 * console.log(strerror(2)); // "No such file or directory"
 * ```
 */
export function strerror(n: number): string {
  const p = libc.symbols.strerror(n);
  return p === null ? `Unknown error ${n}` : Deno.UnsafePointerView.getCString(p);
}

/**
 * A failed system call: which call, the errno value and its name.
 *
 * @example
 * ```ts
 * import { SyscallError } from "./libc.ts";
 * const e = new SyscallError("mmap", 12, "reserve hugepages");
 * console.log(e.message); // "mmap failed: ENOMEM (Cannot allocate memory); reserve hugepages"
 * console.log(e.code); // "ENOMEM"
 * ```
 */
export class SyscallError extends Error {
  /** The call and what it acted on, e.g. `connect(/run/vhost.sock)`. */
  readonly call: string;
  /** The errno value. */
  readonly errno: number;
  /** The errno name, e.g. `ENOMEM`. */
  readonly code: string;

  /** Builds the message `<call> failed: <CODE> (<strerror>)[; <hint>]`. */
  constructor(call: string, errno: number, hint?: string) {
    const code = errnoName(errno);
    super(`${call} failed: ${code} (${strerror(errno)})${hint ? "; " + hint : ""}`);
    this.name = "SyscallError";
    this.call = call;
    this.errno = errno;
    this.code = code;
  }
}

/**
 * Throws a {@linkcode SyscallError} for `call`, reading `errno` now unless `err` is given. Pass
 * it, read with {@linkcode errno} right after the failing call: building the message strings
 * allocates, and an allocation (a GC, say) or a cleanup `close` may run a syscall that
 * overwrites errno.
 *
 * @example
 * ```ts
 * import { fail, libc } from "./libc.ts";
 * try {
 *   if (libc.symbols.close(-1) < 0) fail("close(-1)", "was the fd already closed?");
 * } catch (e) {
 *   console.log((e as Error).message); // "close(-1) failed: EBADF (Bad file descriptor); ..."
 * }
 * ```
 */
export function fail(call: string, hint?: string, err: number = errno()): never {
  throw new SyscallError(call, err, hint);
}

const encoder = new TextEncoder();

/**
 * A NUL-terminated copy of `s` for a `const char *` parameter. Throws if `s` contains NUL.
 *
 * @example
 * ```ts
 * import { cString } from "./libc.ts";
 * console.log(cString("ab")); // Uint8Array(3) [ 97, 98, 0 ]
 * ```
 */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(s);
  if (bytes.includes(0)) throw new TypeError(`string passed to libc contains a NUL byte: ${s}`);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}
