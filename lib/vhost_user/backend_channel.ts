/**
 * The back-end request channel, frontend end (vhost-user.rst "Back-end communication"): a
 * socketpair whose other end travels to the backend with SET_BACKEND_REQ_FD, so the backend can
 * speak first — here, to say its configuration space changed (BACKEND_CONFIG_CHANGE_MSG, e.g. the
 * link went down; virtio 1.2 §2.5.2 "configuration change notification").
 *
 * ```
 *   frontend                                  backend
 *   socketPair() ── SET_BACKEND_REQ_FD(fd) ──► keeps fd
 *   serve() ◄── CONFIG_CHANGE_MSG [NEED_REPLY] ── setLinkUp(false)
 *           ── reply u64 0 (when asked) ──►
 *   configChanged() true once ─► GET_CONFIG (status)
 * ```
 *
 * @module
 */

import { closeQuietly } from "../../ffi/fd.ts";
import { recvExact, recvMsg, sendMsg, socketPair } from "../../ffi/unix_socket.ts";
import {
  backendRequestName,
  requestFlagsRule,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_MAX_PAYLOAD,
  VHOST_USER_NEED_REPLY,
  VhostUserBackendRequest,
  VhostUserMessage,
} from "./message.ts";

/** How long the rest of a message may take once its first bytes arrived, ms. */
const MESSAGE_MS = 100;

/**
 * The frontend's end of a back-end request channel. Poll {@linkcode fd} for POLLIN (with the
 * main socket, one poll(2)), then call {@linkcode serve}.
 *
 * @example
 * ```ts ignore
 * import { BackendChannel } from "./backend_channel.ts";
 * const channel = BackendChannel.open();
 * // send channel.takePeerEnd() with SET_BACKEND_REQ_FD, then on POLLIN:
 * const broken = channel.serve();
 * if (broken === null && channel.configChanged()) console.log("read the config again");
 * ```
 */
export class BackendChannel {
  #fd: number;
  #peer: number;
  #changed = false;
  readonly #msg = new VhostUserMessage();
  readonly #fds: number[] = [];

  private constructor(fd: number, peer: number) {
    this.#fd = fd;
    this.#peer = peer;
  }

  /** A new socketpair: keep this end, send {@linkcode takePeerEnd} to the backend. */
  static open(): BackendChannel {
    const [fd, peer] = socketPair();
    return new BackendChannel(fd, peer);
  }

  /** This end's fd, or -1 once the channel is closed (by either side). */
  get fd(): number {
    return this.#fd;
  }

  /** The backend's end, to send with SET_BACKEND_REQ_FD; the caller closes it after sending. */
  takePeerEnd(): number {
    const peer = this.#peer;
    this.#peer = -1;
    return peer;
  }

  /**
   * Reads one message and answers it when it asks (NEED_REPLY: u64 0 for a message handled, 1
   * for one this frontend does not implement). Returns null, or why the backend is broken (a
   * header or size no backend may send; a message cut off). A channel the backend closed is
   * closed here too: the main socket says whether the backend is gone.
   */
  serve(): string | null {
    if (this.#fd < 0) return null;
    const m = this.#msg, fds = this.#fds;
    try {
      const r = recvMsg(this.#fd, m.bytes, VHOST_USER_HDR_SIZE, fds, true);
      this.#closeFds();
      if (r < 0) return null; // nothing after all
      if (r === 0) {
        this.close();
        return null;
      }
      if (r < VHOST_USER_HDR_SIZE) this.#recv(r, VHOST_USER_HDR_SIZE - r);
      const flags = m.flags, size = m.size, request = m.request;
      const name = backendRequestName(request);
      const rule = requestFlagsRule(flags);
      if (rule !== null) return `vhost-user ${name} on the back-end channel: ${rule}`;
      if (size > VHOST_USER_MAX_PAYLOAD) {
        return `vhost-user ${name} on the back-end channel: payload of ${size} bytes (at most ` +
          `${VHOST_USER_MAX_PAYLOAD})`;
      }
      if (size > 0) this.#recv(VHOST_USER_HDR_SIZE, size);
      let status = 1n; // not implemented here
      if (request === VhostUserBackendRequest.CONFIG_CHANGE_MSG) {
        if (size !== 0) {
          return `vhost-user ${name}: payload of ${size} bytes, it has none (vhost-user.rst)`;
        }
        this.#changed = true;
        status = 0n;
      }
      if ((flags & VHOST_USER_NEED_REPLY) !== 0) {
        m.beginReply().setU64(status);
        sendMsg(this.#fd, m.bytes, m.length, []);
      }
      return null;
    } catch (e) {
      this.#closeFds();
      return `vhost-user back-end channel: ${(e as Error).message}`;
    }
  }

  /** True once after each run of BACKEND_CONFIG_CHANGE_MSG (however many), false otherwise. */
  configChanged(): boolean {
    const changed = this.#changed;
    this.#changed = false;
    return changed;
  }

  /** Closes both ends still held. Idempotent. */
  close(): void {
    closeQuietly(this.#fd);
    closeQuietly(this.#peer);
    this.#fd = this.#peer = -1;
  }

  #recv(offset: number, len: number): void {
    try {
      recvExact(this.#fd, this.#msg.bytes.subarray(offset), len, this.#fds, MESSAGE_MS);
    } finally {
      this.#closeFds(); // no back-end message this frontend serves carries fds
    }
  }

  #closeFds(): void {
    for (const fd of this.#fds) closeQuietly(fd);
    this.#fds.length = 0;
  }
}
