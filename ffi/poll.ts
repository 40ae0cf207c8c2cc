/**
 * Waiting for fds with poll(2). Preallocated `pollfd` array: no allocation per call.
 *
 * @module
 */

import { EINTR } from "./errno.ts";
import { errno, fail, libc } from "./libc.ts";

/** Data to read (or, for a listening socket, a connection to accept). */
export const POLLIN = 0x1;
/** Urgent data to read. */
export const POLLPRI = 0x2;
/** Writing will not block. */
export const POLLOUT = 0x4;
/** Error condition (returned only). */
export const POLLERR = 0x8;
/** Peer hung up (returned only); a read returns 0. */
export const POLLHUP = 0x10;
/** The fd is not open (returned only). */
export const POLLNVAL = 0x20;

/** Most fds {@linkcode pollIn} waits on at once. */
export const MAX_POLL_FDS = 64;

// struct pollfd { int fd; short events; short revents; } = 8 bytes.
const pollfds = new ArrayBuffer(8 * MAX_POLL_FDS);
const pfdFd = new Int32Array(pollfds);
const pfdEv = new Int16Array(pollfds);
// nfds_t is 64-bit: V8's fast FFI path takes it as a BigInt; preallocated so polling allocates
// nothing.
const NFDS: readonly bigint[] = Array.from({ length: MAX_POLL_FDS + 1 }, (_, i) => BigInt(i));

function pollLoop(n: number, timeoutMs: number): number {
  let deadline = -1;
  for (;;) {
    const r = libc.symbols.poll(pollfds, NFDS[n], timeoutMs);
    if (r >= 0) return r;
    const e = errno();
    if (e !== EINTR) fail("poll", undefined, e);
    if (timeoutMs > 0) {
      // Interrupted by a signal: retry with what is left of the timeout.
      const now = performance.now();
      if (deadline < 0) deadline = now + timeoutMs;
      timeoutMs = Math.max(0, Math.ceil(deadline - now));
    }
  }
}

function toPollTimeout(timeoutMs: number): number {
  if (timeoutMs < 0 || timeoutMs === Infinity) return -1;
  return Math.min(Math.ceil(timeoutMs), 0x7fffffff);
}

/**
 * Waits until one of `fds` is readable (data, a pending connection, hang-up or error: a read will
 * not block) and returns its index, or -1 when `timeoutMs` passes first. A negative or infinite
 * timeout waits forever; 0 only checks. Throws for an fd that is not open (POLLNVAL).
 *
 * @example
 * ```ts
 * import { eventfd, eventfdSignal } from "./eventfd.ts";
 * import { closeQuietly } from "./fd.ts";
 * import { pollIn } from "./poll.ts";
 * const a = eventfd(), b = eventfd();
 * eventfdSignal(b);
 * console.log(pollIn([a, b], 100)); // 1
 * closeQuietly(a);
 * closeQuietly(b);
 * ```
 */
export function pollIn(fds: readonly number[], timeoutMs: number): number {
  const n = fds.length;
  if (n > MAX_POLL_FDS) throw new RangeError(`pollIn: ${n} fds, at most ${MAX_POLL_FDS}`);
  for (let i = 0; i < n; i++) {
    pfdFd[2 * i] = fds[i];
    pfdEv[4 * i + 2] = POLLIN; // events
    pfdEv[4 * i + 3] = 0; // revents
  }
  if (pollLoop(n, toPollTimeout(timeoutMs)) === 0) return -1;
  for (let i = 0; i < n; i++) {
    const rev = pfdEv[4 * i + 3];
    if (rev & POLLNVAL) throw new Error(`pollIn: fd ${fds[i]} is not open (POLLNVAL)`);
    if (rev & (POLLIN | POLLHUP | POLLERR)) return i;
  }
  return -1;
}

/**
 * Waits for `events` (e.g. {@linkcode POLLOUT}) on one fd; returns the `revents` bits, 0 on
 * timeout. A negative or infinite timeout waits forever.
 *
 * @example
 * ```ts
 * import { eventfd } from "./eventfd.ts";
 * import { closeQuietly } from "./fd.ts";
 * import { POLLOUT, pollFd } from "./poll.ts";
 * const fd = eventfd();
 * console.log((pollFd(fd, POLLOUT, 0) & POLLOUT) !== 0); // true
 * closeQuietly(fd);
 * ```
 */
export function pollFd(fd: number, events: number, timeoutMs: number): number {
  pfdFd[0] = fd;
  pfdEv[2] = events;
  pfdEv[3] = 0;
  if (pollLoop(1, toPollTimeout(timeoutMs)) === 0) return 0;
  return pfdEv[3] & 0xffff;
}

/**
 * Waits for `events` on each of `fds` with one poll(2); writes each fd's `revents` into
 * `revents` (0: nothing) and returns how many fds have some, 0 on timeout. No allocation: pass
 * the same arrays each time. A negative or infinite timeout waits forever.
 *
 * @example
 * ```ts
 * import { eventfd, eventfdSignal } from "./eventfd.ts";
 * import { closeQuietly } from "./fd.ts";
 * import { POLLIN, pollEach } from "./poll.ts";
 * const a = eventfd(), b = eventfd();
 * eventfdSignal(b);
 * const revents = new Uint16Array(2);
 * console.log(pollEach([a, b], POLLIN, 0, revents), revents[1] & POLLIN); // 1 1
 * closeQuietly(a);
 * closeQuietly(b);
 * ```
 */
export function pollEach(
  fds: readonly number[],
  events: number,
  timeoutMs: number,
  revents: Uint16Array,
): number {
  const n = fds.length;
  if (n > MAX_POLL_FDS || revents.length < n) {
    throw new RangeError(`pollEach: ${n} fds (at most ${MAX_POLL_FDS}), ${revents.length} revents`);
  }
  for (let i = 0; i < n; i++) {
    pfdFd[2 * i] = fds[i];
    pfdEv[4 * i + 2] = events;
    pfdEv[4 * i + 3] = 0;
  }
  const r = pollLoop(n, toPollTimeout(timeoutMs));
  for (let i = 0; i < n; i++) revents[i] = r === 0 ? 0 : pfdEv[4 * i + 3];
  return r;
}

/**
 * Waits until one of `fds` (at most 8) is readable without blocking this thread: poll(2) runs on
 * one of Deno's FFI threads (a `nonblocking` symbol) and the promise resolves with the index of
 * the first readable fd (POLLIN, POLLHUP or POLLERR), -1 when `timeoutMs` passed first
 * (negative: wait forever). One call per wait, not per packet: it allocates the pollfd array. A
 * failed poll (its errno stays on the other thread) is retried once (EINTR), then reported.
 *
 * @example
 * ```ts
 * import { eventfd, eventfdSignal } from "./eventfd.ts";
 * import { closeQuietly } from "./fd.ts";
 * import { pollInAsync } from "./poll.ts";
 * const call = eventfd(), wake = eventfd();
 * const ready = pollInAsync([call, wake]);
 * eventfdSignal(wake);
 * console.log(await ready); // 1
 * closeQuietly(call);
 * closeQuietly(wake);
 * ```
 */
export async function pollInAsync(fds: readonly number[], timeoutMs = -1): Promise<number> {
  const n = fds.length;
  if (n < 1 || n > 8) throw new RangeError(`pollInAsync: ${n} fds, 1 to 8`);
  const pfd = new ArrayBuffer(8 * n);
  const fd32 = new Int32Array(pfd), ev = new Int16Array(pfd);
  for (let attempt = 0;; attempt++) {
    for (let i = 0; i < n; i++) {
      fd32[2 * i] = fds[i];
      ev[4 * i + 2] = POLLIN;
      ev[4 * i + 3] = 0;
    }
    const r = await libc.symbols.poll_nonblocking(pfd, NFDS[n], toPollTimeout(timeoutMs));
    if (r === 0) return -1;
    if (r > 0) {
      for (let i = 0; i < n; i++) {
        const rev = ev[4 * i + 3];
        if (rev & POLLNVAL) throw new Error(`pollInAsync: fd ${fds[i]} is not open (POLLNVAL)`);
        if (rev & (POLLIN | POLLHUP | POLLERR)) return i;
      }
    }
    if (attempt > 0) {
      throw new Error(
        `poll(${fds.join(", ")}) failed twice on Deno's FFI thread (its errno is not visible ` +
          `here); are the fds still open?`,
      );
    }
  }
}
