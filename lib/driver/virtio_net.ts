/**
 * The virtio-net driver (virtio 1.2 §5.1) running in this process: it owns the memory, the rings
 * and the buffers, and hands the device side to a {@linkcode VirtioTransport}.
 *
 * ```
 *   txBurst(bufs) ─► transmitq 2i+1 ─► transport ─► device (DPDK vhost, TS device, vhost-net)
 *   rxBurst(bufs) ◄─ receiveq  2i   ◄─┘                ▲ SET_VRING_ENABLE / SET_BACKEND,
 *   setQueuePairs(n) ─► controlq 2N ─► emulated device ┘ tap filter (control_device.ts)
 * ```
 *
 * Link state: every {@linkcode LINK_CHECK_BURSTS} bursts the driver reads the clock, and at most
 * every {@linkcode LINK_CHECK_MS} ms it polls the transport once (zero timeout), so a peer that
 * hangs up (killed, restarted) is noticed within a few ms whether frames flow or not, without a
 * syscall per burst. A departed peer is an expected condition: the port goes `link: "down"`, every
 * buffer comes back to the pool, and bursts return 0. A peer that breaks a ring rule is not:
 * the driver sets FAILED (virtio 1.2 §2.1.2: the device needs a reset), stops the rings, takes
 * every buffer back and throws a {@linkcode DeviceFailedError} naming the rule, once.
 *
 * The data path of each queue pair is a {@linkcode QueuePair} (lib/driver/queue_pair.ts):
 * `txBurst` / `rxBurst` here add the link check and the fault handling around it. With
 * `detachQueues` each pair is driven from its own thread instead (`QueuePair.attach`).
 *
 * The control queue (§5.1.6.5; lib/driver/control_queue.ts) carries VQ_PAIRS_SET, MAC_ADDR_SET,
 * PROMISC and ALLMULTI; its device side is answered in this process over the transport (the
 * backends have no control queue), as DPDK's virtio-user does.
 *
 * @module
 */

import { closeQuietly } from "../../ffi/fd.ts";
import { pollFd, POLLIN } from "../../ffi/poll.ts";
import { unixAccept, unixListen } from "../../ffi/unix_socket.ts";
import { eventfd } from "../../ffi/eventfd.ts";
import type { VirtioTransport } from "../virtio/transport.ts";
import { BufferPool } from "./buffer_pool.ts";
import {
  describeFeatures,
  featureMask,
  type FeatureName,
  hasFeature,
  NET_TX_OFFLOAD_FEATURES,
} from "../virtio/features.ts";
import { SharedMemory } from "./shared_memory.ts";
import {
  createDriverQueue,
  deviceQueueAt,
  RING_ALIGN,
  ringBytes,
  ringOffset,
} from "./driver_queue.ts";
import { negotiatedOffloads, offloadFeatures, type Offloads } from "./offload.ts";
import { CONTROL_QUEUE_SIZE, ControlQueue } from "./control_queue.ts";
import { ControlDevice } from "./control_device.ts";
import { type CtrlCommand, ctrlDataSize, NET_ERR, NET_OK, NetCtrl } from "../virtio/net_ctrl.ts";
import {
  type CounterSource,
  QUEUE_STATS_BYTES,
  type QueueHandle,
  QueuePair,
  QueueStats,
} from "./queue_pair.ts";
import { DeviceStatus, statusName } from "../virtio/status.ts";
import { type DriverQueue, LocalMemory, VirtqueueError } from "../virtio/virtqueue.ts";
import { VhostUserFrontend } from "../vhost_user/frontend.ts";
import { isVhostNetPath, VhostNetFrontend } from "../vhost_net/frontend.ts";
import {
  NET_CONFIG_READ_SIZE,
  NET_CONFIG_STATUS,
  NET_S_LINK_UP,
  parseNetConfig,
} from "../virtio/net_config.ts";

/** Options of {@linkcode VirtioNet.open}. */
export interface VirtioNetOptions {
  /**
   * vhost-user socket of the backend (DPDK `net_vhost`, the TS device), or `/dev/vhost-net` (any
   * character device) for the Linux kernel's vhost-net with a tap.
   */
  path?: string;
  /** vhost-net: the tap interface to attach (created when missing; default a new `tap<N>`). */
  tap?: string;
  /** An already-connected transport, instead of `path`. */
  transport?: VirtioTransport;
  /**
   * Server mode (vhost-user.rst; DPDK virtio-user `server=1`): listen on `path` (mode 0600, a
   * stale socket file replaced) and let the backend connect (e.g. testpmd `net_vhost0,
   * iface=PATH,client=1`). When that backend goes away the port keeps listening; the next
   * backend to connect is negotiated with from scratch, the rings are rebuilt, traffic resumes.
   */
  server?: boolean;
  /** Server mode: how long `open` waits for the first backend, ms (default 30000). */
  acceptTimeoutMs?: number;
  /**
   * Client mode: after a hang-up, reconnect to `path` (first retry after `retryMs`, default 10,
   * doubling up to `maxRetryMs`, default 1000) and rebuild the rings, as in server mode.
   */
  reconnect?: boolean | { retryMs?: number; maxRetryMs?: number };
  /** Packed rings (virtio 1.1, default) or split rings (`false`); vhost-net is always split. */
  packed?: boolean;
  /** Descriptors per queue (default 256; split rings need a power of two). */
  queueSize?: number;
  /**
   * Queue pairs to use (default 1). More than one needs VIRTIO_NET_F_MQ (§5.1.6.5.5), which is
   * then negotiated, and a backend offering that many (vhost-user GET_QUEUE_NUM; vhost-net: a
   * vhost fd per pair on a multi-queue tap, created so when missing).
   */
  queuePairs?: number;
  /**
   * Each queue pair is driven from its own thread: open() gives pair i its own slice of the
   * buffers (`buffers / queuePairs` each) and leaves its receive ring empty for the thread that
   * calls `QueuePair.attach(port.queueHandle(i))` to fill. The port's `pool`, `txBurst` and
   * `rxBurst` are then unused; `stats` and `queueStats(i)` still read every pair's counters.
   * Not with `server` or `reconnect` (a new backend needs rings rebuilt in every Worker).
   * Default false.
   */
  detachQueues?: boolean;
  /** This port's MAC address, `aa:bb:cc:dd:ee:ff` (default: a random locally administered one). */
  mac?: string;
  /**
   * A control virtqueue (VIRTIO_NET_F_CTRL_VQ, §5.1.6.5) at index 2 × queuePairs, for
   * {@linkcode VirtioNet.setQueuePairs}, `setMac`, `setPromiscuous` and `setAllMulticast`
   * (default true). Its device side is emulated in this process over the transport, as DPDK's
   * virtio-user does: the backend never sees the queue.
   */
  controlQueue?: boolean;
  /** Hugepage policy for the shared memory (see {@linkcode SharedMemory.create}). */
  hugepages?: boolean | "auto";
  /** A hugetlbfs mount to take hugepages from instead of a hugetlb memfd. */
  hugetlbfs?: string;
  /** Packet buffers in the pool (default: 4 × queueSize × queuePairs). */
  buffers?: number;
  /** Bytes per buffer, virtio-net header included (default 2048). */
  bufferSize?: number;
  /** Negotiate VIRTIO_RING_F_EVENT_IDX when offered (default: true for vhost-net, else false). */
  eventIdx?: boolean;
  /** Negotiate VIRTIO_F_IN_ORDER when offered, packed rings only (default true). */
  inOrder?: boolean;
  /**
   * Negotiate VIRTIO_NET_F_MRG_RXBUF when offered (default false): the device may spread a
   * frame over several receive buffers (§5.1.6.4), e.g. 9000-byte frames into 2048-byte
   * buffers; take them with {@linkcode VirtioNet.rxFrames}. For sending frames larger than
   * 2036 bytes, give a larger `bufferSize` (e.g. 10240).
   */
  mergeable?: boolean;
  /**
   * Checksum and segmentation offloads to negotiate (default none; lib/driver/offload.ts):
   * `txChecksum` NET_F_CSUM, `txTso4` / `txTso6` HOST_TSO4 / 6 (need txChecksum), `rxChecksum`
   * GUEST_CSUM, `rxTso4` / `rxTso6` GUEST_TSO4 / 6 (need rxChecksum and `mergeable: true` or a
   * `bufferSize` of at least 65562, §5.1.6.3.1). Each one asked must be offered by the device;
   * {@linkcode VirtioNet.offloads} reports them.
   */
  offloads?: Partial<Offloads>;
  /** Timeout for each backend reply, ms (default 5000). */
  timeoutMs?: number;
  /** Receives notices such as the hugepage fallback (default `console.error`). */
  notice?: (message: string) => void;
  /**
   * A transmit queue that stays full this long without the device taking a frame marks the port
   * {@linkcode VirtioNet.stalled}, ms (default 1000).
   */
  stallMs?: number;
}

/** Link state of a {@linkcode VirtioNet} port. */
export type LinkState = "up" | "down";

/** Bursts between two clock reads of the link check. */
export const LINK_CHECK_BURSTS = 64;
/**
 * Least time between two polls of the transport, ms: a hang-up is seen within about this long
 * plus the kernel's teardown of the peer (tens of ms after a kill -9), well inside 100 ms, at
 * 100 polls a second (the check runs too rarely to be optimized, so each costs a little garbage).
 */
export const LINK_CHECK_MS = 10;
/** How often a pending {@linkcode VirtioNet.readable} wakes to check the link, ms. */
export const READABLE_LINK_CHECK_MS = 50;

/** Detail of the `linkchange` event a {@linkcode VirtioNet} port dispatches. */
export interface LinkChange {
  /** The new state. */
  link: LinkState;
  /** Why it changed (e.g. the backend hung up). */
  reason: string;
}

/**
 * The device broke a virtqueue rule (virtio 1.2 §2.1.2): the driver set FAILED, stopped the port
 * and took every buffer back. `cause` is the {@linkcode VirtqueueError} naming the rule.
 *
 * @example
 * ```ts
 * import { DeviceFailedError } from "./virtio_net.ts";
 * const e = new DeviceFailedError("rx0", new Error("virtqueue rx0: used id 999 is out of range"));
 * console.assert(e.message.includes("used id 999"));
 * ```
 */
export class DeviceFailedError extends Error {
  /** The queue the rule was broken on, e.g. `rx0`. */
  readonly queue: string;
  /** Creates the error for a fault on `queue`. */
  constructor(queue: string, cause: Error) {
    super(
      `device broke a virtqueue rule: ${cause.message}; the port is stopped (status FAILED ` +
        "sent, every buffer back in the pool): close it, and reset or restart the backend",
      { cause },
    );
    this.name = "DeviceFailedError";
    this.queue = queue;
  }
}

/**
 * Counters of a {@linkcode VirtioNet} port or one of its queue pairs, read live from the counter
 * blocks in shared memory (one per pair, written by the thread that drives it).
 */
export interface VirtioNetStats {
  /** Frames handed to the device. */
  txPackets: number;
  /** Frame bytes handed to the device (headers excluded). */
  txBytes: number;
  /** Frames received. */
  rxPackets: number;
  /** Frame bytes received (headers excluded). */
  rxBytes: number;
  /** Frames the device returned as used on the transmit queues (it took them). */
  txCompleted: number;
  /** Notifications (kicks) sent to the device. */
  kicks: number;
  /** Times the receive ring could not be refilled because the pool was empty. */
  rxNoBuffers: number;
  /** Frames `rxBurst` dropped because they spanned several buffers (take them with rxFrames). */
  rxDropped: number;
  /** Times `readable()` slept on a call eventfd and was woken. */
  wakeups: number;
}

/** Receive buffer size GUEST_TSO needs without MRG_RXBUF (§5.1.6.3.1), rounded up to 64. */
const GSO_RX_BUFFER = 65600;

/** The virtio features this driver can use, beyond the required F_VERSION_1. */
const OPTIONAL: FeatureName[] = [
  "F_RING_PACKED",
  "RING_F_EVENT_IDX",
  "F_IN_ORDER",
  "NET_F_MRG_RXBUF",
];

/**
 * A virtio-net port driven from this process.
 *
 * @example
 * ```ts ignore
 * import { VirtioNet } from "./virtio_net.ts";
 * using port = VirtioNet.open({ path: "/tmp/vhost.sock" });
 * const bufs = new Uint32Array(32), lens = new Uint32Array(32);
 * const n = port.pool.alloc(bufs, 0, 32);
 * lens.fill(60);
 * const sent = port.txBurst(bufs, lens, n);
 * port.pool.free(bufs, sent, n - sent);
 * ```
 */
export class VirtioNet extends EventTarget {
  /** The packet buffers; frames live at `pool.bytes[pool.dataOffset(n)]`. */
  readonly pool: BufferPool;
  /** Counters summed over every queue pair, read live (see {@linkcode queueStats}). */
  readonly stats: VirtioNetStats;
  /**
   * This port's MAC address: the `mac` option, else the device's (virtio_net_config, with
   * VIRTIO_NET_F_MAC), else a random locally administered one.
   */
  readonly mac: Uint8Array;
  /** The MTU the device advises (VIRTIO_NET_F_MTU, §5.1.4), or null when it gives none. */
  readonly mtu: number | null;
  /** Features agreed with the device. */
  readonly features: bigint;
  /** True when the queues are packed rings. */
  readonly packed: boolean;
  /** Queue pairs in use. */
  readonly queuePairs: number;
  /** VIRTIO_NET_F_MRG_RXBUF negotiated: receive frames with {@linkcode rxFrames}. */
  readonly mergeable: boolean;
  /**
   * The offloads negotiated (the `offloads` option, as the device agreed). With a `tx*` one,
   * `pool.alloc` zeroes headers and txBurst sends them as written (`requestTxChecksum`,
   * `requestTxTso`); with a `rx*` one read each received header (`netHdrFlags`, ...).
   */
  readonly offloads: Readonly<Offloads>;
  /** The transport to the current device (vhost-user or vhost-net), for diagnostics. */
  get transport(): VirtioTransport {
    return this.#transport;
  }

  /** Times the port came back up with a new backend (server mode or `reconnect`). */
  reconnects = 0;

  #transport: VirtioTransport;
  readonly #path: string | undefined;
  readonly #transportOptions: { timeoutMs?: number; queuePairs: number };
  #listenFd = -1;
  readonly #retry: { first: number; max: number } | null;
  #retryMs = 0;
  #nextAttempt = 0;
  readonly #queueSize: number;
  readonly #ringAt: number[] = [];

  readonly #memory: SharedMemory;
  readonly #rx: DriverQueue[];
  readonly #tx: DriverQueue[];
  readonly #kickFds: number[];
  readonly #callFds: number[];
  /** The data path of each pair driven from this thread; empty for detached pairs. */
  readonly #pairs: QueuePair[] = [];
  /** The pairs bursts may use: `#pairs` up to the active count, then nothing. */
  readonly #active: QueuePair[] = [];
  #activePairs: number;
  #promiscuous = true;
  #allMulticast = false;
  readonly #control: ControlQueue | null = null;
  readonly #counters: CounterSource;
  readonly #detached: boolean;
  readonly #handed: boolean[] = [];
  #closed = false;
  /** True once the peer is gone or the port is closed: bursts leave the fast path. */
  #down = false;
  #downReason = "";
  /** The device reports its link down (VIRTIO_NET_S_LINK_UP clear, §5.1.4); the rings work. */
  #carrierDown = false;
  #bursts = 0;
  #lastCheck = 0;
  readonly #stallMs: number;
  #stallSince = -1;
  #stalled = false;
  #lastTxPackets = 0;
  #failure: DeviceFailedError | null = null;

  private constructor(
    transport: VirtioTransport,
    memory: SharedMemory,
    pool: BufferPool,
    features: bigint,
    mac: Uint8Array,
    queueSize: number,
    pairs: number,
    options: VirtioNetOptions,
    mtu: number | null,
  ) {
    super();
    this.mtu = mtu;
    this.#stallMs = options.stallMs ?? 1000;
    this.#transport = transport;
    this.#path = options.path;
    this.#transportOptions = { timeoutMs: options.timeoutMs, queuePairs: pairs };
    this.#queueSize = queueSize;
    const r = options.reconnect;
    this.#retry = r === undefined || r === false ? null : {
      first: (r === true ? undefined : r.retryMs) ?? 10,
      max: (r === true ? undefined : r.maxRetryMs) ?? 1000,
    };
    this.#memory = memory;
    this.pool = pool;
    this.features = features;
    this.mac = mac;
    this.packed = hasFeature(features, "F_RING_PACKED");
    this.mergeable = hasFeature(features, "NET_F_MRG_RXBUF");
    this.offloads = Object.freeze(negotiatedOffloads(features));
    this.queuePairs = pairs;
    this.#rx = [];
    this.#tx = [];
    this.#kickFds = [];
    this.#callFds = [];
    this.#detached = options.detachQueues ?? false;
    // One counter block per pair, each on its own cache lines (written by one thread only).
    const at = memory.alloc(QUEUE_STATS_BYTES * pairs, 64);
    this.#counters = {
      counters: new Float64Array(memory.buffer, at, (QUEUE_STATS_BYTES / 8) * pairs),
    };
    this.stats = new QueueStats(this.#counters, 0, pairs);
    this.#activePairs = pairs;
    if (options.controlQueue ?? true) {
      const local = new LocalMemory(new Uint8Array(memory.buffer), memory.addr);
      let device: ControlDevice | null = null;
      const control = new ControlQueue({
        memory,
        packed: this.packed,
        notify: () => device!.serve(),
        timeoutMs: options.timeoutMs,
        reason: () => device!.reason,
      });
      const queue = deviceQueueAt(
        memory,
        control.ringAt,
        this.packed,
        CONTROL_QUEUE_SIZE,
        "ctrl",
        local,
      );
      device = new ControlDevice(queue, local, (cmd, d) => this.#handleControl(cmd, d));
      this.#control = control;
    }
  }

  /**
   * Connects to a transport and brings the device up (virtio 1.2 §3.1.1): ACKNOWLEDGE, DRIVER,
   * feature negotiation, FEATURES_OK, queue setup, receive rings filled, DRIVER_OK.
   *
   * @example
   * ```ts ignore
   * import { VirtioNet } from "./virtio_net.ts";
   * const port = VirtioNet.open({ path: "/tmp/vhost.sock", packed: false, queueSize: 1024 });
   * port.close();
   * ```
   *
   * @example Server mode: the backend connects (testpmd `net_vhost0,iface=...,client=1`) and
   * may come back after a restart.
   * ```ts ignore
   * import { VirtioNet } from "./virtio_net.ts";
   * const port = VirtioNet.open({ path: "/tmp/virtio-user.sock", server: true });
   * port.addEventListener("linkchange", (e) => console.log((e as CustomEvent).detail));
   * ```
   */
  static open(options: VirtioNetOptions): VirtioNet {
    const queueSize = options.queueSize ?? 256;
    const pairs = options.queuePairs ?? 1;
    const kernel = options.transport instanceof VhostNetFrontend ||
      (options.transport === undefined && options.path !== undefined &&
        isVhostNetPath(options.path));
    if (options.tap !== undefined && !kernel) {
      throw new TypeError(`tap "${options.tap}" needs path /dev/vhost-net (vhost-net)`);
    }
    let packedWanted = options.packed ?? true;
    if (kernel && packedWanted) {
      (options.notice ?? console.error)(
        "vhost-net: using split rings (the Linux vhost-net backend implements no packed ring)",
      );
      packedWanted = false;
    }
    if (kernel) options = { ...options, eventIdx: options.eventIdx ?? true };
    if (options.detachQueues && (options.server || options.reconnect)) {
      throw new TypeError(
        "detachQueues cannot be combined with server or reconnect: a new backend needs every " +
          "queue pair's rings rebuilt, and detached pairs live in other threads; use one mode",
      );
    }
    if (!Number.isInteger(queueSize) || queueSize < 1 || queueSize > 32768) {
      throw new RangeError(`queueSize ${queueSize} must be 1..32768`);
    }
    if (!packedWanted && (queueSize & (queueSize - 1)) !== 0) {
      throw new RangeError(`queueSize ${queueSize}: split rings need a power of two (§2.7)`);
    }
    let transport = options.transport;
    let listenFd = -1;
    if (transport === undefined) {
      if (options.path === undefined) throw new TypeError("VirtioNet.open: give path or transport");
      const how = { timeoutMs: options.timeoutMs, queuePairs: pairs };
      if (kernel) {
        if (options.server || options.reconnect) {
          throw new TypeError(
            "server and reconnect are vhost-user modes; /dev/vhost-net is opened, not connected",
          );
        }
        transport = VhostNetFrontend.open(options.path, { tap: options.tap, queuePairs: pairs });
      } else if (options.server) {
        listenFd = unixListen(options.path, 0o600);
        try {
          transport = acceptBackend(listenFd, options.path, options.acceptTimeoutMs ?? 30000, how);
        } catch (e) {
          stopListening(listenFd, options.path);
          throw e;
        }
      } else transport = VhostUserFrontend.connect(options.path, how);
    }
    try {
      const port = VirtioNet.#bringUp(transport, options, queueSize, pairs, packedWanted);
      port.#listenFd = listenFd;
      return port;
    } catch (e) {
      try {
        transport.setStatus(DeviceStatus.FAILED);
      } catch { /* the connection may be what failed */ }
      transport.close();
      if (listenFd >= 0) stopListening(listenFd, options.path!);
      throw e;
    }
  }

  static #bringUp(
    transport: VirtioTransport,
    options: VirtioNetOptions,
    queueSize: number,
    pairs: number,
    packedWanted: boolean,
  ): VirtioNet {
    const { ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK } = DeviceStatus;
    transport.setStatus(ACKNOWLEDGE);
    transport.setStatus(ACKNOWLEDGE | DRIVER);

    // Feature negotiation (§2.2, §3.1.1 steps 4-6).
    const offered = transport.getFeatures();
    const required: FeatureName[] = ["F_VERSION_1"];
    if (packedWanted) required.push("F_RING_PACKED");
    for (const name of required) {
      if (!hasFeature(offered, name)) {
        throw new Error(
          `${transport.name} does not offer ${name} (bit ${
            featureMask(name).toString(2).length - 1
          })` +
            (name === "F_RING_PACKED" ? "; use split rings (packed: false, --split)" : "") +
            `; it offers ${describeFeatures(offered)}`,
        );
      }
    }
    if (pairs > transport.maxQueuePairs) {
      throw new Error(
        `${transport.name} supports ${transport.maxQueuePairs} queue pair(s), ${pairs} requested`,
      );
    }
    // More than one queue pair needs VIRTIO_NET_F_MQ (§5.1.3, §5.1.6.5.5).
    if (pairs > 1) {
      // As DPDK's virtio-user, no control queue: over vhost-user the frontend picks the active
      // pairs with SET_VRING_ENABLE (vhost-user.rst "Multiple queue support"), not
      // VIRTIO_NET_CTRL_MQ.
      if (!hasFeature(offered, "NET_F_MQ")) {
        throw new Error(
          `${transport.name} does not offer NET_F_MQ (bit 22): ${pairs} queue pairs need it ` +
            `(VIRTIO_NET_F_MQ negotiated, virtio 1.2 §5.1.6.5.5); start the backend with ` +
            `queues=${pairs} or use queuePairs: 1`,
        );
      }
      required.push("NET_F_MQ");
    }
    let wanted = featureMask(...required);
    if (transport.configSpace) {
      // The device config can be read (vhost-user CONFIG): take its MAC, link status and MTU
      // (§5.1.4). Without it these stay off, as DPDK's frontend strips MAC and STATUS.
      wanted |= offered & featureMask("NET_F_MAC", "NET_F_STATUS", "NET_F_MTU");
    }
    for (const name of OPTIONAL) {
      if (name === "RING_F_EVENT_IDX" && !options.eventIdx) continue;
      if (name === "F_RING_PACKED" && !packedWanted) continue;
      // In-order completion (§2.8.20) is implemented for packed rings.
      if (name === "F_IN_ORDER" && (!packedWanted || options.inOrder === false)) continue;
      if (name === "NET_F_MRG_RXBUF" && !options.mergeable) continue;
      wanted |= offered & featureMask(name);
    }
    wanted |= offloadFeatures(options.offloads ?? {}, offered, transport.name);
    const bufferSize = options.bufferSize ?? 2048;
    if (
      hasFeature(wanted, "NET_F_GUEST_TSO4") || hasFeature(wanted, "NET_F_GUEST_TSO6")
    ) {
      // §5.1.6.3.1: without MRG_RXBUF, GUEST_TSO wants receive buffers of 65562 bytes.
      if (!hasFeature(wanted, "NET_F_MRG_RXBUF") && bufferSize < GSO_RX_BUFFER) {
        throw new TypeError(
          `offloads.rxTso4/rxTso6 (NET_F_GUEST_TSO4/6, bits 7/8) receive frames up to 64 KB: ` +
            `they need mergeable: true (NET_F_MRG_RXBUF, bit 15${
              hasFeature(offered, "NET_F_MRG_RXBUF") ? "" : ", which this device does not offer"
            }) or bufferSize ≥ ${GSO_RX_BUFFER} (virtio 1.2 §5.1.6.3.1)`,
        );
      }
    }
    transport.setFeatures(wanted);
    transport.setStatus(ACKNOWLEDGE | DRIVER | FEATURES_OK);
    const status = transport.getStatus();
    if (status >= 0 && (status & FEATURES_OK) === 0) {
      throw new Error(
        `${transport.name} refused features ${describeFeatures(wanted)} (status ${
          statusName(status)
        })`,
      );
    }

    // Memory: every ring, then the buffer pool (§2.7 / §2.8 alignment inside ringBytes).
    const buffers = options.buffers ?? 4 * queueSize * pairs;
    const perRing = ringBytes(packedWanted, queueSize);
    const stats = QUEUE_STATS_BYTES * pairs + 64;
    const control = ringBytes(packedWanted, CONTROL_QUEUE_SIZE) + 4096 + 128;
    const memory = SharedMemory.create(
      2 * pairs * (perRing + 4096) + buffers * bufferSize + 4096 + stats + control,
      {
        hugepages: options.hugepages,
        hugetlbfs: options.hugetlbfs,
        notice: options.notice,
      },
    );
    try {
      // Detached pairs own slices of the buffers (queueHandle); the port's pool keeps none.
      const pool = new BufferPool(
        memory,
        buffers,
        bufferSize,
        options.detachQueues ? { owned: 0 } : {},
      );
      // §3.1.1 step 7: device-specific setup reads the configuration space.
      const raw = transport.configSpace
        ? transport.getConfig?.(0, NET_CONFIG_READ_SIZE) ?? null
        : null;
      const config = raw === null ? null : parseNetConfig(raw);
      const mac = options.mac === undefined && config !== null && hasFeature(wanted, "NET_F_MAC")
        ? config.mac
        : parseMac(options.mac);
      const mtu = config !== null && hasFeature(wanted, "NET_F_MTU") ? config.mtu : null;
      const port = new VirtioNet(
        transport,
        memory,
        pool,
        wanted,
        mac,
        queueSize,
        pairs,
        options,
        mtu,
      );
      port.#setUpQueues(true);
      transport.setStatus(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
      port.#readCarrier(false);
      return port;
    } catch (e) {
      memory.close();
      throw e;
    }
  }

  /**
   * Places the rings (the first time: allocates their blocks; after a reconnect: fresh rings in
   * the same blocks), builds each pair's {@linkcode QueuePair} over them, fills the receive
   * rings (not those of detached pairs: their threads do) and hands every ring to the transport.
   */
  #setUpQueues(first: boolean): void {
    const pairs = this.queuePairs, queueSize = this.#queueSize;
    const eventIdx = hasFeature(this.features, "RING_F_EVENT_IDX");
    const inOrder = hasFeature(this.features, "F_IN_ORDER");
    this.#transport.setMemTable([this.#memory]);
    for (let index = 0; index < 2 * pairs; index++) {
      const rx = index % 2 === 0;
      const name = `${rx ? "rx" : "tx"}${index >> 1}`;
      if (first) {
        this.#ringAt.push(this.#memory.alloc(ringBytes(this.packed, queueSize), RING_ALIGN));
        this.#kickFds.push(eventfd());
        this.#callFds.push(eventfd());
      }
      const queue = createDriverQueue(
        this.#memory,
        this.packed,
        queueSize,
        name,
        this.pool,
        eventIdx,
        inOrder,
        this.#ringAt[index],
      );
      const i = index >> 1;
      (rx ? this.#rx : this.#tx)[i] = queue;
      // Poll mode: ask the device not to interrupt us (§2.7.7 / §2.8.10).
      queue.setInterrupts(false);
      // The device starts reading where the ring starts, not past the buffers the refill below
      // posts (vhost SET_VRING_BASE = the device's next avail position).
      const base = queue.base;
      if (!rx && !this.#detached) {
        // A new pair each time: after a reconnect its rings, counters' block and pool stay,
        // its ring state starts fresh (the old pair's pending readable() ends).
        this.#pairs[i]?.close();
        this.#pairs[i] = new QueuePair({
          index: i,
          rx: this.#rx[i],
          tx: queue,
          pool: this.pool,
          rxKickFd: this.#kickFds[index - 1],
          txKickFd: this.#kickFds[index],
          rxCallFd: this.#callFds[index - 1],
          source: this.#counters,
          mergeable: this.mergeable,
          txOffload: (this.features & NET_TX_OFFLOAD_FEATURES) !== 0n,
        });
        // §5.1.5: fill receiveq before DRIVER_OK (its base was read when it was placed).
        this.#pairs[i].refill(false);
        if (i < this.#activePairs) this.#active[i] = this.#pairs[i];
      }
      this.#transport.setupQueue({
        index,
        size: queueSize,
        addresses: queue.addresses,
        base,
        kickFd: this.#kickFds[index],
        callFd: this.#callFds[index],
      });
    }
    // The pairs VQ_PAIRS_SET made active (all of them until it is sent).
    for (let index = 0; index < 2 * this.#activePairs; index++) {
      this.#transport.enableQueue(index, true);
    }
  }

  /**
   * While down in server mode or with `reconnect`: take a waiting backend (server) or connect
   * again (client, with backoff), then bring the device up again on the same memory (§3.1.1;
   * the rings start fresh, as DPDK's virtio-user does on reconnect).
   */
  #tryReattach(now: number): void {
    let transport: VirtioTransport | null = null;
    const path = this.#path!;
    try {
      if (this.#listenFd >= 0) {
        if ((pollFd(this.#listenFd, POLLIN, 0) & POLLIN) === 0) {
          this.#nextAttempt = now + LINK_CHECK_MS;
          return;
        }
        transport = VhostUserFrontend.accepted(
          unixAccept(this.#listenFd),
          path,
          this.#transportOptions,
        );
      } else {
        transport = VhostUserFrontend.connect(path, this.#transportOptions);
      }
      this.#bringUpAgain(transport);
    } catch (e) {
      if (transport !== null) {
        try {
          transport.setStatus(DeviceStatus.FAILED);
        } catch { /* gone already */ }
        transport.close();
      }
      this.#reclaimAll();
      this.#downReason = `reconnecting to ${path}: ${(e as Error).message}`;
      const r = this.#retry;
      this.#retryMs = r === null ? LINK_CHECK_MS : Math.min(this.#retryMs * 2 || r.first, r.max);
      this.#nextAttempt = performance.now() + this.#retryMs;
      return;
    }
    this.#retryMs = 0;
    this.#down = false;
    this.#downReason = "";
    this.#failure = null;
    this.#stalled = false;
    this.#stallSince = -1;
    this.#lastTxPackets = this.stats.txPackets;
    this.reconnects++;
    this.#carrierDown = false;
    this.dispatchEvent(
      new CustomEvent<LinkChange>("linkchange", {
        detail: { link: "up", reason: `${transport.name}: a backend connected; rings rebuilt` },
      }),
    );
    this.#readCarrier(true); // the new device may report its link down
  }

  /** §3.1.1 again with a new backend: the features agreed the first time, or it is refused. */
  #bringUpAgain(transport: VirtioTransport): void {
    const { ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK } = DeviceStatus;
    transport.setStatus(ACKNOWLEDGE);
    transport.setStatus(ACKNOWLEDGE | DRIVER);
    const missing = this.features & ~transport.getFeatures();
    if (missing !== 0n) {
      throw new Error(
        `${transport.name} does not offer ${describeFeatures(missing)}, which this port ` +
          "negotiated with its first backend; start the backend with the same options",
      );
    }
    if (this.queuePairs > transport.maxQueuePairs) {
      throw new Error(`${transport.name} supports ${transport.maxQueuePairs} queue pair(s)`);
    }
    transport.setFeatures(this.features);
    transport.setStatus(ACKNOWLEDGE | DRIVER | FEATURES_OK);
    const status = transport.getStatus();
    if (status >= 0 && (status & FEATURES_OK) === 0) {
      throw new Error(`${transport.name} refused features ${describeFeatures(this.features)}`);
    }
    this.#transport = transport;
    this.#setUpQueues(false);
    transport.setStatus(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
  }

  /**
   * Sends `n` frames on pair `queue`: buffer `bufs[i]` holding `lens[i]` frame bytes at
   * `pool.dataOffset(bufs[i])`. Returns how many were queued; the port owns those buffers now
   * and frees them when the device is done. The rest stay the caller's.
   * One publish and at most one kick per call; no allocation. When the device broke a ring rule
   * it throws {@linkcode DeviceFailedError}, after taking every buffer back.
   */
  txBurst(bufs: Uint32Array, lens: Uint32Array, n: number, queue = 0): number {
    if (this.#down) return this.#deadBurst();
    // The link check may find the peer gone; its rings are dead then: touch them no more.
    if (++this.#bursts === LINK_CHECK_BURSTS && this.#checkLink()) return 0;
    const pair = this.#active[queue] ?? this.#noPair(queue);
    try {
      return pair.txBurst(bufs, lens, n);
    } catch (e) {
      throw this.#fail(pair, e);
    }
  }

  /**
   * Receives up to `max` frames from pair `queue`: their buffer numbers into `bufs`, frame
   * lengths into `lens`. The caller owns those buffers (free them to `pool`, or send them on).
   * Refills the receive ring in the same call; at most one kick. When the device broke a ring
   * rule it throws {@linkcode DeviceFailedError}, after taking every buffer back (those the call
   * had taken before the bad entry too).
   */
  rxBurst(bufs: Uint32Array, lens: Uint32Array, max: number, queue = 0): number {
    if (this.#down) return this.#deadBurst();
    // The link check may find the peer gone; its rings are dead then: touch them no more.
    if (++this.#bursts === LINK_CHECK_BURSTS && this.#checkLink()) return 0;
    const pair = this.#active[queue] ?? this.#noPair(queue);
    try {
      return pair.rxBurst(bufs, lens, max);
    } catch (e) {
      throw this.#fail(pair, e);
    }
  }

  /**
   * Receives whole frames from pair `queue`, also those spanning several receive buffers
   * (VIRTIO_NET_F_MRG_RXBUF): returns the frame count; frame `f` is the next `segs[f]` entries
   * of `bufs` / `lens` (frame bytes in each buffer), at most `maxBufs` entries in all. A frame
   * starts at `pool.dataOffset(b)` in its first buffer and at `pool.headerOffset(b)` in the
   * others. The caller owns every buffer returned. Link checks and faults as {@linkcode rxBurst}.
   *
   * @example
   * ```ts ignore
   * const bufs = new Uint32Array(64), lens = new Uint32Array(64), segs = new Uint32Array(64);
   * const frames = port.rxFrames(bufs, lens, segs, 64);
   * let j = 0;
   * for (let f = 0; f < frames; f++) j += segs[f]; // bufs[0..j) hold the frames
   * port.pool.free(bufs, 0, j);
   * ```
   */
  rxFrames(
    bufs: Uint32Array,
    lens: Uint32Array,
    segs: Uint32Array,
    maxBufs: number,
    queue = 0,
  ): number {
    if (this.#down) return this.#deadBurst();
    if (++this.#bursts === LINK_CHECK_BURSTS && this.#checkLink()) return 0;
    const pair = this.#active[queue] ?? this.#noPair(queue);
    try {
      return pair.rxFrames(bufs, lens, segs, maxBufs);
    } catch (e) {
      throw this.#fail(pair, e);
    }
  }

  /**
   * Resolves with true once `rxBurst(…, queue)` will find a frame (false after `timeoutMs`):
   * at once when one waits, else after arming used-buffer notifications and sleeping on the
   * call eventfd off this thread's event loop (see `QueuePair.readable`). An idle port then
   * costs no CPU, as DPDK's rx interrupt mode; a busy one never arms. While it sleeps it checks
   * the link every {@linkcode READABLE_LINK_CHECK_MS} (a departed peer raises no call), and on a
   * port whose link is down it resolves true after {@linkcode LINK_CHECK_MS} (in server mode or
   * with `reconnect` after trying a new backend), so a loop of bursts and waits neither spins
   * nor stops reconnecting; check {@linkcode link}. On a closed port it rejects.
   *
   * @example
   * ```ts ignore
   * for (;;) {
   *   const n = port.rxBurst(bufs, lens, 32);
   *   if (n === 0) await port.readable();
   *   port.pool.free(bufs, 0, n);
   * }
   * ```
   */
  async readable(timeoutMs = -1, queue = 0): Promise<boolean> {
    const deadline = timeoutMs < 0 ? Infinity : performance.now() + timeoutMs;
    for (;;) {
      if (this.#closed) throw new TypeError("VirtioNet: the port is closed; open a new one");
      if (this.#down) {
        const now = performance.now();
        if ((this.#listenFd >= 0 || this.#retry !== null) && now >= this.#nextAttempt) {
          this.#tryReattach(now);
        }
        await new Promise((resolve) => setTimeout(resolve, LINK_CHECK_MS));
        return true;
      }
      const pair = this.#active[queue] ?? this.#noPair(queue);
      const left = deadline - performance.now();
      if (await pair.readable(Math.max(0, Math.min(left, READABLE_LINK_CHECK_MS)))) return true;
      if (performance.now() >= deadline) return false;
      this.checkLink();
    }
  }

  #noPair(queue: number): never {
    const set = Number.isInteger(queue) && queue >= 0 && queue < this.queuePairs;
    throw new RangeError(
      this.#detached
        ? `queue pair ${queue} is detached: drive it through QueuePair.attach(queueHandle(${queue}))`
        : set
        ? `queue pair ${queue} is disabled (setQueuePairs(${this.#activePairs}) is in force); ` +
          `enable it with setQueuePairs(${queue + 1})`
        : `queue pair ${queue} does not exist (the port has ${this.queuePairs})`,
    );
  }

  /** True when the port has a control virtqueue (option `controlQueue`, default true). */
  get controlQueue(): boolean {
    return this.#control !== null;
  }

  /** Queue pairs the device uses now (VQ_PAIRS_SET; {@linkcode queuePairs} until it is sent). */
  get activeQueuePairs(): number {
    return this.#activePairs;
  }

  /**
   * Promiscuous receive as last acked (VIRTIO_NET_CTRL_RX_PROMISC; on from the start, as
   * QEMU's device resets it). Enforced over vhost-net (the tap's TUNSETTXFILTER passes only
   * this port's MAC, broadcast, and with {@linkcode allMulticast} multicast); over vhost-user
   * recorded only (DPDK's vhost PMD cannot filter).
   */
  get promiscuous(): boolean {
    return this.#promiscuous;
  }

  /** All-multicast receive as last acked (VIRTIO_NET_CTRL_RX_ALLMULTI; off from the start). */
  get allMulticast(): boolean {
    return this.#allMulticast;
  }

  /**
   * Uses the first `n` queue pairs (VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, §5.1.6.5.5), 1 to
   * {@linkcode queuePairs}: the device's rings of the other pairs are disabled (vhost-user
   * SET_VRING_ENABLE 0, vhost-net SET_BACKEND -1) and bursts on them throw a RangeError until
   * they are enabled again; buffers in their rings stay there. Pairs driven by Workers
   * (`detachQueues`) are not refused in their threads: stop them first. Throws a
   * `ControlCommandError` when the device answers VIRTIO_NET_ERR (e.g. more pairs than set up).
   *
   * @example
   * ```ts ignore
   * const port = VirtioNet.open({ path: "/tmp/vhost.sock", queuePairs: 2 });
   * port.setQueuePairs(1); // queue pair 1 disabled
   * port.setQueuePairs(2); // and back
   * ```
   */
  setQueuePairs(n: number): void {
    if (!Number.isInteger(n)) throw new RangeError(`setQueuePairs(${n}): not an integer`);
    this.#controlCommand(NetCtrl.MQ, NetCtrl.MQ_VQ_PAIRS_SET, Uint8Array.of(n & 0xff, n >> 8));
  }

  /**
   * Makes `mac` (`aa:bb:cc:dd:ee:ff` or 6 bytes) the port's address
   * (VIRTIO_NET_CTRL_MAC_ADDR_SET, §5.1.6.5.2): once acked, {@linkcode mac} holds it.
   *
   * @example
   * ```ts ignore
   * port.setMac("02:00:00:00:00:42");
   * ```
   */
  setMac(mac: string | Uint8Array): void {
    const bytes = typeof mac === "string" ? parseMac(mac) : mac;
    if (bytes.length !== 6) throw new RangeError(`setMac: ${bytes.length} bytes, a MAC has 6`);
    this.#controlCommand(NetCtrl.MAC, NetCtrl.MAC_ADDR_SET, Uint8Array.from(bytes));
  }

  /**
   * Turns promiscuous receive on or off (VIRTIO_NET_CTRL_RX_PROMISC, §5.1.6.5.1).
   *
   * @example
   * ```ts ignore
   * port.setPromiscuous(false);
   * ```
   */
  setPromiscuous(on: boolean): void {
    this.#controlCommand(NetCtrl.RX, NetCtrl.RX_PROMISC, Uint8Array.of(on ? 1 : 0));
  }

  /**
   * Turns all-multicast receive on or off (VIRTIO_NET_CTRL_RX_ALLMULTI, §5.1.6.5.1).
   *
   * @example
   * ```ts ignore
   * port.setAllMulticast(true);
   * ```
   */
  setAllMulticast(on: boolean): void {
    this.#controlCommand(NetCtrl.RX, NetCtrl.RX_ALLMULTI, Uint8Array.of(on ? 1 : 0));
  }

  #controlCommand(cls: number, command: number, data: Uint8Array): void {
    if (this.#control === null) {
      throw new TypeError("this port has no control queue: open it with controlQueue: true");
    }
    if (this.#closed) throw new TypeError("VirtioNet: the port is closed; open a new one");
    if (this.#down) {
      throw new Error(`control command not sent: the link is down (${this.#downReason})`);
    }
    this.#control.send(cls, command, data);
  }

  /**
   * The emulated device's answer to a control command (as DPDK's virtio_user_handle_cq):
   * VQ_PAIRS_SET enables and disables rings over the transport; MAC_ADDR_SET, PROMISC and
   * ALLMULTI become the transport's receive filter where it has one (vhost-net), and are
   * recorded; anything else is VIRTIO_NET_ERR.
   */
  #handleControl(cmd: CtrlCommand, device: ControlDevice): number {
    const size = ctrlDataSize(cmd.cls, cmd.command);
    if (size < 0) {
      device.reason = "not implemented by this device (only RX PROMISC/ALLMULTI, MAC ADDR_SET, " +
        "MQ VQ_PAIRS_SET)";
      return NET_ERR;
    }
    if (cmd.dataLength !== size) {
      device.reason = `${cmd.dataLength} data bytes, the command has ${size}`;
      return NET_ERR;
    }
    const d = cmd.data;
    if (cmd.cls === NetCtrl.MQ) {
      const n = d[0] | d[1] << 8;
      if (n < 1 || n > this.queuePairs) {
        device.reason = `${n} queue pairs asked, the port set up ${this.queuePairs}` +
          (n > this.queuePairs ? ` (open it with queuePairs: ${n})` : "");
        return NET_ERR;
      }
      try {
        this.#enablePairs(n);
      } catch (e) {
        device.reason = (e as Error).message;
        return NET_ERR;
      }
      return NET_OK;
    }
    let mac = this.mac, promiscuous = this.#promiscuous, allMulticast = this.#allMulticast;
    if (cmd.cls === NetCtrl.MAC) mac = d.slice(0, 6);
    else if (d[0] > 1) {
      device.reason = `on/off byte ${d[0]} is neither 0 nor 1`;
      return NET_ERR;
    } else if (cmd.command === NetCtrl.RX_PROMISC) promiscuous = d[0] === 1;
    else allMulticast = d[0] === 1;
    try {
      // vhost-net: the tap filters; vhost-user backends cannot, the modes are recorded.
      this.#transport.setReceiveFilter?.({ promiscuous, allMulticast, mac });
    } catch (e) {
      device.reason = (e as Error).message;
      return NET_ERR;
    }
    this.mac.set(mac);
    this.#promiscuous = promiscuous;
    this.#allMulticast = allMulticast;
    return NET_OK;
  }

  /** Enables the rings of pairs below `n` and disables the others, changing only what differs. */
  #enablePairs(n: number): void {
    for (let i = 0; i < this.queuePairs; i++) {
      const on = i < n;
      if (on === i < this.#activePairs) continue;
      if (!on) delete this.#active[i]; // bursts refuse the pair before its rings stop
      this.#transport.enableQueue(2 * i, on);
      this.#transport.enableQueue(2 * i + 1, on);
      if (on && this.#pairs[i] !== undefined) this.#active[i] = this.#pairs[i];
    }
    this.#activePairs = n;
  }

  /**
   * The link status the device reports (VIRTIO_NET_S_LINK_UP in virtio_net_config, §5.1.4),
   * read now (one GET_CONFIG round trip: not for the data path). True when VIRTIO_NET_F_STATUS
   * was not negotiated: the link is then assumed up (§5.1.4.2).
   *
   * @example
   * ```ts ignore
   * if (!port.configLinkUp()) console.log("the device reports link down");
   * ```
   */
  configLinkUp(): boolean {
    if (!hasFeature(this.features, "NET_F_STATUS")) return true;
    const raw = this.#transport.getConfig?.(NET_CONFIG_STATUS, 2) ?? null;
    if (raw === null) {
      throw new Error(
        `${this.#transport.name}: GET_CONFIG for the link status failed although ` +
          `VIRTIO_NET_F_STATUS was negotiated; see the backend's log`,
      );
    }
    return (raw[0] & NET_S_LINK_UP) !== 0;
  }

  /**
   * Counters of queue pair `queue`, read live (also while a Worker drives the pair).
   *
   * @example
   * ```ts ignore
   * for (let i = 0; i < port.queuePairs; i++) console.log(i, port.queueStats(i).rxPackets);
   * ```
   */
  queueStats(queue: number): VirtioNetStats {
    if (!(queue >= 0 && queue < this.queuePairs)) {
      throw new RangeError(`queue pair ${queue} does not exist (the port has ${this.queuePairs})`);
    }
    return new QueueStats(this.#counters, queue, 1);
  }

  /**
   * The handle a Worker turns into the data path of queue pair `queue` with
   * `QueuePair.attach(handle)`: plain data (post it to the Worker). Only for ports opened with
   * `detachQueues: true`; once per pair. Stop the Workers (their `close()`) before closing the
   * port: the port stops the rings.
   *
   * @example
   * ```ts ignore
   * const port = VirtioNet.open({ path, queuePairs: 2, detachQueues: true });
   * for (let i = 0; i < 2; i++) workers[i].postMessage(port.queueHandle(i));
   * ```
   */
  queueHandle(queue: number): QueueHandle {
    if (!this.#detached) {
      throw new Error(
        "queueHandle: open the port with detachQueues: true to drive pairs from Workers",
      );
    }
    if (!(queue >= 0 && queue < this.queuePairs) || !Number.isInteger(queue)) {
      throw new RangeError(`queue pair ${queue} does not exist (the port has ${this.queuePairs})`);
    }
    if (this.#closed) throw new Error(`queueHandle(${queue}): the port is closed`);
    if (this.#handed[queue]) throw new Error(`queueHandle(${queue}): already handed out`);
    this.#handed[queue] = true;
    const m = this.#memory, pool = this.pool, size = this.#rx[queue].size;
    const share = Math.floor(pool.count / this.queuePairs);
    return {
      index: queue,
      memFd: m.fd,
      memSize: m.size,
      memAddr: m.addr,
      hugepages: m.hugepages,
      packed: this.packed,
      queueSize: size,
      eventIdx: hasFeature(this.features, "RING_F_EVENT_IDX"),
      inOrder: hasFeature(this.features, "F_IN_ORDER"),
      mergeable: this.mergeable,
      txOffload: (this.features & NET_TX_OFFLOAD_FEATURES) !== 0n,
      rxRing: ringOffset(m, this.packed, size, this.#rx[queue].addresses),
      txRing: ringOffset(m, this.packed, size, this.#tx[queue].addresses),
      rxKickFd: this.#kickFds[2 * queue],
      txKickFd: this.#kickFds[2 * queue + 1],
      rxCallFd: this.#callFds[2 * queue],
      poolBase: pool.base,
      poolCount: pool.count,
      bufferSize: pool.bufferSize,
      firstBuffer: queue * share,
      buffers: share,
      statsOffset: this.#counters.counters.byteOffset,
      queuePairs: this.queuePairs,
    };
  }

  /**
   * `"up"` while the device side is there and reports its link up; `"down"` after a hang-up, a
   * device fault or close ({@linkcode connected} false), or while the device reports its link
   * down (VIRTIO_NET_S_LINK_UP clear, §5.1.4: the rings keep working, the device decides what
   * moves).
   */
  get link(): LinkState {
    return this.#down || this.#carrierDown ? "down" : "up";
  }

  /**
   * False once the device side is gone (hang-up, device fault) or the port is closed. A device
   * that reports its link down is still connected.
   */
  get connected(): boolean {
    return !this.#down;
  }

  /** Why the link is down ("" while up). */
  get downReason(): string {
    if (this.#down) return this.#downReason;
    return this.#carrierDown ? this.#carrierText(false) : "";
  }

  /**
   * True while a transmit queue has been full for {@linkcode VirtioNetOptions.stallMs} without
   * the device taking a frame: the device is connected but stopped consuming (not merely slow).
   */
  get stalled(): boolean {
    return this.#stalled;
  }

  /**
   * Checks the link now (one zero-timeout poll) instead of waiting for the next burst's check;
   * returns the link state. For callers that stop calling bursts for a while.
   */
  checkLink(): LinkState {
    if (!this.#down) {
      this.#lastCheck = performance.now();
      this.#pollTransport();
    }
    return this.link;
  }

  /**
   * Every {@linkcode LINK_CHECK_BURSTS} bursts: a clock read; a poll every LINK_CHECK_MS.
   * Returns true when the link is down now.
   */
  #checkLink(): boolean {
    this.#bursts = 0;
    const now = performance.now();
    if (now - this.#lastCheck < LINK_CHECK_MS) return false;
    this.#lastCheck = now;
    this.#checkStall(now);
    this.#pollTransport();
    return this.#down;
  }

  #pollTransport(): void {
    let reason: string | null;
    try {
      reason = this.#transport.checkConnection();
    } catch (e) {
      reason = `checking the connection failed: ${(e as Error).message}`;
    }
    if (reason !== null) this.#linkDown(reason);
    else if (this.#transport.configChanged?.()) this.#readCarrier(true);
  }

  /**
   * Reads the link status from the device config (with VIRTIO_NET_F_STATUS) and, when it
   * changed and `notify`, dispatches `linkchange`. A failed read means a broken backend.
   */
  #readCarrier(notify: boolean): void {
    if (!hasFeature(this.features, "NET_F_STATUS")) return;
    let up: boolean;
    try {
      // A backend that answers GET_CONFIG empty (DPDK's vhost library) cannot report it: up.
      const raw = this.#transport.getConfig?.(NET_CONFIG_STATUS, 2) ?? null;
      up = raw === null || (raw[0] & NET_S_LINK_UP) !== 0;
    } catch (e) {
      if (!notify) throw e;
      this.#linkDown(`reading the link status after a config change: ${(e as Error).message}`);
      return;
    }
    if (up !== this.#carrierDown) return; // unchanged
    this.#carrierDown = !up;
    if (notify && !this.#down) {
      this.dispatchEvent(
        new CustomEvent<LinkChange>("linkchange", {
          detail: { link: up ? "up" : "down", reason: this.#carrierText(up) },
        }),
      );
    }
  }

  #carrierText(up: boolean): string {
    return `${this.#transport.name}: the device reports its link ${up ? "up" : "down"} ` +
      `(VIRTIO_NET_S_LINK_UP ${up ? "set" : "clear"} in virtio_net_config, virtio 1.2 §5.1.4)`;
  }

  /** A transmit queue full with no frame taken for stallMs: stalled. */
  #checkStall(now: number): void {
    const sent = this.stats.txPackets;
    let full = false;
    // Indexed, not for-of: an iterator that TurboFan does not optimize away is an allocation.
    for (let i = 0; i < this.#tx.length; i++) if (this.#tx[i].numFree === 0) full = true;
    if (sent !== this.#lastTxPackets || !full) {
      this.#lastTxPackets = sent;
      this.#stallSince = -1;
      this.#stalled = false;
      return;
    }
    if (this.#stallSince < 0) this.#stallSince = now;
    else if (!this.#stalled && now - this.#stallSince >= this.#stallMs) {
      this.#stalled = true;
      this.dispatchEvent(
        new CustomEvent<LinkChange>("stall", {
          detail: {
            link: "up",
            reason: `the device took no frame for ${this.#stallMs} ms with the transmit ring ` +
              "full: it stopped consuming",
          },
        }),
      );
    }
  }

  /** The peer is gone: every buffer back to the pool, bursts return 0 from now on. */
  #linkDown(reason: string): void {
    if (this.#down) return;
    this.#down = true;
    this.#downReason = reason;
    this.#reclaimAll();
    this.#transport.close();
    this.dispatchEvent(
      new CustomEvent<LinkChange>("linkchange", { detail: { link: "down", reason } }),
    );
  }

  /**
   * Buffers in every ring of the pairs this thread drives back to the pool (the device is gone
   * or broken). Detached pairs' buffers belong to their threads' pools.
   */
  #reclaimAll(): void {
    for (const pair of this.#pairs) pair.takeInFlight();
  }

  /**
   * The device broke a ring rule on `pair` (which already gave back the buffers the failing
   * call had taken, `VirtqueueError.dequeued`): every buffer in flight returns to the pool, the
   * device is told FAILED and its rings are stopped. Returns the error to throw.
   */
  #fail(pair: QueuePair, e: unknown): Error {
    if (!(e instanceof VirtqueueError)) return e as Error;
    const error = new DeviceFailedError(pair.faultQueue, e);
    this.#failure = error;
    const { ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK, FAILED } = DeviceStatus;
    try {
      // §2.1.2: the driver sets FAILED when it gave up on the device.
      this.#transport.setStatus(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK | FAILED);
      // Stop the rings before their buffers are reused (GET_VRING_BASE stops a vhost ring).
      for (let index = 0; index < 2 * this.queuePairs; index++) this.#transport.stopQueue(index);
    } catch { /* a broken device may not answer; the buffers come back regardless */ }
    this.#linkDown(error.message);
    return error;
  }

  /** A burst on a port whose link is down returns 0; on a closed port it throws. */
  #deadBurst(): number {
    if (this.#closed) {
      throw new TypeError("VirtioNet: the port is closed; open a new one");
    }
    if ((this.#listenFd >= 0 || this.#retry !== null) && ++this.#bursts >= LINK_CHECK_BURSTS) {
      this.#bursts = 0;
      const now = performance.now();
      if (now >= this.#nextAttempt) this.#tryReattach(now);
    }
    return 0;
  }

  /** The device fault that took the port down, or null. */
  get failure(): DeviceFailedError | null {
    return this.#failure;
  }

  /**
   * Waits (polling, at most `timeoutMs`) until the device has used every frame sent on `queue`,
   * freeing their buffers. Returns the number still in flight: 0 means all were taken.
   */
  txDrain(timeoutMs = 1000, queue = 0): number {
    if (this.#down) return 0; // the device is gone: its buffers are back in the pool
    const pair = this.#pairs[queue] ?? this.#noPair(queue);
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (this.#down) return 0;
      try {
        pair.reclaimTx();
      } catch (e) {
        throw this.#fail(pair, e);
      }
      const inFlight = pair.txInFlight;
      if (inFlight === 0) return 0;
      const now = performance.now();
      if (now > deadline) return inFlight;
      if (now - this.#lastCheck >= LINK_CHECK_MS) this.checkLink();
    }
  }

  /**
   * Stops every queue (vhost GET_VRING_BASE), closes the backend, returns every buffer to the
   * pool and unmaps the memory (`pool.bytes` throws from then on; views kept from before have
   * length 0). Never throws because of the peer: returns what it could not tell the peer (empty
   * when everything went through). Idempotent.
   *
   * @example
   * ```ts ignore
   * const untold = port.close();
   * for (const line of untold) console.error(`close: ${line}`);
   * ```
   */
  close(): string[] {
    const untold: string[] = [];
    if (this.#closed) return untold;
    if (!this.#down) {
      const reason = this.#transport.checkConnection();
      if (reason !== null) this.#linkDown(reason);
    }
    if (!this.#down) {
      try {
        for (let index = 0; index < 2 * this.queuePairs; index++) {
          try {
            this.#transport.stopQueue(index);
          } catch (e) {
            throw new Error(`vring ${index} not stopped: ${(e as Error).message}`);
          }
        }
        // Then reset the device (status 0, virtio 1.2 §2.1): the backend forgets the rings.
        try {
          this.#transport.setStatus(0);
        } catch (e) {
          throw new Error(`reset (status 0) not sent: ${(e as Error).message}`);
        }
      } catch (e) {
        untold.push((e as Error).message); // the connection failed: nothing more can be told
      }
    } else {
      untold.push(`rings not stopped over ${this.#transport.name}: ${this.#downReason}`);
    }
    this.#closed = true;
    this.#down = true;
    if (this.#downReason === "") this.#downReason = "closed";
    this.#reclaimAll();
    for (const pair of this.#pairs) pair.close(); // ends a pending readable()
    this.#transport.close();
    if (this.#listenFd >= 0) stopListening(this.#listenFd, this.#path!);
    this.#listenFd = -1;
    for (const fd of [...this.#kickFds, ...this.#callFds]) closeQuietly(fd);
    // Counters stay readable: the views switch to a copy before the memory goes.
    this.#counters.counters = this.#counters.counters.slice();
    this.#memory.close();
    return untold;
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Parses `aa:bb:cc:dd:ee:ff`; without an argument returns a random locally administered unicast
 * address.
 *
 * @example
 * ```ts
 * import { parseMac } from "./virtio_net.ts";
 * console.assert(parseMac("02:00:00:00:00:01")[5] === 1);
 * ```
 */
export function parseMac(text?: string): Uint8Array {
  if (text === undefined) {
    const mac = crypto.getRandomValues(new Uint8Array(6));
    mac[0] = (mac[0] & 0xfc) | 0x02; // locally administered, unicast
    return mac;
  }
  const parts = text.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new TypeError(`bad MAC address "${text}": expected six hex pairs like 02:00:00:00:00:01`);
  }
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}

/** Waits up to `timeoutMs` for a backend to connect to `listenFd`, then negotiates with it. */
function acceptBackend(
  listenFd: number,
  path: string,
  timeoutMs: number,
  options: { timeoutMs?: number; queuePairs: number },
): VhostUserFrontend {
  if ((pollFd(listenFd, POLLIN, timeoutMs) & POLLIN) === 0) {
    throw new Error(
      `server mode: no vhost-user backend connected to ${path} within ${timeoutMs} ms; start ` +
        "it in client mode (DPDK: --vdev net_vhost0,iface=PATH,client=1)",
    );
  }
  return VhostUserFrontend.accepted(unixAccept(listenFd), path, options);
}

/** Closes the listening socket and removes its file. */
function stopListening(listenFd: number, path: string): void {
  closeQuietly(listenFd);
  try {
    Deno.removeSync(path);
  } catch { /* already gone */ }
}
