/**
 * ioctl(2) for vhost-net and tap setup (control path only).
 *
 * @module
 */

import { errno, fail, libc } from "./libc.ts";

/**
 * Calls `ioctl(fd, request, arg)` and returns its (non-negative) result. `arg` is a buffer the
 * kernel reads or writes (a struct), or an integer passed by value. `name` (e.g.
 * `"VHOST_SET_OWNER"`) goes into the error message: `ioctl(<name>) failed: ENOTTY (...)`.
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
): number {
  const req = BigInt(request);
  const r = typeof arg === "number"
    ? libc.symbols.ioctl_int(fd, req, BigInt(arg))
    : libc.symbols.ioctl_buf(fd, req, arg);
  if (r < 0) {
    const e = errno(); // before the message string is built
    fail(`ioctl(${name})`, undefined, e);
  }
  return r;
}
