/**
 * File descriptors: open, close, unlink.
 *
 * @module
 */

import { EINTR, ENOENT } from "./errno.ts";
import { cString, errno, fail, libc } from "./libc.ts";

/** Open for reading and writing. */
export const O_RDWR = 0o2;
/** Create the file if it does not exist (give `mode`). */
export const O_CREAT = 0o100;
/** Do not block on reads and writes. */
export const O_NONBLOCK = 0o4000;
/** Close the fd in child processes after exec. */
export const O_CLOEXEC = 0o2000000;

/**
 * Opens `path` and returns the fd. Pass `O_CLOEXEC` unless a child process should inherit it.
 * `hint` is appended to the error message (say what the user can do).
 *
 * @example
 * ```ts
 * import { closeQuietly, O_CLOEXEC, O_RDWR, openFile } from "./fd.ts";
 * const fd = openFile("/dev/null", O_RDWR | O_CLOEXEC);
 * closeQuietly(fd);
 * ```
 */
export function openFile(path: string, flags: number, mode = 0o600, hint?: string): number {
  const p = cString(path);
  for (;;) {
    const fd = libc.symbols.open(p, flags, mode);
    if (fd >= 0) return fd;
    const e = errno();
    if (e !== EINTR) fail(`open(${path})`, hint, e);
  }
}

/**
 * Closes `fd`; throws a SyscallError (e.g. EBADF) on failure. Never retried: on Linux the fd is
 * released even when close reports EINTR.
 *
 * @example
 * ```ts
 * import { close, O_CLOEXEC, O_RDWR, openFile } from "./fd.ts";
 * close(openFile("/dev/null", O_RDWR | O_CLOEXEC));
 * ```
 */
export function close(fd: number): void {
  if (libc.symbols.close(fd) < 0) {
    const e = errno(); // before the message string is built (an allocation may run a syscall)
    fail(`close(${fd})`, undefined, e);
  }
}

/**
 * Closes `fd` for cleanup paths: ignores negative fds and errors, never throws.
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./fd.ts";
 * closeQuietly(-1); // no-op
 * ```
 */
export function closeQuietly(fd: number): void {
  if (fd >= 0) libc.symbols.close(fd);
}

/** fcntl: duplicate onto the lowest free fd ≥ arg, with FD_CLOEXEC set. */
const F_DUPFD_CLOEXEC = 1030;

/**
 * Duplicates `fd` (fcntl F_DUPFD_CLOEXEC): a second fd for the same open file, which stays valid
 * when the original is closed (e.g. a Worker's copy of a kick eventfd). Throws a SyscallError.
 *
 * @example
 * ```ts
 * import { close, dupFd, O_CLOEXEC, O_RDWR, openFile } from "./fd.ts";
 * const fd = openFile("/dev/null", O_RDWR | O_CLOEXEC);
 * const copy = dupFd(fd);
 * close(fd);
 * close(copy);
 * ```
 */
export function dupFd(fd: number): number {
  const copy = libc.symbols.fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) fail(`fcntl(fd ${fd}, F_DUPFD_CLOEXEC)`, "is the fd still open?");
  return copy;
}

/**
 * Removes the file at `path`. With `missingOk`, a path that does not exist is not an error.
 *
 * @example
 * ```ts
 * import { unlink } from "./fd.ts";
 * unlink("no-such-file.sock", true);
 * ```
 */
export function unlink(path: string, missingOk = false): void {
  if (libc.symbols.unlink(cString(path)) === 0) return;
  const e = errno();
  if (missingOk && e === ENOENT) return;
  fail(`unlink(${path})`, undefined, e);
}
