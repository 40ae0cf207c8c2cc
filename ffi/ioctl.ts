/**
 * ioctl(2) for vhost-net and tap setup (control path only), and the `_IOC` encoding of request
 * numbers (Linux `include/uapi/asm-generic/ioctl.h`).
 *
 * @module
 */

import { errno, fail, libc } from "./libc.ts";

/**
 * Calls `ioctl(fd, request, arg)` and returns its (non-negative) result. `arg` is a buffer the
 * kernel reads or writes (a struct), or an integer passed by value. `name` (e.g.
 * `"VHOST_SET_OWNER"`) goes into the error message: `ioctl(<name>) failed: ENOTTY (...)`, and
 * `hint` (what the user can do), when given, after it; `hint` may depend on the errno.
 *
 * @example
 * ```ts
 * import { ioctl } from "./ioctl.ts";
 * import { closeQuietly, O_CLOEXEC, O_RDWR, openFile } from "./fd.ts";
 * const fd = openFile("/dev/null", O_RDWR | O_CLOEXEC);
 * try {
 *   ioctl(fd, 0x5401, new Uint8Array(64), "TCGETS");
 * } catch (e) {
 *   console.log((e as Error).message); // "ioctl(TCGETS) failed: ENOTTY (...)"
 * } finally {
 *   closeQuietly(fd);
 * }
 * ```
 */
export function ioctl(
  fd: number,
  request: number,
  arg: Uint8Array | number,
  name: string,
  hint?: string | ((errno: number) => string | undefined),
): number {
  const req = BigInt(request);
  const r = typeof arg === "number"
    ? libc.symbols.ioctl_int(fd, req, BigInt(arg))
    : libc.symbols.ioctl_buf(fd, req, arg);
  if (r < 0) {
    const e = errno(); // before the message string is built
    fail(`ioctl(${name})`, typeof hint === "function" ? hint(e) : hint, e);
  }
  return r;
}

/** `_IOC_WRITE`: the kernel reads the argument. */
export const IOC_WRITE = 1;
/** `_IOC_READ`: the kernel writes the argument. */
export const IOC_READ = 2;

/**
 * `_IOC(dir, type, nr, size)`: bits 30-31 direction, 16-29 argument size, 8-15 type, 0-7 number.
 *
 * @example
 * ```ts
 * import { ioc, IOC_WRITE } from "./ioctl.ts";
 * console.log(ioc(IOC_WRITE, 0x54, 202, 4).toString(16)); // "400454ca" (TUNSETIFF)
 * ```
 */
export function ioc(dir: number, type: number, nr: number, size: number): number {
  return ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}
