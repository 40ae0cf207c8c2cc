/**
 * AF_UNIX stream sockets with fd passing (SCM_RIGHTS), the transport of vhost-user. Every fd made
 * here is close-on-exec, and received fds are too (MSG_CMSG_CLOEXEC).
 *
 * ```
 *   frontend                      backend
 *   sendMsg(hdr+payload, fds) ──► recvMsg(buf, fdsOut)
 *   recvExact(reply)          ◄── sendMsg(reply)
 * ```
 *
 * The `msghdr`, `iovec` and control buffers are allocated once per module; data is copied through
 * a module-owned buffer so the kernel only ever sees addresses of buffers this module keeps alive.
 *
 * @module
 */

import {
  EACCES,
  EAGAIN,
  ECONNABORTED,
  ECONNREFUSED,
  ECONNRESET,
  EINTR,
  ENOENT,
  EPIPE,
} from "./errno.ts";
import { closeQuietly } from "./fd.ts";
import { cString, errno, fail, libc, SyscallError } from "./libc.ts";
import { pollFd, POLLIN, POLLOUT } from "./poll.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_CTRUNC = 0x8;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000; // EPIPE instead of a SIGPIPE that would kill the process
const MSG_CMSG_CLOEXEC = 0x40000000;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

/** Most fds one message may carry (vhost-user sends up to 8). */
export const MAX_MSG_FDS = 16;

/** How long {@linkcode sendMsg} waits for room on a non-blocking socket. */
const SEND_TIMEOUT_MS = 10_000;

const HINT_LISTENING = "is the vhost-user backend listening on this socket?";
const HINT_PEER_CLOSED = "the peer closed the connection";

// struct msghdr (56 bytes): name@0, namelen@8, iov@16, iovlen@24, control@32, controllen@40,
// flags@48.
const msghdr = new ArrayBuffer(56);
const hdr64 = new BigUint64Array(msghdr);
const hdrView = new DataView(msghdr);
// struct iovec (16 bytes): base@0, len@8.
const iovec = new ArrayBuffer(16);
const iov64 = new BigUint64Array(iovec);
/** 32-bit halves of the same fields: lengths are written without creating BigInts. */
const iov32 = new Uint32Array(iovec);
const hdr32 = new Uint32Array(msghdr);
// Control buffer: CMSG_SPACE(MAX_MSG_FDS * 4) = 16-byte cmsghdr + fds, aligned to 8.
const CMSG_HDR = 16;
const CMSG_SPACE_MAX = CMSG_HDR + cmsgAlign(MAX_MSG_FDS * 4);
const control = new ArrayBuffer(CMSG_SPACE_MAX);
const controlView = new DataView(control);
const IOVEC_ADDR = Deno.UnsafePointer.value(Deno.UnsafePointer.of(iovec));
const CONTROL_ADDR = Deno.UnsafePointer.value(Deno.UnsafePointer.of(control));

// Data goes through this buffer (grown on demand, never shrunk).
let staging = new ArrayBuffer(4096);
let stagingBytes = new Uint8Array(staging);
let stagingAddr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(staging));
const scratchFds: number[] = [];

function cmsgAlign(n: number): number {
  return (n + 7) & ~7;
}

function ensureStaging(n: number): void {
  if (n <= staging.byteLength) return;
  let size = staging.byteLength;
  while (size < n) size *= 2;
  staging = new ArrayBuffer(size);
  stagingBytes = new Uint8Array(staging);
  stagingAddr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(staging));
}

function setMsghdr(iovBase: bigint, iovLen: number, controlLen: number): void {
  iov64[0] = iovBase;
  iov32[2] = iovLen; // iov_len (u64, little-endian: low half, then 0)
  iov32[3] = 0;
  hdr64[0] = 0n; // msg_name: connected socket
  hdr64[1] = 0n; // msg_namelen (+ padding)
  hdr64[2] = IOVEC_ADDR;
  hdr64[3] = 1n; // msg_iovlen
  hdr64[4] = controlLen > 0 ? CONTROL_ADDR : 0n;
  hdr32[10] = controlLen; // msg_controllen (u64)
  hdr32[11] = 0;
  hdr64[6] = 0n; // msg_flags (+ padding)
}

/** sockaddr_un {sun_family u16 = AF_UNIX, sun_path[108]} for a filesystem path. */
function sockaddrUn(path: string): Uint8Array {
  const bytes = cString(path);
  const n = bytes.length - 1;
  if (n === 0 || n > 107) {
    throw new RangeError(`unix socket path must be 1 to 107 bytes, got ${n}: ${path}`);
  }
  const addr = new Uint8Array(110);
  addr[0] = AF_UNIX; // little-endian u16
  addr.set(bytes, 2);
  return addr;
}

function newSocket(): number {
  const s = libc.symbols.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) fail("socket(AF_UNIX, SOCK_STREAM)", undefined, errno());
  return s;
}

/**
 * A connected pair of AF_UNIX stream sockets (socketpair(2), close-on-exec, blocking): e.g. the
 * vhost-user backend request channel, one end of which travels with SET_BACKEND_REQ_FD.
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./fd.ts";
 * import { socketPair } from "./unix_socket.ts";
 * const [a, b] = socketPair();
 * closeQuietly(a);
 * closeQuietly(b);
 * ```
 */
export function socketPair(): [number, number] {
  const fds = new Int32Array(2);
  if (libc.symbols.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) {
    fail("socketpair(AF_UNIX, SOCK_STREAM)", undefined, errno());
  }
  return [fds[0], fds[1]];
}

/**
 * Connects to the listening socket at `path`; returns the (blocking) fd. Throws a SyscallError
 * naming `connect(<path>)`, e.g. ENOENT or ECONNREFUSED when nobody listens there.
 *
 * @example
 * ```ts
 * import { unixConnect } from "./unix_socket.ts";
 * try {
 *   unixConnect("no-such.sock");
 * } catch (e) {
 *   console.log((e as Error).message); // "connect(no-such.sock) failed: ENOENT (...); ..."
 * }
 * ```
 */
export function unixConnect(path: string): number {
  const addr = sockaddrUn(path);
  const s = newSocket();
  if (libc.symbols.connect(s, addr, addr.length) === 0) return s;
  const e = errno();
  closeQuietly(s);
  const hint = e === ENOENT || e === ECONNREFUSED
    ? HINT_LISTENING
    : e === EACCES
    ? "check the owner and mode of the socket file"
    : undefined;
  throw new SyscallError(`connect(${path})`, e, hint);
}

/**
 * Listens on `path` (blocking fd, backlog 16): removes a stale socket file left there first
 * (needs read permission to check it; any other kind of file is refused), binds, sets the file's
 * mode to `mode` and listens.
 *
 * @example
 * ```ts
 * import { closeQuietly, unlink } from "./fd.ts";
 * import { unixListen } from "./unix_socket.ts";
 * const dir = Deno.makeTempDirSync();
 * const fd = unixListen(`${dir}/vhost.sock`);
 * closeQuietly(fd);
 * unlink(`${dir}/vhost.sock`);
 * Deno.removeSync(dir);
 * ```
 */
export function unixListen(path: string, mode = 0o600): number {
  const addr = sockaddrUn(path);
  removeStaleSocket(path);
  const s = newSocket();
  let bound = false;
  try {
    if (libc.symbols.bind(s, addr, addr.length) < 0) {
      const e = errno(); // before the message string is built
      fail(`bind(${path})`, "is another process listening on this path?", e);
    }
    bound = true;
    if (libc.symbols.chmod(addr.subarray(2), mode) < 0) {
      const e = errno();
      fail(`chmod(${path})`, undefined, e);
    }
    if (libc.symbols.listen(s, 16) < 0) {
      const e = errno();
      fail(`listen(${path})`, undefined, e);
    }
  } catch (e) {
    closeQuietly(s);
    if (bound) libc.symbols.unlink(addr.subarray(2));
    throw e;
  }
  return s;
}

function removeStaleSocket(path: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  if (!info.isSocket) {
    throw new Error(`unixListen(${path}): the path exists and is not a socket; not removing it`);
  }
  if (libc.symbols.unlink(cString(path)) < 0) {
    const e = errno();
    if (e !== ENOENT) fail(`unlink(${path})`, "cannot remove the stale socket file", e);
  }
}

/**
 * Accepts a connection on `listenFd`; the new fd is non-blocking if `nonblock`. Returns -1 when
 * `listenFd` is non-blocking and no connection is pending.
 *
 * @example
 * ```ts
 * import { closeQuietly } from "./fd.ts";
 * import { setNonBlocking, unixAccept, unixListen } from "./unix_socket.ts";
 * const dir = Deno.makeTempDirSync();
 * const l = unixListen(`${dir}/s.sock`);
 * setNonBlocking(l, true);
 * console.log(unixAccept(l)); // -1: nobody connected
 * closeQuietly(l);
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export function unixAccept(listenFd: number, nonblock = false): number {
  const flags = SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0);
  for (;;) {
    const c = libc.symbols.accept4(listenFd, null, null, flags);
    if (c >= 0) return c;
    const e = errno();
    if (e === EAGAIN) return -1;
    // A connection reset before we got to it: take the next one.
    if (e !== EINTR && e !== ECONNABORTED) fail(`accept(fd ${listenFd})`, undefined, e);
  }
}

/**
 * Turns O_NONBLOCK on or off for `fd`.
 *
 * @example
 * ```ts
 * import { eventfd } from "./eventfd.ts";
 * import { closeQuietly } from "./fd.ts";
 * import { setNonBlocking } from "./unix_socket.ts";
 * const fd = eventfd(false);
 * setNonBlocking(fd, true);
 * closeQuietly(fd);
 * ```
 */
export function setNonBlocking(fd: number, on: boolean): void {
  const flags = libc.symbols.fcntl(fd, F_GETFL, 0);
  if (flags < 0) {
    const e = errno();
    fail(`fcntl(fd ${fd}, F_GETFL)`, undefined, e);
  }
  const want = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  if (want !== flags && libc.symbols.fcntl(fd, F_SETFL, want) < 0) {
    const e = errno();
    fail(`fcntl(fd ${fd}, F_SETFL)`, undefined, e);
  }
}

/**
 * Sends `data[0..len)` with `fds` attached (SCM_RIGHTS; none means no control message). A partial
 * write is continued until all bytes are sent; the fds travel with the first part. On a
 * non-blocking socket it waits up to 10 s for room. Throws a SyscallError (EPIPE, ECONNRESET when
 * the peer closed).
 *
 * @example
 * ```ts
 * import { eventfd } from "./eventfd.ts";
 * import { closeQuietly } from "./fd.ts";
 * import { sendMsg } from "./unix_socket.ts";
 * declare const sock: number; // a connected socket
 * const kick = eventfd();
 * const msg = new Uint8Array(20); // SET_VRING_KICK (12), version 1, 8-byte payload: vring 0
 * new DataView(msg.buffer).setUint32(0, 12, true);
 * new DataView(msg.buffer).setUint32(4, 1, true);
 * new DataView(msg.buffer).setUint32(8, 8, true);
 * sendMsg(sock, msg, 20, [kick]);
 * closeQuietly(kick); // the peer holds its own copy now
 * ```
 */
export function sendMsg(fd: number, data: Uint8Array, len: number, fds: readonly number[]): void {
  if (!Number.isInteger(len) || len < 1 || len > data.length) {
    throw new RangeError(`sendMsg: len must be 1 to ${data.length}, got ${len}`);
  }
  const nfds = fds.length;
  if (nfds > MAX_MSG_FDS) throw new RangeError(`sendMsg: ${nfds} fds, at most ${MAX_MSG_FDS}`);
  ensureStaging(len);
  stagingBytes.set(data.subarray(0, len));
  let controlLen = 0;
  if (nfds > 0) {
    controlView.setBigUint64(0, BigInt(CMSG_HDR + 4 * nfds), true); // cmsg_len = CMSG_LEN
    controlView.setInt32(8, SOL_SOCKET, true);
    controlView.setInt32(12, SCM_RIGHTS, true);
    for (let i = 0; i < nfds; i++) controlView.setInt32(CMSG_HDR + 4 * i, fds[i], true);
    controlLen = CMSG_HDR + cmsgAlign(4 * nfds); // CMSG_SPACE
  }
  let sent = 0;
  while (sent < len) {
    setMsghdr(stagingAddr + BigInt(sent), len - sent, sent === 0 ? controlLen : 0);
    const r = libc.symbols.sendmsg(fd, msghdr, MSG_NOSIGNAL);
    if (r >= 0) {
      sent += r;
      continue;
    }
    const e = errno();
    if (e === EINTR) continue;
    if (e === EAGAIN) {
      if ((pollFd(fd, POLLOUT, SEND_TIMEOUT_MS) & POLLOUT) !== 0) continue;
      throw new SyscallError(`sendmsg(fd ${fd})`, e, "the peer has not read for 10 s");
    }
    fail(`sendmsg(fd ${fd})`, e === EPIPE || e === ECONNRESET ? HINT_PEER_CLOSED : undefined, e);
  }
}

/**
 * Receives up to `len` bytes into `buf` with one recvmsg. Received fds (close-on-exec) replace the
 * contents of `fdsOut`; the caller owns them. Returns the byte count, 0 at end of stream (peer
 * closed), or -1 when nothing is pending and `dontwait` is set (or the socket is non-blocking).
 * Throws, after closing the fds that did arrive, if the peer sent more than
 * {@linkcode MAX_MSG_FDS} fds in one message (MSG_CTRUNC).
 *
 * @example
 * ```ts
 * import { recvMsg } from "./unix_socket.ts";
 * declare const sock: number; // a connected socket
 * const buf = new Uint8Array(4096);
 * const fds: number[] = [];
 * const n = recvMsg(sock, buf, 12, fds, true);
 * if (n === 0) console.log("peer closed");
 * ```
 */
export function recvMsg(
  fd: number,
  buf: Uint8Array,
  len: number,
  fdsOut: number[],
  dontwait = false,
): number {
  fdsOut.length = 0;
  if (!Number.isInteger(len) || len < 1 || len > buf.length) {
    throw new RangeError(`recvMsg: len must be 1 to ${buf.length}, got ${len}`);
  }
  ensureStaging(len);
  const flags = MSG_CMSG_CLOEXEC | (dontwait ? MSG_DONTWAIT : 0);
  let r: number;
  for (;;) {
    setMsghdr(stagingAddr, len, CMSG_SPACE_MAX);
    r = libc.symbols.recvmsg(fd, msghdr, flags);
    if (r >= 0) break;
    const e = errno();
    if (e === EAGAIN) return -1;
    if (e !== EINTR) {
      fail(`recvmsg(fd ${fd})`, e === ECONNRESET ? HINT_PEER_CLOSED : undefined, e);
    }
  }
  // The kernel set msg_controllen to the bytes of control data it wrote.
  const controlLen = Math.min(Number(hdr64[5]), CMSG_SPACE_MAX);
  for (let off = 0; off + CMSG_HDR <= controlLen;) {
    const cmsgLen = Number(controlView.getBigUint64(off, true));
    if (cmsgLen < CMSG_HDR || off + cmsgLen > controlLen) break;
    const level = controlView.getInt32(off + 8, true);
    const type = controlView.getInt32(off + 12, true);
    if (level === SOL_SOCKET && type === SCM_RIGHTS) {
      const n = (cmsgLen - CMSG_HDR) >>> 2;
      for (let i = 0; i < n; i++) fdsOut.push(controlView.getInt32(off + CMSG_HDR + 4 * i, true));
    }
    off += cmsgAlign(cmsgLen);
  }
  if (hdrView.getInt32(48, true) & MSG_CTRUNC) {
    for (const f of fdsOut) closeQuietly(f);
    fdsOut.length = 0;
    throw new Error(
      `recvmsg(fd ${fd}): the peer sent more than ${MAX_MSG_FDS} fds in one message ` +
        "(control data truncated); the fds that arrived were closed",
    );
  }
  buf.set(stagingBytes.subarray(0, r));
  return r;
}

/**
 * Reads exactly `len` bytes into `buf`, waiting up to `timeoutMs` in total (negative or Infinity:
 * no limit). Fds received on the way replace the contents of `fdsOut`. Throws
 * `Deno.errors.UnexpectedEof` ("peer closed the connection") or `Deno.errors.TimedOut`, closing
 * any fds received so far.
 *
 * @example
 * ```ts
 * import { recvExact } from "./unix_socket.ts";
 * declare const sock: number; // a connected socket
 * const header = new Uint8Array(12);
 * const fds: number[] = [];
 * recvExact(sock, header, 12, fds, 5000);
 * ```
 */
export function recvExact(
  fd: number,
  buf: Uint8Array,
  len: number,
  fdsOut: number[],
  timeoutMs: number,
): void {
  fdsOut.length = 0;
  const deadline = timeoutMs < 0 ? Infinity : performance.now() + timeoutMs;
  let got = 0;
  try {
    while (got < len) {
      const r = recvMsg(fd, buf.subarray(got), len - got, scratchFds, true);
      if (r > 0) {
        for (let i = 0; i < scratchFds.length; i++) fdsOut.push(scratchFds[i]);
        got += r;
        continue;
      }
      if (r === 0) {
        throw new Deno.errors.UnexpectedEof(
          `recv(fd ${fd}): peer closed the connection after ${got} of ${len} bytes`,
        );
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Deno.errors.TimedOut(
          `recv(fd ${fd}): no reply within ${timeoutMs} ms (${got} of ${len} bytes); ` +
            "is the peer stuck?",
        );
      }
      pollFd(fd, POLLIN, left === Infinity ? -1 : left);
    }
  } catch (e) {
    for (const f of fdsOut) closeQuietly(f);
    fdsOut.length = 0;
    throw e;
  }
}
