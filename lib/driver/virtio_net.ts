/**
 * The virtio-net driver (virtio 1.2 §5.1) running in this process: it owns the memory, the rings
 * and the buffers, and hands the device side to a {@linkcode VirtioTransport}.
 *
 * ```
 *   txBurst(bufs) ─► transmitq 2i+1 ─► transport ─► device (DPDK vhost, TS device)
 *   rxBurst(bufs) ◄─ receiveq  2i   ◄─┘
 * ```
 *
 * @module
 */

import { closeQuietly } from "../../ffi/fd.ts";
import { eventfd } from "../../ffi/eventfd.ts";
import type { VirtioTransport } from "../virtio/transport.ts";
import { BufferPool } from "./buffer_pool.ts";
import { describeFeatures, featureMask, type FeatureName, hasFeature } from "../virtio/features.ts";
import { SharedMemory } from "./shared_memory.ts";
import { createDriverQueue, ringBytes, ringOffset } from "./driver_queue.ts";
import {
  type CounterSource,
  QUEUE_STATS_BYTES,
  type QueueHandle,
  QueuePair,
  QueueStats,
} from "./queue_pair.ts";
import { DeviceStatus, statusName } from "../virtio/status.ts";
import type { DriverQueue } from "../virtio/virtqueue.ts";
import { VhostUserFrontend } from "../vhost_user/frontend.ts";
import {
  NET_CONFIG_READ_SIZE,
  NET_CONFIG_STATUS,
  NET_S_LINK_UP,
  parseNetConfig,
} from "../virtio/net_config.ts";

/** Options of {@linkcode VirtioNet.open}. */
export interface VirtioNetOptions {
  /** vhost-user socket of the backend (DPDK `net_vhost`, the TS device). */
  path?: string;
  /** An already-connected transport, instead of `path`. */
  transport?: VirtioTransport;
  /** Packed rings (virtio 1.1, default) or split rings (`false`). */
  packed?: boolean;
  /** Descriptors per queue (default 256; split rings need a power of two). */
  queueSize?: number;
  /**
   * Queue pairs to use (default 1). More than one needs VIRTIO_NET_F_MQ (§5.1.6.5.5), which is
   * then negotiated, and a backend offering that many (vhost-user GET_QUEUE_NUM).
   */
  queuePairs?: number;
  /**
   * Each queue pair is driven from its own thread: open() gives pair i its own slice of the
   * buffers (`buffers / queuePairs` each) and leaves its receive ring empty for the thread that
   * calls `QueuePair.attach(port.queueHandle(i))` to fill. The port's `pool`, `txBurst` and
   * `rxBurst` are then unused; `stats` and `queueStats(i)` still read every pair's counters.
   * Default false.
   */
  detachQueues?: boolean;
  /** This port's MAC address, `aa:bb:cc:dd:ee:ff` (default: a random locally administered one). */
  mac?: string;
  /** Hugepage policy for the shared memory (see {@linkcode SharedMemory.create}). */
  hugepages?: boolean | "auto";
  /** A hugetlbfs mount to take hugepages from instead of a hugetlb memfd. */
  hugetlbfs?: string;
  /** Packet buffers in the pool (default: 4 × queueSize × queuePairs). */
  buffers?: number;
  /** Bytes per buffer, virtio-net header included (default 2048). */
  bufferSize?: number;
  /** Negotiate VIRTIO_RING_F_EVENT_IDX when offered (default false). */
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
  /** Timeout for each backend reply, ms (default 5000). */
  timeoutMs?: number;
  /** Receives notices such as the hugepage fallback (default `console.error`). */
  notice?: (message: string) => void;
}

/** Counters of a {@linkcode VirtioNet} port, updated in place. */
export interface VirtioNetStats {
  /** Frames handed to the device. */
  txPackets: number;
  /** Frame bytes handed to the device (headers excluded). */
  txBytes: number;
  /** Frames received. */
  rxPackets: number;
  /** Frame bytes received (headers excluded). */
  rxBytes: number;
  /** Notifications (kicks) sent to the device. */
  kicks: number;
  /** Times the receive ring could not be refilled because the pool was empty. */
  rxNoBuffers: number;
  /** Frames `rxBurst` dropped because they spanned several buffers (take them with rxFrames). */
  rxDropped: number;
  /** Times `readable()` slept on a call eventfd and was woken. */
  wakeups: number;
}

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
export class VirtioNet {
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
  /** The transport to the device (vhost-user), for diagnostics. */
  readonly transport: VirtioTransport;

  readonly #memory: SharedMemory;
  readonly #rx: DriverQueue[];
  readonly #tx: DriverQueue[];
  readonly #kickFds: number[];
  readonly #callFds: number[];
  /** The data path of each pair driven from this thread; undefined for detached pairs. */
  readonly #pairs: (QueuePair | undefined)[] = [];
  readonly #counters: CounterSource;
  readonly #detached: boolean;
  readonly #handed: boolean[] = [];
  #closed = false;

  private constructor(
    transport: VirtioTransport,
    memory: SharedMemory,
    pool: BufferPool,
    features: bigint,
    mac: Uint8Array,
    pairs: number,
    detached: boolean,
    mtu: number | null,
  ) {
    this.mtu = mtu;
    this.transport = transport;
    this.#memory = memory;
    this.pool = pool;
    this.features = features;
    this.mac = mac;
    this.packed = hasFeature(features, "F_RING_PACKED");
    this.mergeable = hasFeature(features, "NET_F_MRG_RXBUF");
    this.queuePairs = pairs;
    this.#rx = [];
    this.#tx = [];
    this.#kickFds = [];
    this.#callFds = [];
    this.#detached = detached;
    const at = memory.alloc(QUEUE_STATS_BYTES * pairs, 64);
    this.#counters = {
      counters: new Float64Array(memory.buffer, at, (QUEUE_STATS_BYTES / 8) * pairs),
    };
    this.stats = new QueueStats(this.#counters, 0, pairs);
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
   */
  static open(options: VirtioNetOptions): VirtioNet {
    const queueSize = options.queueSize ?? 256;
    const pairs = options.queuePairs ?? 1;
    const packedWanted = options.packed ?? true;
    if (!Number.isInteger(queueSize) || queueSize < 1 || queueSize > 32768) {
      throw new RangeError(`queueSize ${queueSize} must be 1..32768`);
    }
    if (!packedWanted && (queueSize & (queueSize - 1)) !== 0) {
      throw new RangeError(`queueSize ${queueSize}: split rings need a power of two (§2.7)`);
    }
    let transport = options.transport;
    if (transport === undefined) {
      if (options.path === undefined) throw new TypeError("VirtioNet.open: give path or transport");
      transport = VhostUserFrontend.connect(options.path, {
        timeoutMs: options.timeoutMs,
        queuePairs: pairs,
      });
    }
    try {
      return VirtioNet.#bringUp(transport, options, queueSize, pairs, packedWanted);
    } catch (e) {
      try {
        transport.setStatus(DeviceStatus.FAILED);
      } catch { /* the connection may be what failed */ }
      transport.close();
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
    let wanted = featureMask(...required);
    if (pairs > 1) {
      // §5.1.6.5.5: more than one queue pair only with VIRTIO_NET_F_MQ negotiated. As DPDK's
      // virtio-user, no control queue: over vhost-user the frontend picks the active pairs with
      // SET_VRING_ENABLE (vhost-user.rst "Multiple queue support"), not VIRTIO_NET_CTRL_MQ.
      if (!hasFeature(offered, "NET_F_MQ")) {
        throw new Error(
          `${transport.name} does not offer NET_F_MQ (bit 22): ${pairs} queue pairs need ` +
            `VIRTIO_NET_F_MQ negotiated (virtio 1.2 §5.1.6.5.5); start the backend with ` +
            `queues=${pairs} or use queuePairs: 1`,
        );
      }
      wanted |= featureMask("NET_F_MQ");
    }
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
    const bufferSize = options.bufferSize ?? 2048;
    const buffers = options.buffers ?? 4 * queueSize * pairs;
    const perRing = ringBytes(packedWanted, queueSize);
    const stats = QUEUE_STATS_BYTES * pairs + 64;
    const memory = SharedMemory.create(
      2 * pairs * (perRing + 4096) + buffers * bufferSize + 4096 + stats,
      {
        hugepages: options.hugepages,
        hugetlbfs: options.hugetlbfs,
        notice: options.notice,
      },
    );
    try {
      const detached = options.detachQueues ?? false;
      // Detached pairs own slices of the buffers (queueHandle); the port's pool keeps none.
      const pool = new BufferPool(memory, buffers, bufferSize, detached ? { owned: 0 } : {});
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
        pairs,
        detached,
        mtu,
      );
      port.#setUpQueues(
        queueSize,
        hasFeature(wanted, "RING_F_EVENT_IDX"),
        hasFeature(wanted, "F_IN_ORDER"),
      );
      transport.setStatus(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
      return port;
    } catch (e) {
      memory.close();
      throw e;
    }
  }

  #setUpQueues(queueSize: number, eventIdx: boolean, inOrder: boolean): void {
    const pairs = this.queuePairs;
    this.transport.setMemTable([this.#memory]);
    for (let index = 0; index < 2 * pairs; index++) {
      const rx = index % 2 === 0;
      const name = `${rx ? "rx" : "tx"}${index >> 1}`;
      const queue = createDriverQueue(
        this.#memory,
        this.packed,
        queueSize,
        name,
        this.pool,
        eventIdx,
        inOrder,
      );
      const kickFd = eventfd();
      this.#kickFds.push(kickFd);
      const callFd = eventfd();
      this.#callFds.push(callFd);
      (rx ? this.#rx : this.#tx).push(queue);
      // Poll mode: ask the device not to interrupt us (§2.7.7 / §2.8.10).
      queue.setInterrupts(false);
      // The device starts reading where the ring starts, not past the buffers the refill below
      // posts (vhost SET_VRING_BASE = the device's next avail position).
      const base = queue.base;
      if (!rx && !this.#detached) {
        const i = index >> 1;
        const pair = new QueuePair({
          index: i,
          rx: this.#rx[i],
          tx: queue,
          pool: this.pool,
          rxKickFd: this.#kickFds[index - 1],
          txKickFd: kickFd,
          rxCallFd: this.#callFds[index - 1],
          source: this.#counters,
          mergeable: this.mergeable,
        });
        this.#pairs.push(pair);
      }
      this.transport.setupQueue({
        index,
        size: queueSize,
        addresses: queue.addresses,
        base,
        kickFd,
        callFd,
      });
      // §5.1.5: fill receiveq before DRIVER_OK (the ring was set up at the base read above).
      if (!rx && !this.#detached) this.#pairs[index >> 1]!.refill(false);
    }
    for (let index = 0; index < 2 * pairs; index++) this.transport.enableQueue(index, true);
  }

  /**
   * Sends `n` frames on `queue`: buffer `bufs[i]` holding `lens[i]` frame bytes at
   * `pool.dataOffset(bufs[i])`. Returns how many were queued; the port owns those buffers now
   * and frees them when the device is done. The rest stay the caller's.
   * One publish and at most one kick per call; no allocation.
   */
  txBurst(bufs: Uint32Array, lens: Uint32Array, n: number, queue = 0): number {
    return this.#pair(queue).txBurst(bufs, lens, n);
  }

  /**
   * Receives up to `max` frames from `queue`: their buffer numbers into `bufs`, frame lengths
   * into `lens`. The caller owns those buffers (free them to `pool`, or send them on). Refills
   * the receive ring in the same call; at most one kick.
   */
  rxBurst(bufs: Uint32Array, lens: Uint32Array, max: number, queue = 0): number {
    return this.#pair(queue).rxBurst(bufs, lens, max);
  }

  /**
   * Receives whole frames from `queue`, also those spanning several receive buffers
   * (VIRTIO_NET_F_MRG_RXBUF): returns the frame count; frame `f` is the next `segs[f]` entries
   * of `bufs` / `lens` (frame bytes in each buffer), at most `maxBufs` entries in all. A frame
   * starts at `pool.dataOffset(b)` in its first buffer and at `pool.headerOffset(b)` in the
   * others. The caller owns every buffer returned.
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
    return this.#pair(queue).rxFrames(bufs, lens, segs, maxBufs);
  }

  /**
   * Resolves with true once `rxBurst(…, queue)` will find a frame (false after `timeoutMs`):
   * at once when one waits, else after arming used-buffer notifications and sleeping on the
   * call eventfd off this thread's event loop (see `QueuePair.readable`). An idle port then
   * costs no CPU, as DPDK's rx interrupt mode; a busy one never arms.
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
  readable(timeoutMs = -1, queue = 0): Promise<boolean> {
    return this.#pair(queue).readable(timeoutMs);
  }

  #pair(queue: number): QueuePair {
    const pair = this.#pairs[queue];
    if (pair !== undefined) return pair;
    throw new RangeError(
      this.#detached
        ? `queue pair ${queue} is detached: drive it through QueuePair.attach(queueHandle(${queue}))`
        : `queue pair ${queue} does not exist (the port has ${this.queuePairs})`,
    );
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
    const raw = this.transport.getConfig?.(NET_CONFIG_STATUS, 2) ?? null;
    if (raw === null) {
      throw new Error(
        `${this.transport.name}: GET_CONFIG for the link status failed although ` +
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
   * Waits (polling, at most `timeoutMs`) until the device has used every frame sent on `queue`,
   * freeing their buffers. Returns the number still in flight: 0 means all were taken.
   */
  txDrain(timeoutMs = 1000, queue = 0): number {
    return this.#pair(queue).txDrain(timeoutMs);
  }

  /**
   * Stops every queue (vhost GET_VRING_BASE), closes the backend and frees the memory.
   * Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const pair of this.#pairs) pair?.close(); // ends a pending readable()
    try {
      for (let index = 0; index < 2 * this.queuePairs; index++) this.transport.stopQueue(index);
    } finally {
      this.transport.close();
      for (const fd of [...this.#kickFds, ...this.#callFds]) closeQuietly(fd);
      // Counters stay readable: the views switch to a copy before the memory goes.
      this.#counters.counters = this.#counters.counters.slice();
      this.#memory.close();
    }
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
