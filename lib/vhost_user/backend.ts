/**
 * The vhost-user backend (device side) protocol server: answers a frontend (DPDK's virtio-user
 * PMD, QEMU, or {@linkcode VhostUserFrontend}), maps its memory, and builds the device queues of
 * the rings it sets up. It does no ring processing itself: a device polls the queues it exposes.
 *
 * ```
 *   frontend ──socket──► VhostUserBackend.poll() ──► GuestMemory (SET_MEM_TABLE)
 *                                               └──► vrings[i].queue: Split/PackedDeviceQueue
 *   device busy loop: every N bursts call poll(); run the queues in `running`
 * ```
 *
 * Nothing the frontend sends is trusted: a message breaking a rule (wrong size, unexpected fds,
 * unknown request, ring index out of range, ring outside memory, bad ring size...) ends the
 * session with an {@linkcode error} naming the message and the rule; every fd received is closed.
 * `poll()` never throws for what the frontend did.
 *
 * @module
 */

import { closeQuietly, unlink } from "../../ffi/fd.ts";
import {
  recvExact,
  recvMsg,
  sendMsg,
  setNonBlocking,
  unixAccept,
  unixConnect,
  unixListen,
} from "../../ffi/unix_socket.ts";
import { describeFeatures, featureMask } from "../virtio/features.ts";
import { GuestMemory } from "./guest_memory.ts";
import type { MemoryArena } from "./memory_arena.ts";
import { DeviceStatus } from "../virtio/status.ts";
import type { DeviceQueue } from "../virtio/virtqueue.ts";
import {
  describeProtocolFeatures,
  PROTOCOL_FEATURES_BIT,
  protocolFeatureMask,
  requestFlagsRule,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_MAX_PAYLOAD,
  VHOST_USER_U64_SIZE,
  VHOST_USER_VRING_ADDR_SIZE,
  VHOST_USER_VRING_STATE_SIZE,
  VhostUserBackendRequest,
  VhostUserError,
  VhostUserMessage,
  VhostUserRequest,
} from "./message.ts";
import { Vring } from "./vring.ts";

const REQ = VhostUserRequest;

/** Virtio features offered when none are given: VERSION_1, RING_PACKED, INDIRECT_DESC. */
export const DEFAULT_DEVICE_FEATURES: bigint = featureMask(
  "F_VERSION_1",
  "F_RING_PACKED",
  "RING_F_INDIRECT_DESC",
  "F_IN_ORDER",
);

/**
 * Protocol features offered when none are given: MQ (the spec asks every backend to offer it),
 * REPLY_ACK and STATUS, the three DPDK 22.11's frontend uses. QEMU's vhost-user-net also uses
 * these (and drops CONFIG for net devices); neither needs more.
 */
export const DEFAULT_PROTOCOL_FEATURES: bigint = protocolFeatureMask("MQ", "REPLY_ACK", "STATUS");

/** virtio_net_config bytes served by GET_CONFIG (virtio 1.2 §5.1.4). */
const NET_CONFIG_SIZE = 24;
/** VIRTIO_NET_S_LINK_UP (virtio 1.2 §5.1.4). */
const NET_S_LINK_UP = 1;

/** Options of {@linkcode VhostUserBackend}. */
export interface VhostUserBackendOptions {
  /**
   * Virtio feature bits to offer (default {@linkcode DEFAULT_DEVICE_FEATURES}). Bit 30
   * (VHOST_USER_F_PROTOCOL_FEATURES) is always added, NET_F_MQ when `queuePairs` > 1.
   */
  features?: bigint;
  /** Protocol features to offer (default {@linkcode DEFAULT_PROTOCOL_FEATURES}; MTU added with `mtu`). */
  protocolFeatures?: bigint;
  /** Queue pairs (vrings 2i = receiveq i, 2i+1 = transmitq i); default 1. */
  queuePairs?: number;
  /** MAC address for GET_CONFIG (6 bytes); default 00:00:00:00:00:00. */
  mac?: Uint8Array;
  /** MTU for GET_CONFIG; when set, the MTU protocol feature is offered. */
  mtu?: number;
  /** Name for messages (default `vhost-user <path>`). */
  name?: string;
  /** Messages handled per {@linkcode VhostUserBackend.poll} at most (default 4). */
  messagesPerPoll?: number;
  /** How long to wait for the rest of a message whose header arrived, in ms (default 1000). */
  payloadTimeoutMs?: number;
  /**
   * Map the frontend's regions inside this address range (see {@linkcode MemoryArena}): a
   * forwarder gives both its ports one, so frames are copied between them with `copyWithin`.
   * The caller keeps it open until the backend is closed.
   */
  memoryArena?: MemoryArena;
}

/**
 * A vhost-user device endpoint: one frontend session at a time, driven by non-blocking
 * {@linkcode poll} calls from the device's own loop.
 *
 * @example
 * ```ts ignore
 * import { VhostUserBackend } from "./backend.ts";
 * const backend = VhostUserBackend.listen("/run/vhost.sock", { queuePairs: 1 });
 * backend.onQueuesChanged = (b) => console.log("running vrings:", b.running);
 * for (let i = 0; !backend.closed; i++) {
 *   if ((i & 1023) === 0) backend.poll(); // one syscall when nothing is pending
 *   // ...process backend.vrings[r].queue for r in backend.running...
 * }
 * ```
 */
export class VhostUserBackend {
  /** Name for messages. */
  readonly name: string;
  /** Socket path. */
  readonly path: string;
  /** Virtio features offered (bit 30 included). */
  readonly offeredFeatures: bigint;
  /** Protocol features offered. */
  readonly offeredProtocolFeatures: bigint;
  /** Queue pairs offered. */
  readonly queuePairs: number;
  /** The vrings, `2 * queuePairs` of them. */
  readonly vrings: readonly Vring[];

  /** Features the frontend acknowledged with SET_FEATURES (bit 30 included). */
  features = 0n;
  /** Protocol features the frontend set. */
  protocolFeatures = 0n;
  /** Device status from SET_STATUS. */
  status = 0;
  /** MTU the frontend set with NET_SET_MTU (0: none). */
  frontendMtu = 0;
  /** The frontend's memory, after SET_MEM_TABLE. */
  memory: GuestMemory | null = null;
  /**
   * True when the device may run: vrings 0 and 1 ready and enabled, and DRIVER_OK seen when the
   * STATUS protocol feature is in use (DPDK's `virtio_is_ready`).
   */
  started = false;
  /** Indexes of the vrings to process now: ready and enabled, while {@linkcode started}. */
  running: readonly number[] = [];
  /** Why the last session ended, or null (still running, or the frontend closed cleanly). */
  error: Error | null = null;
  /**
   * Called after `started`, `running`, a queue object or a ring's eventfds changed (also when a
   * session ends).
   */
  onQueuesChanged: ((backend: VhostUserBackend) => void) | null = null;
  /**
   * Called when a session is about to end, before its socket closes: whatever the frontend sees
   * after the hang-up (counters a device publishes, say) is then already final for the session.
   */
  onSessionEnd: ((backend: VhostUserBackend) => void) | null = null;
  /**
   * Called as GET_VRING_BASE stops a started vring, before the reply: a device that serves the
   * ring on another thread stops it there and returns its position (the GET_VRING_BASE value),
   * or -1 to report this backend's own queue's (vhost-user.rst "Stopping rings").
   */
  onVringStop: ((backend: VhostUserBackend, index: number) => number) | null = null;

  readonly #listenFd: number;
  #conn = -1;
  #closed = false;
  readonly #msg = new VhostUserMessage();
  readonly #fds: number[] = [];
  readonly #payloadFds: number[] = [];
  readonly #config: Uint8Array;
  /** The back-end request channel the frontend gave with SET_BACKEND_REQ_FD, or -1. */
  #backendReqFd = -1;
  readonly #backendMsg = new VhostUserMessage();
  readonly #messagesPerPoll: number;
  readonly #payloadTimeoutMs: number;
  readonly #memoryArena: MemoryArena | undefined;
  /** Bumped whenever a queue object is built or dropped. */
  #generation = 0;
  #reported = "";

  private constructor(
    path: string,
    listenFd: number,
    conn: number,
    options: VhostUserBackendOptions,
  ) {
    const pairs = options.queuePairs ?? 1;
    if (!Number.isInteger(pairs) || pairs < 1 || pairs > 128) {
      throw new RangeError(`queuePairs must be 1 to 128, got ${pairs}`);
    }
    this.path = path;
    this.name = options.name ?? `vhost-user ${path}`;
    this.queuePairs = pairs;
    let features = (options.features ?? DEFAULT_DEVICE_FEATURES) | PROTOCOL_FEATURES_BIT;
    if (pairs > 1) features |= featureMask("NET_F_MQ");
    this.offeredFeatures = features;
    let protocol = options.protocolFeatures ?? DEFAULT_PROTOCOL_FEATURES;
    if (options.mtu !== undefined) protocol |= protocolFeatureMask("MTU");
    this.offeredProtocolFeatures = protocol;
    this.vrings = Array.from({ length: 2 * pairs }, (_, i) => new Vring(i));
    this.#config = netConfig(options.mac, pairs, options.mtu ?? 0);
    this.#messagesPerPoll = options.messagesPerPoll ?? 4;
    this.#payloadTimeoutMs = options.payloadTimeoutMs ?? 1000;
    this.#memoryArena = options.memoryArena;
    this.#listenFd = listenFd;
    this.#conn = conn;
  }

  /**
   * Listens at `path` (mode 0600, a stale socket file is replaced); a frontend connects later
   * (see {@linkcode accept}, which {@linkcode poll} calls while no session is up).
   *
   * @example
   * ```ts ignore
   * import { VhostUserBackend } from "./backend.ts";
   * using backend = VhostUserBackend.listen("/run/vhost.sock");
   * ```
   */
  static listen(path: string, options: VhostUserBackendOptions = {}): VhostUserBackend {
    const fd = unixListen(path, 0o600);
    try {
      setNonBlocking(fd, true);
      return new VhostUserBackend(path, fd, -1, options);
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
  }

  /**
   * Connects to a frontend listening at `path` (a frontend in server mode, e.g. DPDK's
   * `net_virtio_user0,path=...,server=1`). When that session ends, the backend is closed.
   *
   * @example
   * ```ts ignore
   * import { VhostUserBackend } from "./backend.ts";
   * using backend = VhostUserBackend.connect("/run/virtio-user.sock");
   * ```
   */
  static connect(path: string, options: VhostUserBackendOptions = {}): VhostUserBackend {
    const fd = unixConnect(path);
    try {
      return new VhostUserBackend(path, -1, fd, options);
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
  }

  /** A frontend session is up. */
  get connected(): boolean {
    return this.#conn >= 0;
  }

  /** True after {@linkcode close}, or when a session of a {@linkcode connect}ed backend ended. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The listening socket's fd (-1 for a connected backend), e.g. to wait for it with poll(2). */
  get listenFd(): number {
    return this.#listenFd;
  }

  /** The session socket's fd (-1 when none), e.g. to wait for messages with poll(2). */
  get connectionFd(): number {
    return this.#conn;
  }

  /**
   * The back-end request channel the frontend gave with SET_BACKEND_REQ_FD (BACKEND_REQ), or
   * -1. This backend sends on it ({@linkcode setLinkUp}); the fd stays the backend's.
   */
  get backendChannelFd(): number {
    return this.#backendReqFd;
  }

  /** VIRTIO_NET_S_LINK_UP in the config this backend serves (virtio 1.2 §5.1.4). */
  get linkUp(): boolean {
    return (this.#config[6] & NET_S_LINK_UP) !== 0;
  }

  /**
   * Sets the link status GET_CONFIG reports and, when it changed and the frontend gave a
   * back-end channel (BACKEND_REQ), tells it with BACKEND_CONFIG_CHANGE_MSG so it reads the
   * config again. Returns true when the frontend was told. The frontend sees the bit only with
   * VIRTIO_NET_F_STATUS and the CONFIG protocol feature negotiated.
   *
   * @example
   * ```ts ignore
   * import { VhostUserBackend } from "./backend.ts";
   * const backend = VhostUserBackend.listen("/run/vhost.sock");
   * backend.setLinkUp(false); // the frontend's port goes link "down"
   * ```
   */
  setLinkUp(up: boolean): boolean {
    if (up === this.linkUp) return false;
    this.#config[6] = up ? this.#config[6] | NET_S_LINK_UP : this.#config[6] & ~NET_S_LINK_UP;
    if (this.#backendReqFd < 0) return false;
    const m = this.#backendMsg.begin(VhostUserBackendRequest.CONFIG_CHANGE_MSG); // no reply asked
    try {
      sendMsg(this.#backendReqFd, m.bytes, m.length, []);
    } catch {
      // The frontend closed its end: it is leaving; the main socket ends the session.
      closeQuietly(this.#backendReqFd);
      this.#backendReqFd = -1;
      return false;
    }
    return true;
  }

  /** The device queue of vring `index` when it is running, else null. */
  queue(index: number): DeviceQueue | null {
    return this.running.includes(index) ? this.vrings[index].queue : null;
  }

  /**
   * Takes a pending connection when listening and no session is up. Returns true when a session
   * started (the previous {@linkcode error} is cleared). One syscall when nobody is waiting.
   */
  accept(): boolean {
    if (this.#closed || this.#conn >= 0 || this.#listenFd < 0) return false;
    const fd = unixAccept(this.#listenFd, false);
    if (fd < 0) return false;
    this.#conn = fd;
    this.error = null;
    return true;
  }

  /**
   * Handles up to `messagesPerPoll` pending messages (one recvmsg syscall when none is
   * pending); while listening without a session, tries {@linkcode accept} instead. Returns true
   * when something happened (a message, a new session, the end of one). Never throws for what
   * the frontend sent: a violation ends the session and sets {@linkcode error}.
   */
  poll(): boolean {
    if (this.#closed) return false;
    if (this.#conn < 0) {
      try {
        return this.accept();
      } catch (e) {
        this.error = e as Error; // e.g. EMFILE: the caller sees it, poll() stays safe to call
        return false;
      }
    }
    let progress = false;
    for (let i = 0; i < this.#messagesPerPoll && this.#conn >= 0; i++) {
      let got: number;
      try {
        got = this.#receive();
      } catch (e) {
        this.#endSession(asVhostUserError(e, "connection"));
        return true;
      }
      if (got < 0) break;
      progress = true;
      if (got === 0) {
        this.#endSession(null); // the frontend closed the socket
        break;
      }
      this.#dispatch();
    }
    return progress;
  }

  /**
   * Ends the current session because the device found the frontend at fault (e.g. a
   * `VirtqueueError` from the data path): sets {@linkcode error}, closes the connection and its
   * fds, unmaps the memory. A listening backend then waits for the next frontend; a connected one
   * is closed. Does nothing when no session is up.
   *
   * @example
   * ```ts ignore
   * import { VhostUserBackend } from "./backend.ts";
   * const backend = VhostUserBackend.listen("/run/vhost.sock");
   * backend.endSession(new Error("transmitq: descriptor outside memory"));
   * ```
   */
  endSession(error: Error): void {
    if (this.#conn < 0) return;
    this.#endSession(error);
  }

  /** Ends the session, unmaps memory, closes every fd and the listening socket. Idempotent. */
  close(): void {
    if (this.#closed) return;
    if (this.#conn >= 0) this.#endSession(this.error);
    this.#closed = true;
    if (this.#listenFd >= 0) {
      closeQuietly(this.#listenFd);
      unlink(this.path, true); // the socket file this backend created (a listener only)
    }
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  // --- receiving ---------------------------------------------------------------------------

  /** Reads one message into `#msg` and its fds into `#fds`: 1, or 0 at end of stream, -1 if none. */
  #receive(): number {
    const m = this.#msg, fds = this.#fds;
    const n = recvMsg(this.#conn, m.bytes, VHOST_USER_HDR_SIZE, fds, true);
    if (n <= 0) return n;
    try {
      if (n < VHOST_USER_HDR_SIZE) {
        this.#readRest(n, VHOST_USER_HDR_SIZE - n, "header");
      }
      const size = m.size;
      if (size > VHOST_USER_MAX_PAYLOAD) {
        throw new VhostUserError(
          m.request,
          `payload of ${size} bytes exceeds ${VHOST_USER_MAX_PAYLOAD}`,
        );
      }
      if (size > 0) this.#readRest(VHOST_USER_HDR_SIZE, size, "payload");
    } catch (e) {
      this.#closeFds();
      throw e;
    }
    return 1;
  }

  #readRest(offset: number, len: number, what: string): void {
    const extra = this.#payloadFds;
    try {
      recvExact(this.#conn, this.#msg.bytes.subarray(offset), len, extra, this.#payloadTimeoutMs);
    } catch (e) {
      if (e instanceof Deno.errors.TimedOut || e instanceof Deno.errors.UnexpectedEof) {
        throw new VhostUserError(
          this.#msg.request,
          `${what} incomplete: ${len} more bytes did not arrive within ` +
            `${this.#payloadTimeoutMs} ms`,
        );
      }
      throw e;
    }
    for (const fd of extra) this.#fds.push(fd);
    extra.length = 0;
  }

  #closeFds(): void {
    for (const fd of this.#fds) closeQuietly(fd);
    this.#fds.length = 0;
  }

  /** Takes the received fds (the caller owns them now). */
  #takeFds(): number[] {
    const taken = this.#fds.slice();
    this.#fds.length = 0;
    return taken;
  }

  // --- dispatch ----------------------------------------------------------------------------

  #dispatch(): void {
    const m = this.#msg;
    const request = m.request;
    // vhost-user.rst "REPLY_ACK": NEED_REPLY asks for an ack only once REPLY_ACK was negotiated;
    // without it the flag is ignored (a frontend that did not negotiate it reads no ack).
    const needReply = m.needReply &&
      (this.protocolFeatures & protocolFeatureMask("REPLY_ACK")) !== 0n;
    let replied = false;
    try {
      const rule = requestFlagsRule(m.flags);
      if (rule !== null) throw new VhostUserError(request, rule);
      replied = this.#handle(request);
      this.#closeFds(); // none should be left; close any a handler did not take
      if (needReply && !replied) this.#replyU64(request, 0n);
    } catch (e) {
      this.#closeFds();
      const error = asVhostUserError(e, request);
      if (needReply && !replied && this.#conn >= 0) {
        try {
          this.#replyU64(request, 1n); // REPLY_ACK: non-zero is failure
        } catch { /* the session ends anyway */ }
      }
      this.#endSession(error);
      return;
    }
    this.#refresh();
  }

  /** Handles `#msg`; returns true when it sent the request's own reply. */
  #handle(request: number): boolean {
    const m = this.#msg;
    switch (request) {
      case REQ.GET_FEATURES:
        this.#expect(0, 0);
        return this.#replyU64(request, this.offeredFeatures);
      case REQ.SET_FEATURES:
        this.#expect(VHOST_USER_U64_SIZE, 0);
        this.#setFeatures(m.u64);
        return false;
      case REQ.SET_OWNER:
        this.#expect(0, 0);
        return false;
      case REQ.RESET_OWNER:
        // Deprecated; vhost-user.rst recommends treating it as "disable all rings".
        this.#expect(0, 0);
        for (const v of this.vrings) v.reset();
        this.status = 0;
        this.#generation++;
        return false;
      case REQ.GET_PROTOCOL_FEATURES:
        this.#expect(0, 0);
        return this.#replyU64(request, this.offeredProtocolFeatures);
      case REQ.SET_PROTOCOL_FEATURES: {
        this.#expect(VHOST_USER_U64_SIZE, 0);
        const value = m.u64, extra = value & ~this.offeredProtocolFeatures;
        if (extra !== 0n) {
          throw new VhostUserError(
            request,
            `protocol features ${describeProtocolFeatures(extra)} were not offered`,
          );
        }
        this.protocolFeatures = value;
        return false;
      }
      case REQ.GET_QUEUE_NUM:
        this.#expect(0, 0);
        return this.#replyU64(request, BigInt(this.queuePairs));
      case REQ.SET_MEM_TABLE:
        this.#setMemTable();
        return false;
      case REQ.SET_VRING_NUM:
        this.#setVringNum();
        return false;
      case REQ.SET_VRING_BASE:
        this.#setVringBase();
        return false;
      case REQ.SET_VRING_ADDR:
        this.#setVringAddr();
        return false;
      case REQ.GET_VRING_BASE: {
        this.#expect(VHOST_USER_VRING_STATE_SIZE, 0);
        const v = this.#vring(m.vringStateIndex);
        const at = v.queue !== null ? this.onVringStop?.(this, v.index) ?? -1 : -1;
        v.stop(at); // takes the position (the queue's unless given) into v.base
        this.#generation++;
        m.beginReply().setVringState(v.index, v.base);
        this.#send();
        return true;
      }
      case REQ.SET_VRING_KICK:
      case REQ.SET_VRING_CALL:
      case REQ.SET_VRING_ERR:
        this.#setVringFile(request);
        return false;
      case REQ.SET_VRING_ENABLE: {
        this.#expect(VHOST_USER_VRING_STATE_SIZE, 0);
        const v = this.#vring(m.vringStateIndex), num = m.vringStateNum;
        if (num > 1) throw new VhostUserError(request, `num ${num} is not 0 or 1`);
        v.enabled = num === 1;
        return false;
      }
      case REQ.SET_STATUS: {
        this.#expect(VHOST_USER_U64_SIZE, 0);
        const s = m.u64;
        if (s > 0xffn) {
          throw new VhostUserError(request, `status 0x${s.toString(16)} is not 8 bits`);
        }
        this.status = Number(s);
        if (this.status === 0) {
          // Status 0 is a device reset (virtio 1.2 §2.1, §3.1.1 step 1): every ring stops and
          // is forgotten, as with RESET_OWNER; the session stays up for a new bring-up.
          for (const v of this.vrings) v.reset();
          this.#generation++;
        }
        return false;
      }
      case REQ.GET_STATUS:
        this.#expect(0, 0);
        return this.#replyU64(request, BigInt(this.status));
      case REQ.NET_SET_MTU: {
        this.#expect(VHOST_USER_U64_SIZE, 0);
        const mtu = m.u64;
        if (mtu < 68n || mtu > 65535n) {
          throw new VhostUserError(request, `MTU ${mtu} is outside 68..65535`);
        }
        this.frontendMtu = Number(mtu);
        return false;
      }
      case REQ.SEND_RARP:
        // Only meaningful after a migration; this device has no RARP to announce.
        this.#expect(VHOST_USER_U64_SIZE, 0);
        return false;
      case REQ.GET_CONFIG:
        return this.#getConfig();
      case REQ.SET_BACKEND_REQ_FD: {
        if ((this.protocolFeatures & protocolFeatureMask("BACKEND_REQ")) === 0n) {
          throw new VhostUserError(request, "BACKEND_REQ (protocol feature 5) was not negotiated");
        }
        this.#expect(0, 1);
        closeQuietly(this.#backendReqFd);
        this.#backendReqFd = this.#takeFds()[0];
        return false;
      }
      default:
        throw new VhostUserError(
          request,
          `request ${request} is not supported by this backend (it offers protocol features ` +
            `${describeProtocolFeatures(this.offeredProtocolFeatures)})`,
        );
    }
  }

  /** Throws unless the payload is `size` bytes and `fds` fds came with it. */
  #expect(size: number, fds: number): void {
    const m = this.#msg;
    m.expectSize(size);
    if (this.#fds.length !== fds) {
      throw new VhostUserError(
        m.request,
        `${this.#fds.length} file descriptors attached, expected ${fds}`,
      );
    }
  }

  #vring(index: number): Vring {
    if (index >= this.vrings.length) {
      throw new VhostUserError(
        this.#msg.request,
        `vring index ${index} is out of range (this device has ${this.vrings.length} vrings, ` +
          `${this.queuePairs} queue pair(s))`,
      );
    }
    return this.vrings[index];
  }

  get #packed(): boolean {
    return (this.features & featureMask("F_RING_PACKED")) !== 0n;
  }

  #setFeatures(value: bigint): void {
    const extra = value & ~this.offeredFeatures;
    if (extra !== 0n) {
      throw new VhostUserError(
        REQ.SET_FEATURES,
        `feature ${describeFeatures(extra)} was not offered (offered: ` +
          `${describeFeatures(this.offeredFeatures)})`,
      );
    }
    if (this.started && value !== this.features) {
      throw new VhostUserError(
        REQ.SET_FEATURES,
        "features changed while the device is running",
      );
    }
    this.features = value;
  }

  #setMemTable(): void {
    const m = this.#msg;
    const table = m.memoryTable(); // validates count and size
    const fds = this.#takeFds();
    let memory: GuestMemory;
    try {
      // Owns the fds, closes them on error.
      memory = GuestMemory.map(table, fds, this.#memoryArena);
    } catch (e) {
      throw asVhostUserError(e, REQ.SET_MEM_TABLE);
    }
    const old = this.memory;
    this.memory = memory;
    try {
      // Started rings keep their position but must see the new mapping (as DPDK re-translates).
      for (const v of this.vrings) {
        if (v.queue !== null) this.#startQueue(v, v.queue.base);
      }
    } finally {
      old?.close();
    }
  }

  #setVringNum(): void {
    this.#expect(VHOST_USER_VRING_STATE_SIZE, 0);
    this.#vring(this.#msg.vringStateIndex).setSize(this.#msg.vringStateNum, this.#packed);
  }

  #setVringBase(): void {
    this.#expect(VHOST_USER_VRING_STATE_SIZE, 0);
    this.#vring(this.#msg.vringStateIndex).setBase(this.#msg.vringStateNum, this.#packed);
  }

  #setVringAddr(): void {
    this.#expect(VHOST_USER_VRING_ADDR_SIZE, 0);
    const a = this.#msg.vringAddress();
    this.#vring(a.index).setAddresses(a, this.#packed, this.memory);
  }

  #setVringFile(request: number): void {
    const m = this.#msg;
    m.expectSize(VHOST_USER_U64_SIZE);
    if (m.vringFileHasUnknownBits) {
      throw new VhostUserError(request, `payload 0x${m.u64.toString(16)} sets bits above 8`);
    }
    const noFd = m.vringFileNoFd;
    this.#expect(VHOST_USER_U64_SIZE, noFd ? 0 : 1);
    const v = this.#vring(m.vringFileIndex);
    const fd = noFd ? -1 : this.#takeFds()[0];
    this.#generation++; // a device that keeps fds learns of the change via onQueuesChanged
    if (request === REQ.SET_VRING_CALL) {
      closeQuietly(v.callFd);
      v.callFd = fd;
      v.callSet = true;
    } else if (request === REQ.SET_VRING_ERR) {
      closeQuietly(v.errFd);
      v.errFd = fd;
    } else {
      closeQuietly(v.kickFd);
      v.kickFd = fd;
      // vhost-user.rst "Ring states": without VHOST_USER_F_PROTOCOL_FEATURES the ring starts
      // enabled; with it, SET_VRING_ENABLE enables it.
      if ((this.features & PROTOCOL_FEATURES_BIT) === 0n) v.enabled = true;
      this.#startQueue(v, v.queue !== null ? v.queue.base : v.base);
    }
  }

  /** Builds `v`'s device queue at `base` (SET_VRING_KICK starts a ring; see Vring.start). */
  #startQueue(v: Vring, base: number): void {
    const name = `${this.name} vring ${v.index} (${v.index % 2 === 0 ? "rx" : "tx"}${
      v.index >> 1
    })`;
    const eventIdx = (this.features & featureMask("RING_F_EVENT_IDX")) !== 0n;
    const inOrder = (this.features & featureMask("F_IN_ORDER")) !== 0n;
    v.start(this.#msg.request, this.memory, this.#packed, eventIdx, base, name, inOrder);
    this.#generation++;
  }

  #getConfig(): boolean {
    const m = this.#msg;
    const access = m.configAccess(); // validates the payload size
    this.#expect(m.size, 0);
    if ((this.protocolFeatures & protocolFeatureMask("CONFIG")) === 0n) {
      // vhost-user.rst GET_CONFIG: a zero-length payload tells the frontend it failed.
      m.beginReply();
      this.#send();
      return true;
    }
    if (access.offset + access.size > 256) {
      throw new VhostUserError(
        REQ.GET_CONFIG,
        `config access at ${access.offset}+${access.size} is beyond 256 bytes`,
      );
    }
    const data = new Uint8Array(access.size);
    const cfg = this.#config;
    for (let i = 0; i < access.size && access.offset + i < NET_CONFIG_SIZE; i++) {
      data[i] = cfg[access.offset + i];
    }
    m.beginReply().setConfig(access.offset, access.size, access.flags, data);
    this.#send();
    return true;
  }

  // --- replies -----------------------------------------------------------------------------

  #replyU64(request: number, value: bigint): true {
    const m = this.#msg;
    m.request = request;
    m.beginReply().setU64(value);
    this.#send();
    return true;
  }

  #send(): void {
    sendMsg(this.#conn, this.#msg.bytes, this.#msg.length, []);
  }

  // --- state -------------------------------------------------------------------------------

  /** Recomputes `started` and `running`; calls onQueuesChanged when they (or a queue) changed. */
  #refresh(): void {
    const v = this.vrings;
    const statusOk = (this.protocolFeatures & protocolFeatureMask("STATUS")) === 0n ||
      (this.status & DeviceStatus.DRIVER_OK) !== 0;
    const started = this.#conn >= 0 && v.length >= 2 && v[0].ready && v[0].enabled &&
      v[1].ready && v[1].enabled && statusOk;
    const running: number[] = [];
    if (started) {
      // Queue pairs beyond the first exist only with VIRTIO_NET_F_MQ negotiated (§5.1.3).
      const mq = (this.features & featureMask("NET_F_MQ")) !== 0n;
      for (const ring of v) {
        if (ring.ready && ring.enabled && (mq || ring.index < 2)) running.push(ring.index);
      }
    }
    const key = `${started}|${running.join(",")}|${this.#generation}`;
    if (key === this.#reported) return;
    this.#reported = key;
    this.started = started;
    this.running = running;
    this.onQueuesChanged?.(this);
  }

  #endSession(error: Error | null): void {
    if (error !== null) this.error = error;
    this.onSessionEnd?.(this);
    this.#closeFds();
    closeQuietly(this.#backendReqFd);
    this.#backendReqFd = -1;
    closeQuietly(this.#conn);
    this.#conn = -1;
    for (const v of this.vrings) v.reset();
    this.memory?.close();
    this.memory = null;
    this.features = this.protocolFeatures = 0n;
    this.status = 0;
    this.frontendMtu = 0;
    this.#generation++;
    if (this.#listenFd < 0) {
      this.#closed = true; // a connected backend has no listening socket to wait on
    }
    this.#refresh();
  }
}

/** Wraps errors from lower layers (memory, rings, sockets) so they name the request. */
function asVhostUserError(e: unknown, request: number | string): VhostUserError {
  if (e instanceof VhostUserError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new VhostUserError(request, message, { cause: e });
}

/** virtio_net_config (virtio 1.2 §5.1.4), little endian. */
function netConfig(mac: Uint8Array | undefined, pairs: number, mtu: number): Uint8Array {
  const cfg = new Uint8Array(NET_CONFIG_SIZE);
  const view = new DataView(cfg.buffer);
  if (mac !== undefined) {
    if (mac.length !== 6) throw new RangeError(`mac must be 6 bytes, got ${mac.length}`);
    cfg.set(mac, 0);
  }
  view.setUint16(6, NET_S_LINK_UP, true); // status
  view.setUint16(8, pairs, true); // max_virtqueue_pairs
  view.setUint16(10, mtu, true); // mtu
  view.setUint32(12, 0xffffffff, true); // speed: unknown
  cfg[16] = 0xff; // duplex: unknown
  return cfg;
}
