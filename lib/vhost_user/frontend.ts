/**
 * The vhost-user frontend (driver side): tells a vhost-user backend (DPDK's vhost PMD, or
 * {@linkcode VhostUserBackend} of this project) where the rings and buffers are, over a Unix
 * socket, in the order DPDK's own virtio-user frontend uses.
 *
 * ```
 *   VirtioNet ──(VirtioTransport)──► VhostUserFrontend ──socket + fds──► vhost-user backend
 *   connect:   SET_OWNER, GET_FEATURES, GET/SET_PROTOCOL_FEATURES, GET_QUEUE_NUM,
 *              SET_BACKEND_REQ_FD (with BACKEND_REQ: the backend's channel to speak first)
 *   bring-up:  SET_FEATURES, SET_MEM_TABLE, per ring CALL/NUM/BASE/ADDR/KICK, SET_VRING_ENABLE,
 *              SET_STATUS(DRIVER_OK)
 *   stop:      SET_VRING_ENABLE 0, GET_VRING_BASE
 * ```
 *
 * Every call is synchronous; each reply is awaited with a timeout (default 5 s).
 *
 * @module
 */

import { closeQuietly } from "../../ffi/fd.ts";
import { pollEach, POLLERR, POLLHUP, POLLIN, POLLNVAL } from "../../ffi/poll.ts";
import { recvExact, recvMsg, sendMsg, unixConnect } from "../../ffi/unix_socket.ts";
import type { MemoryRegion, QueueSetup, VirtioTransport } from "../virtio/transport.ts";
import { featureMask, unofferedFeatures } from "../virtio/features.ts";
import { DeviceStatus } from "../virtio/status.ts";
import {
  PROTOCOL_FEATURES_BIT,
  protocolFeatureMask,
  VHOST_USER_CONFIG_HDR_SIZE,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_MAX_PAYLOAD,
  VHOST_USER_NEED_REPLY,
  VHOST_USER_REPLY,
  VHOST_USER_U64_SIZE,
  VHOST_USER_VERSION,
  VHOST_USER_VRING_STATE_SIZE,
  VhostUserError,
  VhostUserMessage,
  VhostUserRequest,
} from "./message.ts";
import { BackendChannel } from "./backend_channel.ts";

/**
 * Protocol features this frontend asks for: those DPDK's frontend uses, CONFIG (the device's
 * virtio_net_config: MAC, link status, MTU) and BACKEND_REQ (the backend's channel, on which
 * it reports config changes such as the link going down) when the backend offers them.
 */
export const FRONTEND_PROTOCOL_FEATURES: bigint = protocolFeatureMask(
  "MQ",
  "REPLY_ACK",
  "STATUS",
  "CONFIG",
  "BACKEND_REQ",
);

/** Options of {@linkcode VhostUserFrontend.connect}. */
export interface VhostUserFrontendOptions {
  /** How long to wait for each reply, in ms (default 5000). */
  timeoutMs?: number;
  /** Queue pairs the caller needs; connect fails when the backend offers fewer (default 1). */
  queuePairs?: number;
}

const REQ = VhostUserRequest;

/**
 * A connection to a vhost-user backend, driven through the {@linkcode VirtioTransport} calls.
 *
 * @example
 * ```ts ignore
 * import { VhostUserFrontend } from "./frontend.ts";
 * const backend = VhostUserFrontend.connect("/run/vhost.sock", { timeoutMs: 2000 });
 * console.log(backend.getFeatures().toString(16), backend.maxQueuePairs);
 * backend.close();
 * ```
 */
export class VhostUserFrontend implements VirtioTransport {
  /** `vhost-user <path>`. */
  readonly name: string;
  /** Socket path. */
  readonly path: string;
  /** Feature bits the backend offered, as received (bit 30 included). */
  readonly offeredFeatures: bigint;
  /** Protocol features in use (what the backend offered, intersected with ours). */
  readonly protocolFeatures: bigint;
  /** Queue pairs the backend supports (GET_QUEUE_NUM with MQ, else 1). */
  readonly maxQueuePairs: number;
  /** Reply timeout in ms. */
  readonly timeoutMs: number;
  /** The CONFIG protocol feature is in use: {@linkcode getConfig} reads the device config. */
  readonly configSpace: boolean;

  #fd: number;
  readonly #msg = new VhostUserMessage();
  readonly #fds: number[] = [];
  readonly #peek = new Uint8Array(1);
  #packed = false;
  readonly #replyAck: boolean;
  readonly #status: boolean;
  /** The back-end request channel (BACKEND_REQ negotiated), else null. */
  #channel: BackendChannel | null = null;
  /** checkConnection's poll(2) set: the socket, then the channel's end. */
  readonly #pollFds: number[] = [-1, -1];
  readonly #revents = new Uint16Array(2);

  private constructor(fd: number, path: string, timeoutMs: number) {
    this.#fd = fd;
    this.path = path;
    this.name = `vhost-user ${path}`;
    this.timeoutMs = timeoutMs;
    // Negotiation happens here because its results are readonly fields.
    this.#msg.begin(REQ.SET_OWNER);
    this.#send(0);
    this.offeredFeatures = this.#getU64(REQ.GET_FEATURES);
    let protocol = 0n;
    if ((this.offeredFeatures & PROTOCOL_FEATURES_BIT) !== 0n) {
      protocol = this.#getU64(REQ.GET_PROTOCOL_FEATURES) & FRONTEND_PROTOCOL_FEATURES;
      this.#msg.begin(REQ.SET_PROTOCOL_FEATURES).setU64(protocol);
      this.#send(0);
    }
    this.protocolFeatures = protocol;
    this.#replyAck = (protocol & protocolFeatureMask("REPLY_ACK")) !== 0n;
    this.#status = (protocol & protocolFeatureMask("STATUS")) !== 0n;
    this.configSpace = (protocol & protocolFeatureMask("CONFIG")) !== 0n;
    let pairs = 1;
    if ((protocol & protocolFeatureMask("MQ")) !== 0n) {
      const n = this.#getU64(REQ.GET_QUEUE_NUM);
      if (n === 0n || n > 0x8000n) {
        throw new VhostUserError(REQ.GET_QUEUE_NUM, `backend reported ${n} queue pairs`);
      }
      pairs = Number(n);
    }
    this.maxQueuePairs = pairs;
  }

  /**
   * Connects to the backend listening at `path` and negotiates: SET_OWNER, GET_FEATURES, then
   * (when feature bit 30 is offered) GET/SET_PROTOCOL_FEATURES with MQ|REPLY_ACK|STATUS as far
   * as offered, and GET_QUEUE_NUM when MQ was agreed. Throws a SyscallError when nobody listens,
   * a {@linkcode VhostUserError} when the backend misbehaves or offers too few queue pairs.
   *
   * @example
   * ```ts ignore
   * import { VhostUserFrontend } from "./frontend.ts";
   * using backend = VhostUserFrontend.connect("/run/vhost.sock", { queuePairs: 2 });
   * ```
   */
  static connect(path: string, options: VhostUserFrontendOptions = {}): VhostUserFrontend {
    return VhostUserFrontend.#negotiate(unixConnect(path), path, options);
  }

  /**
   * Negotiates (as {@linkcode connect}) over a socket a backend opened to us: `fd` is a
   * connection accepted on a socket this process listens on (server mode, vhost-user.rst: the
   * backend is the client). Takes ownership of `fd`, closing it on failure.
   *
   * @example
   * ```ts ignore
   * import { VhostUserFrontend } from "./frontend.ts";
   * import { unixAccept, unixListen } from "../../ffi/unix_socket.ts";
   * const backend = VhostUserFrontend.accepted(unixAccept(unixListen("/run/vu.sock")), "/run/vu.sock");
   * ```
   */
  static accepted(
    fd: number,
    path: string,
    options: VhostUserFrontendOptions = {},
  ): VhostUserFrontend {
    return VhostUserFrontend.#negotiate(fd, path, options);
  }

  static #negotiate(
    fd: number,
    path: string,
    options: VhostUserFrontendOptions,
  ): VhostUserFrontend {
    const timeoutMs = options.timeoutMs ?? 5000;
    let frontend: VhostUserFrontend;
    try {
      frontend = new VhostUserFrontend(fd, path, timeoutMs);
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
    const wanted = options.queuePairs ?? 1;
    if (wanted > frontend.maxQueuePairs) {
      frontend.close();
      throw new VhostUserError(
        "GET_QUEUE_NUM",
        `backend at ${path} supports ${frontend.maxQueuePairs} queue pair(s), ${wanted} requested` +
          (frontend.maxQueuePairs === 1 ? " (start it with more queues, e.g. queues=N)" : ""),
      );
    }
    if ((frontend.protocolFeatures & protocolFeatureMask("BACKEND_REQ")) !== 0n) {
      try {
        frontend.#openChannel();
      } catch (e) {
        frontend.close();
        throw e;
      }
    }
    return frontend;
  }

  /** SET_BACKEND_REQ_FD with one end of a new socketpair (vhost-user.rst "Back-end communication"). */
  #openChannel(): void {
    const channel = BackendChannel.open();
    this.#channel = channel;
    const peer = channel.takePeerEnd();
    try {
      this.#msg.begin(REQ.SET_BACKEND_REQ_FD);
      this.#sendAcked([peer]);
    } finally {
      closeQuietly(peer); // the backend holds its own copy now
    }
  }

  /**
   * True once after the backend reported that its configuration space changed
   * (BACKEND_CONFIG_CHANGE_MSG, seen by {@linkcode checkConnection}); read it again with
   * {@linkcode getConfig}.
   */
  configChanged(): boolean {
    return this.#channel?.configChanged() ?? false;
  }

  /** Virtio feature bits offered (bit 30, a vhost-user transport bit, removed). */
  getFeatures(): bigint {
    return this.offeredFeatures & ~PROTOCOL_FEATURES_BIT;
  }

  /**
   * Sends SET_FEATURES with `features` (virtio bits only) plus bit 30 when the backend offered it.
   * Throws when `features` has bits the backend did not offer.
   */
  setFeatures(features: bigint): void {
    const extra = unofferedFeatures(features, this.getFeatures());
    if (extra) throw new VhostUserError(REQ.SET_FEATURES, `${extra} not offered by ${this.path}`);
    this.#packed = (features & featureMask("F_RING_PACKED")) !== 0n;
    const value = features | (this.offeredFeatures & PROTOCOL_FEATURES_BIT);
    this.#msg.begin(REQ.SET_FEATURES).setU64(value);
    this.#sendAcked([]);
  }

  /**
   * Sends SET_MEM_TABLE: each region's address serves as both guest physical and user address
   * (virtio-user), its fd travels with it. Waits for the ack when REPLY_ACK is in use.
   */
  setMemTable(regions: readonly MemoryRegion[]): void {
    this.#msg.begin(REQ.SET_MEM_TABLE).setMemoryTable(regions.map((r) => ({
      guestPhysAddr: BigInt(r.addr),
      memorySize: BigInt(r.size),
      userspaceAddr: BigInt(r.addr),
      mmapOffset: BigInt(r.offset),
    })));
    this.#sendAcked(regions.map((r) => r.fd));
  }

  /**
   * Sets up one ring: SET_VRING_CALL, SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR, then
   * SET_VRING_KICK last (DPDK's backend treats KICK as "ring configured"). A negative fd is sent
   * as "no fd" (bit 8, polling).
   */
  setupQueue(q: QueueSetup): void {
    const m = this.#msg;
    // DPDK's frontend sends every CALL before SET_FEATURES; its backend (22.11) allocates a
    // vring on whichever per-ring message comes first, so sending CALL here works too.
    m.begin(REQ.SET_VRING_CALL).setVringFile(q.index, q.callFd >= 0);
    this.#sendAcked(q.callFd >= 0 ? [q.callFd] : []);
    m.begin(REQ.SET_VRING_NUM).setVringState(q.index, q.size);
    this.#sendAcked([]);
    // Packed rings: the used index and used wrap counter go in bits 16-31 (vhost-user.rst); a
    // ring being set up has nothing in flight, so they equal the avail half.
    const base = this.#packed ? ((q.base & 0xffff) * 0x10001) >>> 0 : q.base;
    m.begin(REQ.SET_VRING_BASE).setVringState(q.index, base);
    this.#sendAcked([]);
    m.begin(REQ.SET_VRING_ADDR).setVringAddress({
      index: q.index,
      flags: 0,
      desc: BigInt(q.addresses.desc),
      used: BigInt(q.addresses.device),
      avail: BigInt(q.addresses.driver),
      log: 0n,
    });
    this.#sendAcked([]);
    m.begin(REQ.SET_VRING_KICK).setVringFile(q.index, q.kickFd >= 0);
    this.#sendAcked(q.kickFd >= 0 ? [q.kickFd] : []);
  }

  /**
   * SET_VRING_ENABLE. Without protocol features rings are enabled once kicked and cannot be
   * disabled, so this does nothing then (vhost-user.rst, "Ring states").
   */
  enableQueue(index: number, enabled: boolean): void {
    if ((this.offeredFeatures & PROTOCOL_FEATURES_BIT) === 0n) return;
    this.#msg.begin(REQ.SET_VRING_ENABLE).setVringState(index, enabled ? 1 : 0);
    this.#sendAcked([]);
  }

  /**
   * SET_STATUS, when the STATUS protocol feature is in use and `status` has FEATURES_OK or
   * FAILED, or is 0 (reset); else nothing (as DPDK's frontend: ACKNOWLEDGE and DRIVER alone mean
   * nothing to a vhost-user backend).
   */
  setStatus(status: number): void {
    if (!this.#status) return;
    if (status !== 0 && (status & (DeviceStatus.FEATURES_OK | DeviceStatus.FAILED)) === 0) return;
    this.#msg.begin(REQ.SET_STATUS).setU64(BigInt(status));
    this.#sendAcked([]);
  }

  /** GET_STATUS when the STATUS protocol feature is in use, else -1. */
  getStatus(): number {
    if (!this.#status) return -1;
    const s = this.#getU64(REQ.GET_STATUS);
    if (s > 0xffn) throw new VhostUserError(REQ.GET_STATUS, `status 0x${s.toString(16)} > 0xff`);
    return Number(s);
  }

  /**
   * GET_CONFIG (vhost-user.rst "Virtio device config space"): `size` bytes of the device's
   * configuration space from `offset` (for net, virtio_net_config, virtio 1.2 §5.1.4). Returns
   * null when CONFIG is not in use or the backend answers with an empty payload (its way of
   * saying it failed, e.g. DPDK's vhost library without a config handler).
   *
   * @example
   * ```ts ignore
   * const cfg = frontend.getConfig(0, 12); // mac[6], status u16, max_virtqueue_pairs u16, mtu u16
   * ```
   */
  getConfig(offset: number, size: number): Uint8Array | null {
    if (!this.configSpace) return null;
    const m = this.#msg;
    m.begin(REQ.GET_CONFIG).setConfig(offset, size, 0);
    this.#send(0);
    this.#receiveReply(REQ.GET_CONFIG, VHOST_USER_CONFIG_HDR_SIZE + size, true);
    if (m.size === 0) return null;
    const access = m.configAccess();
    if (access.offset !== offset || access.size !== size) {
      throw new VhostUserError(
        REQ.GET_CONFIG,
        `reply is for ${access.size} bytes at ${access.offset}, asked for ${size} at ${offset}`,
      );
    }
    return m.configData().slice();
  }

  /**
   * Stops a ring: SET_VRING_ENABLE 0 (with protocol features), then GET_VRING_BASE; returns the
   * position the backend stopped at (packed rings: the used index and wrap in bits 16-31 when
   * the backend reports them). The backend closes its copies of the ring's eventfds.
   */
  stopQueue(index: number): number {
    this.enableQueue(index, false);
    const m = this.#msg;
    m.begin(REQ.GET_VRING_BASE).setVringState(index, 0);
    this.#send(0);
    this.#receiveReply(REQ.GET_VRING_BASE, VHOST_USER_VRING_STATE_SIZE);
    if (m.vringStateIndex !== index) {
      throw new VhostUserError(
        REQ.GET_VRING_BASE,
        `reply is for ring ${m.vringStateIndex}, asked for ring ${index}`,
      );
    }
    return m.vringStateNum;
  }

  /**
   * One zero-timeout poll(2) of the socket and the back-end channel: null while the backend is
   * connected, else the reason it is gone. A message on the channel is served (a config change
   * noted for {@linkcode configChanged}). A backend never speaks first on the socket itself
   * (vhost-user.rst: backend requests use their own channel), so readable data there means end
   * of stream or a broken peer.
   */
  checkConnection(): string | null {
    if (this.#fd < 0) return `connection to ${this.path} is closed`;
    const channel = this.#channel;
    const polled = this.#pollFds;
    polled[0] = this.#fd;
    polled[1] = channel?.fd ?? -1; // poll(2) skips a negative fd
    if (pollEach(polled, POLLIN, 0, this.#revents) === 0) return null;
    if (this.#revents[1] !== 0) {
      const broken = channel!.serve();
      if (broken !== null) return `the backend at ${this.path} broke a rule: ${broken}`;
    }
    const rev = this.#revents[0];
    if (rev === 0) return null;
    if (rev & POLLNVAL) return `socket of ${this.path} is not open (POLLNVAL)`;
    if (rev & (POLLHUP | POLLERR)) {
      return `the backend at ${this.path} hung up (socket POLLHUP${
        rev & POLLERR ? "|POLLERR" : ""
      })`;
    }
    const fds: number[] = [];
    const r = recvMsg(this.#fd, this.#peek, 1, fds, true);
    for (const fd of fds) closeQuietly(fd);
    if (r === 0) return `the backend at ${this.path} closed the connection (end of stream)`;
    if (r < 0) return null;
    return `the backend at ${this.path} sent an unsolicited message (vhost-user: the frontend ` +
      "speaks first); treating it as broken";
  }

  /** True after {@linkcode close}. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Closes the socket. Idempotent. The backend sees end of stream and drops the session. */
  close(): void {
    this.#channel?.close();
    if (this.#fd < 0) return;
    closeQuietly(this.#fd);
    this.#fd = -1;
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  // --- transport ---------------------------------------------------------------------------

  /** Sends the message in `#msg` with `flags` added to its header and `fds` attached. */
  #send(flags: number, fds: readonly number[] = []): void {
    const m = this.#msg;
    if (this.#fd < 0) throw new VhostUserError(m.request, `connection to ${this.path} is closed`);
    m.flags |= flags;
    try {
      sendMsg(this.#fd, m.bytes, m.length, fds);
    } catch (e) {
      throw new VhostUserError(m.request, (e as Error).message, { cause: e });
    }
  }

  /** Sends `#msg`; with REPLY_ACK, asks for and checks the ack (vhost-user.rst "REPLY_ACK"). */
  #sendAcked(fds: readonly number[]): void {
    if (!this.#replyAck) {
      this.#send(0, fds);
      return;
    }
    const request = this.#msg.request;
    this.#send(VHOST_USER_NEED_REPLY, fds);
    this.#receiveReply(request, VHOST_USER_U64_SIZE);
    const status = this.#msg.u64;
    if (status !== 0n) {
      throw new VhostUserError(request, `backend replied failure (${status})`);
    }
  }

  /** Sends a request without payload and returns its u64 reply. */
  #getU64(request: number): bigint {
    this.#msg.begin(request);
    this.#send(0);
    this.#receiveReply(request, VHOST_USER_U64_SIZE);
    return this.#msg.u64;
  }

  /**
   * Reads one reply into `#msg` and checks it: request id, flags (version 1 and REPLY, as DPDK's
   * frontend demands), payload size `size` (or 0 with `orEmpty`), no fds.
   */
  #receiveReply(request: number, size: number, orEmpty = false): void {
    const m = this.#msg, fds = this.#fds;
    fds.length = 0;
    this.#recv(request, VHOST_USER_HDR_SIZE, 0);
    if (m.request !== request) {
      throw new VhostUserError(request, `reply is for request ${m.request}, not ${request}`);
    }
    if (m.flags !== (VHOST_USER_VERSION | VHOST_USER_REPLY)) {
      throw new VhostUserError(
        request,
        `reply flags 0x${m.flags.toString(16)}, expected 0x5 (version 1, REPLY)`,
      );
    }
    const got = m.size;
    if (got > VHOST_USER_MAX_PAYLOAD) {
      throw new VhostUserError(request, `reply payload of ${got} bytes is too large`);
    }
    if (got > 0) this.#recv(request, got, VHOST_USER_HDR_SIZE);
    if (got !== size && !(orEmpty && got === 0)) {
      throw new VhostUserError(request, `reply payload is ${got} bytes, expected ${size}`);
    }
    if (fds.length > 0) {
      for (const fd of fds) closeQuietly(fd);
      throw new VhostUserError(request, `reply carried ${fds.length} unexpected fds`);
    }
  }

  #recv(request: number, len: number, offset: number): void {
    const fds: number[] = [];
    try {
      recvExact(this.#fd, this.#msg.bytes.subarray(offset), len, fds, this.timeoutMs);
    } catch (e) {
      if (e instanceof Deno.errors.TimedOut) {
        throw new VhostUserError(
          request,
          `no reply within ${this.timeoutMs} ms from ${this.path}`,
        );
      }
      if (e instanceof Deno.errors.UnexpectedEof) {
        throw new VhostUserError(
          request,
          `${this.path} closed the connection (the backend refused the request; see its log)`,
        );
      }
      throw e;
    }
    for (const fd of fds) this.#fds.push(fd);
  }
}
