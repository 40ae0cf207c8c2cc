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
import { eventfd, eventfdSignal } from "../../ffi/eventfd.ts";
import type { VirtioTransport } from "../virtio/transport.ts";
import { BufferPool } from "./buffer_pool.ts";
import { describeFeatures, featureMask, type FeatureName, hasFeature } from "../virtio/features.ts";
import { SharedMemory } from "./shared_memory.ts";
import { NET_HDR_SIZE } from "../virtio/net_hdr.ts";
import { createDriverQueue, ringBytes } from "./driver_queue.ts";
import { DeviceStatus, statusName } from "../virtio/status.ts";
import { type DriverQueue, VirtqueueError } from "../virtio/virtqueue.ts";
import { VhostUserFrontend } from "../vhost_user/frontend.ts";

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
  /** Queue pairs to use (default 1). */
  queuePairs?: number;
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
}

/** The virtio features this driver can use, beyond the required F_VERSION_1. */
const OPTIONAL: FeatureName[] = ["F_RING_PACKED", "RING_F_EVENT_IDX", "F_IN_ORDER"];

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
  /** Counters, updated in place. */
  readonly stats: VirtioNetStats = {
    txPackets: 0,
    txBytes: 0,
    rxPackets: 0,
    rxBytes: 0,
    kicks: 0,
    rxNoBuffers: 0,
  };
  /** This port's MAC address. */
  readonly mac: Uint8Array;
  /** Features agreed with the device. */
  readonly features: bigint;
  /** True when the queues are packed rings. */
  readonly packed: boolean;
  /** Queue pairs in use. */
  readonly queuePairs: number;
  /** The transport to the device (vhost-user), for diagnostics. */
  readonly transport: VirtioTransport;

  readonly #memory: SharedMemory;
  readonly #rx: DriverQueue[];
  readonly #tx: DriverQueue[];
  readonly #kickFds: number[];
  readonly #callFds: number[];
  readonly #scratchBufs: Uint32Array;
  readonly #scratchLens: Uint32Array;
  readonly #refillLens: Uint32Array;
  readonly #refillThreshold: number;
  #closed = false;

  private constructor(
    transport: VirtioTransport,
    memory: SharedMemory,
    pool: BufferPool,
    features: bigint,
    mac: Uint8Array,
    queueSize: number,
    pairs: number,
  ) {
    this.transport = transport;
    this.#memory = memory;
    this.pool = pool;
    this.features = features;
    this.mac = mac;
    this.packed = hasFeature(features, "F_RING_PACKED");
    this.queuePairs = pairs;
    this.#rx = [];
    this.#tx = [];
    this.#kickFds = [];
    this.#callFds = [];
    this.#scratchBufs = new Uint32Array(queueSize);
    this.#scratchLens = new Uint32Array(queueSize);
    this.#refillLens = new Uint32Array(queueSize).fill(pool.bufferSize);
    this.#refillThreshold = Math.max(1, Math.min(32, queueSize >> 2));
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
    for (const name of OPTIONAL) {
      if (name === "RING_F_EVENT_IDX" && !options.eventIdx) continue;
      if (name === "F_RING_PACKED" && !packedWanted) continue;
      // In-order completion (§2.8.20) is implemented for packed rings.
      if (name === "F_IN_ORDER" && (!packedWanted || options.inOrder === false)) continue;
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
    const memory = SharedMemory.create(2 * pairs * (perRing + 4096) + buffers * bufferSize + 4096, {
      hugepages: options.hugepages,
      hugetlbfs: options.hugetlbfs,
      notice: options.notice,
    });
    try {
      const pool = new BufferPool(memory, buffers, bufferSize);
      const port = new VirtioNet(
        transport,
        memory,
        pool,
        wanted,
        parseMac(options.mac),
        queueSize,
        pairs,
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
      if (rx) this.#refill(index >> 1, false); // §5.1.5: fill receiveq before DRIVER_OK
      this.transport.setupQueue({
        index,
        size: queueSize,
        addresses: queue.addresses,
        base,
        kickFd,
        callFd,
      });
    }
    for (let index = 0; index < 2 * pairs; index++) this.transport.enableQueue(index, true);
  }

  /**
   * Sends `n` frames: buffer `bufs[i]` holding `lens[i]` frame bytes at
   * `pool.dataOffset(bufs[i])`. Returns how many were queued; the port owns those buffers now
   * and frees them when the device is done. The rest stay the caller's.
   * One publish and at most one kick per call; no allocation. When the device broke a ring rule
   * it throws {@linkcode VirtqueueError}, after freeing the buffers it had back.
   */
  txBurst(bufs: Uint32Array, lens: Uint32Array, n: number, queue = 0): number {
    const q = this.#tx[queue];
    const pool = this.pool;
    // Reclaim what the device finished with (§2.7.14 / §2.8.22 used buffers), but only when the
    // ring runs low (like DPDK's tx_free_thresh): reading used entries pulls cache lines the
    // device is writing, so doing it in large batches keeps both cores out of each other's way.
    if (q.numFree < n || q.numFree < this.#refillThreshold) this.#reclaim(q);
    const numFree = q.numFree;
    const count = n < numFree ? n : numFree;
    if (count === 0) return 0;
    const lensWithHdr = this.#scratchLens;
    const capacity = pool.frameCapacity;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const len = lens[i];
      if (len > capacity) throw new RangeError(`frame ${i}: ${len} bytes exceed ${capacity}`);
      pool.clearHeader(bufs[i]);
      lensWithHdr[i] = len + NET_HDR_SIZE;
      bytes += len;
    }
    const sent = q.enqueue(bufs, lensWithHdr, 0, count, false);
    if (q.needsNotify()) {
      eventfdSignal(this.#kickFds[2 * queue + 1]);
      this.stats.kicks++;
    }
    this.stats.txPackets += sent;
    this.stats.txBytes += bytes;
    return sent;
  }

  /**
   * Receives up to `max` frames: their buffer numbers into `bufs`, frame lengths into `lens`.
   * The caller owns those buffers (free them to `pool`, or send them on). Refills the receive
   * ring in the same call; at most one kick. When the device broke a ring rule it throws
   * {@linkcode VirtqueueError}, after freeing to `pool` the frames taken before the bad entry.
   */
  rxBurst(bufs: Uint32Array, lens: Uint32Array, max: number, queue = 0): number {
    const q = this.#rx[queue];
    let got: number;
    try {
      got = q.dequeue(bufs, lens, max);
    } catch (e) {
      if (e instanceof VirtqueueError) this.pool.free(bufs, 0, e.dequeued);
      throw e;
    }
    let bytes = 0;
    for (let i = 0; i < got; i++) {
      // The device writes the header then the frame (§5.1.6.4); the ring checked len ≤ posted.
      const len = lens[i] - NET_HDR_SIZE;
      lens[i] = len < 0 ? 0 : len;
      bytes += lens[i];
    }
    this.stats.rxPackets += got;
    this.stats.rxBytes += bytes;
    // Refill in batches (like DPDK's rx_free_thresh): one publish per batch, not per frame.
    if (q.numFree >= this.#refillThreshold) this.#refill(queue, true);
    return got;
  }

  /**
   * Frees to the pool every buffer transmit queue `q` has back from the device. When the device
   * broke a ring rule, frees those taken before the bad entry, then throws its
   * {@linkcode VirtqueueError}.
   */
  #reclaim(q: DriverQueue): void {
    const bufs = this.#scratchBufs;
    let done: number;
    try {
      done = q.dequeue(bufs, this.#scratchLens, q.size);
    } catch (e) {
      if (e instanceof VirtqueueError) this.pool.free(bufs, 0, e.dequeued);
      throw e;
    }
    if (done > 0) this.pool.free(bufs, 0, done);
  }

  #refill(queue: number, kick: boolean): void {
    const q = this.#rx[queue];
    const want = q.numFree;
    if (want === 0) return;
    const k = this.pool.alloc(this.#scratchBufs, 0, want);
    if (k < want) this.stats.rxNoBuffers++;
    if (k === 0) return;
    q.enqueue(this.#scratchBufs, this.#refillLens, 0, k, true);
    if (kick && q.needsNotify()) {
      eventfdSignal(this.#kickFds[2 * queue]);
      this.stats.kicks++;
    }
  }

  /**
   * Waits (polling, at most `timeoutMs`) until the device has used every frame sent on `queue`,
   * freeing their buffers. Returns the number still in flight: 0 means all were taken.
   */
  txDrain(timeoutMs = 1000, queue = 0): number {
    const q = this.#tx[queue];
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      this.#reclaim(q);
      const inFlight = q.size - q.numFree;
      if (inFlight === 0 || performance.now() > deadline) return inFlight;
    }
  }

  /**
   * Stops every queue (vhost GET_VRING_BASE), closes the backend and frees the memory.
   * Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      for (let index = 0; index < 2 * this.queuePairs; index++) this.transport.stopQueue(index);
    } finally {
      this.transport.close();
      for (const fd of [...this.#kickFds, ...this.#callFds]) closeQuietly(fd);
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
