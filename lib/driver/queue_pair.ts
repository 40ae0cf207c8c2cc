/**
 * One virtio-net queue pair (virtio 1.2 §5.1.2: receiveq i = virtqueue 2i, transmitq i =
 * virtqueue 2i+1) and its data path: the unit a thread owns under VIRTIO_NET_F_MQ (§5.1.6.5.5).
 *
 * ```
 *   main thread: VirtioNet.open({ queuePairs: N, detachQueues: true })
 *                    │ port.queueHandle(i): plain data (memfd, offsets, eventfds, buffer share)
 *                    ▼ postMessage
 *   Worker i:    QueuePair.attach(handle) ── txBurst ─► transmitq 2i+1 ─► device
 *                                         ◄─ rxBurst ── receiveq  2i   ◄─┘
 * ```
 *
 * A Worker maps the same memfd again (its own view of the same pages; descriptors keep the
 * creator's addresses, which the memory table gave the device), takes its own copies of the
 * kick eventfds and a disjoint slice of the buffers, so no two threads ever write the same ring,
 * free stack or counter: the data path has no locks.
 *
 * Counters live in the shared memory (one 128-byte block of two cache lines per pair, written
 * only by the pair's thread), so the main thread reads every pair's and the sum without asking
 * the Workers.
 *
 * Buffer ownership is checked as on the port (`pool.submit` / `deliver` / `reclaim` /
 * `takeForPort`), and a device that breaks a ring rule gets its buffers taken back: a
 * {@linkcode VirtqueueError} leaves the pair with every buffer the failing call had taken
 * returned to the pool (`dequeued` handled here); the port (VirtioNet) then sets FAILED and takes
 * the rest back with {@linkcode QueuePair.takeInFlight}.
 *
 * @module
 */

import { closeQuietly, dupFd } from "../../ffi/fd.ts";
import { eventfd, eventfdDrain, eventfdSignal } from "../../ffi/eventfd.ts";
import { pollInAsync } from "../../ffi/poll.ts";
import { NET_HDR_SIZE, sanitizeTxNetHdr } from "../virtio/net_hdr.ts";
import { type DriverQueue, VirtqueueError } from "../virtio/virtqueue.ts";
import { BufferPool } from "./buffer_pool.ts";
import { driverQueueAt } from "./driver_queue.ts";
import { MergeableReceiver } from "./mergeable.ts";
import { SharedMemory } from "./shared_memory.ts";

/** Slots of a pair's counter block (Float64Array; 16 slots = two 64-byte cache lines). */
const TX_PACKETS = 0, TX_BYTES = 1, RX_PACKETS = 2, RX_BYTES = 3, KICKS = 4, RX_NO_BUFFERS = 5;
const RX_DROPPED = 6, WAKEUPS = 7, TX_COMPLETED = 8;

/** Bytes of one pair's counter block in the shared memory (aligned to a cache line). */
export const QUEUE_STATS_BYTES = 128;
const SLOTS = QUEUE_STATS_BYTES / 8;

/**
 * Where {@linkcode QueueStats} views read: the counter blocks in shared memory, replaced by a
 * copy when the memory is unmapped (so counters stay readable after close).
 */
export interface CounterSource {
  /** Every pair's counter block, 16 slots each. */
  counters: Float64Array;
}

/**
 * Counters of one queue pair, or the sum over several: a view over counter blocks in shared
 * memory, read on each access. Each block is written by one thread only; another thread reads a
 * value at most one burst old (aligned 8-byte stores are not torn on x86-64).
 *
 * @example
 * ```ts ignore
 * const q1 = port.queueStats(1);
 * console.log(q1.txPackets, port.stats.txPackets); // pair 1, all pairs
 * ```
 */
export class QueueStats {
  readonly #source: CounterSource;
  readonly #first: number;
  readonly #count: number;

  /** A view over blocks `first .. first + count` of `source.counters`. */
  constructor(source: CounterSource, first: number, count: number) {
    this.#source = source;
    this.#first = first;
    this.#count = count;
  }

  #sum(slot: number): number {
    const c = this.#source.counters;
    let s = 0;
    for (let i = this.#first; i < this.#first + this.#count; i++) s += c[i * SLOTS + slot];
    return s;
  }

  /** Frames handed to the device. */
  get txPackets(): number {
    return this.#sum(TX_PACKETS);
  }
  /** Frame bytes handed to the device (headers excluded). */
  get txBytes(): number {
    return this.#sum(TX_BYTES);
  }
  /** Frames received. */
  get rxPackets(): number {
    return this.#sum(RX_PACKETS);
  }
  /** Frame bytes received (headers excluded). */
  get rxBytes(): number {
    return this.#sum(RX_BYTES);
  }
  /** Frames the device returned as used on the transmit queue (it took them). */
  get txCompleted(): number {
    return this.#sum(TX_COMPLETED);
  }
  /** Notifications (kicks) sent to the device. */
  get kicks(): number {
    return this.#sum(KICKS);
  }
  /** Times a receive ring could not be refilled because the pool was empty. */
  get rxNoBuffers(): number {
    return this.#sum(RX_NO_BUFFERS);
  }
  /** Frames `rxBurst` dropped because they spanned several buffers (`rxFrames` takes them). */
  get rxDropped(): number {
    return this.#sum(RX_DROPPED);
  }
  /** Times `readable()` slept on the call eventfd and was woken (0 while polling finds work). */
  get wakeups(): number {
    return this.#sum(WAKEUPS);
  }

  /** The counters as a plain object (for JSON and `postMessage`). */
  toJSON(): Record<string, number> {
    return {
      txPackets: this.txPackets,
      txBytes: this.txBytes,
      rxPackets: this.rxPackets,
      rxBytes: this.rxBytes,
      txCompleted: this.txCompleted,
      kicks: this.kicks,
      rxNoBuffers: this.rxNoBuffers,
      rxDropped: this.rxDropped,
      wakeups: this.wakeups,
    };
  }
}

/**
 * Everything a thread needs to drive queue pair `index` of an open port: structured-cloneable
 * plain data, from `VirtioNet.queueHandle(i)`, for {@linkcode QueuePair.attach}. The fds stay
 * the port's; attach takes its own copies.
 */
export interface QueueHandle {
  /** Queue pair number i (receiveq 2i, transmitq 2i+1). */
  readonly index: number;
  /** The shared memory's fd, size, address (as the device knows it) and backing. */
  readonly memFd: number;
  /** Bytes of the shared memory. */
  readonly memSize: number;
  /** Address of the shared memory's byte 0 in descriptors. */
  readonly memAddr: number;
  /** True when the memory is hugepage-backed. */
  readonly hugepages: boolean;
  /** Packed (true) or split rings. */
  readonly packed: boolean;
  /** Descriptors per ring. */
  readonly queueSize: number;
  /** VIRTIO_RING_F_EVENT_IDX negotiated. */
  readonly eventIdx: boolean;
  /** VIRTIO_F_IN_ORDER negotiated. */
  readonly inOrder: boolean;
  /** VIRTIO_NET_F_MRG_RXBUF negotiated: frames may span several receive buffers. */
  readonly mergeable: boolean;
  /** A transmit offload negotiated: txBurst sends the caller's headers (lib/driver/offload.ts). */
  readonly txOffload: boolean;
  /** Byte offset of the receive ring block. */
  readonly rxRing: number;
  /** Byte offset of the transmit ring block. */
  readonly txRing: number;
  /** Kick eventfd of the receive ring (virtqueue 2i). */
  readonly rxKickFd: number;
  /** Kick eventfd of the transmit ring (virtqueue 2i+1). */
  readonly txKickFd: number;
  /** Call eventfd of the receive ring (the device's used-buffer notifications). */
  readonly rxCallFd: number;
  /** Byte offset of buffer 0 (the port's whole pool). */
  readonly poolBase: number;
  /** Buffers in the port's pool. */
  readonly poolCount: number;
  /** Bytes per buffer. */
  readonly bufferSize: number;
  /** First buffer of this pair's share. */
  readonly firstBuffer: number;
  /** Buffers in this pair's share. */
  readonly buffers: number;
  /** Byte offset of the counter blocks (block i is this pair's). */
  readonly statsOffset: number;
  /** Queue pairs of the port (counter blocks). */
  readonly queuePairs: number;
}

/** What a {@linkcode QueuePair} runs on (internal: built by VirtioNet or by attach). */
export interface QueuePairParts {
  /** Pair number. */
  index: number;
  /** receiveq i. */
  rx: DriverQueue;
  /** transmitq i. */
  tx: DriverQueue;
  /** Buffers this pair allocates from and frees to. */
  pool: BufferPool;
  /** Kick eventfd of receiveq i. */
  rxKickFd: number;
  /** Kick eventfd of transmitq i. */
  txKickFd: number;
  /** Call eventfd of receiveq i (for `readable()`), or -1. */
  rxCallFd: number;
  /** All pairs' counter blocks (for `stats` views). */
  source: CounterSource;
  /** VIRTIO_NET_F_MRG_RXBUF negotiated. */
  mergeable: boolean;
  /** A transmit offload negotiated (CSUM, HOST_TSO4/6): headers are the caller's. */
  txOffload?: boolean;
}

/**
 * The data path of one queue pair: `txBurst`, `rxBurst`, `txDrain`, with the batching rules of
 * the port (reclaim and refill in batches, one publish and at most one kick per burst).
 *
 * @example
 * ```ts ignore
 * // In a Worker, with the handle the main thread posted:
 * import { QueuePair } from "./queue_pair.ts";
 * const pair = QueuePair.attach(handle);
 * const bufs = new Uint32Array(32), lens = new Uint32Array(32);
 * const n = pair.rxBurst(bufs, lens, 32);
 * pair.pool.free(bufs, 0, n);
 * pair.close();
 * ```
 */
export class QueuePair {
  /** Queue pair number i. */
  readonly index: number;
  /** Descriptors per ring. */
  readonly queueSize: number;
  /** The buffers this pair uses; frames at `pool.bytes[pool.dataOffset(n)]`. */
  readonly pool: BufferPool;
  /** This pair's counters. */
  readonly stats: QueueStats;

  readonly #rx: DriverQueue;
  readonly #tx: DriverQueue;
  readonly #rxKickFd: number;
  readonly #txKickFd: number;
  readonly #rxCallFd: number;
  /** Eventfd that ends a pending `readable()` wait at close; -1 until the first wait. */
  #wakeFd = -1;
  #waiting = false;
  #closed = false;
  readonly #c: Float64Array;
  readonly #source: CounterSource;
  readonly #at: number;
  readonly #scratchBufs: Uint32Array;
  readonly #scratchLens: Uint32Array;
  readonly #refillLens: Uint32Array;
  readonly #refillThreshold: number;
  /** With MRG_RXBUF: gathers frames spanning buffers; null without. */
  readonly #merge: MergeableReceiver | null;
  readonly #segs: Uint32Array;
  /** Transmit offloads negotiated: txBurst keeps the caller's header (sanitized), else zeroes it. */
  readonly #txOffload: boolean;
  /** The queue whose rule the device broke last (`rx0`, `tx1`), for `DeviceFailedError`. */
  faultQueue = "";
  /** Set by {@linkcode attach}: the view and fd copies this pair owns. */
  #owned: { memory: SharedMemory; fds: number[] } | null = null;

  /** Builds the data path over set-up rings (VirtioNet does this; Workers use `attach`). */
  constructor(parts: QueuePairParts) {
    this.index = parts.index;
    this.pool = parts.pool;
    this.#rx = parts.rx;
    this.#tx = parts.tx;
    this.#rxKickFd = parts.rxKickFd;
    this.#txKickFd = parts.txKickFd;
    this.#rxCallFd = parts.rxCallFd;
    this.#c = parts.source.counters;
    this.#at = parts.index * SLOTS;
    this.#source = parts.source;
    this.stats = new QueueStats(parts.source, parts.index, 1);
    const size = parts.rx.size;
    this.queueSize = size;
    this.#scratchBufs = new Uint32Array(size);
    this.#scratchLens = new Uint32Array(size);
    this.#refillLens = new Uint32Array(size).fill(parts.pool.bufferSize);
    this.#refillThreshold = Math.max(1, Math.min(32, size >> 2));
    this.#merge = parts.mergeable ? new MergeableReceiver(size, `rx${parts.index}`) : null;
    this.#segs = new Uint32Array(parts.mergeable ? size : 0);
    this.#txOffload = parts.txOffload ?? false;
    // The caller writes offload requests into headers that alloc() zeroed.
    parts.pool.zeroHeaders = this.#txOffload;
  }

  /**
   * Takes over queue pair `handle.index` of a port opened in another thread (a Worker of this
   * process): maps the port's memory again, duplicates the kick eventfds, builds the ring
   * objects over the rings the port reset and set up (without resetting them again: the device
   * may already have written its event suppression there), and fills the receive ring
   * (§5.1.6.3: receive buffers may be added after DRIVER_OK). Call once per handle.
   *
   * @example
   * ```ts ignore
   * import { QueuePair } from "./queue_pair.ts";
   * self.onmessage = (e) => {
   *   using pair = QueuePair.attach(e.data);
   * };
   * ```
   */
  static attach(handle: QueueHandle): QueuePair {
    const h = handle;
    let memory: SharedMemory;
    try {
      memory = SharedMemory.attach(h.memFd, h.memSize, h.memAddr, h.hugepages);
    } catch (e) {
      throw new Error(
        `QueuePair.attach(pair ${h.index}): mapping the port's memory (fd ${h.memFd}) failed: ` +
          `${(e as Error).message}; is the port still open in the thread that made the handle?`,
        { cause: e },
      );
    }
    const fds: number[] = [];
    try {
      const pool = new BufferPool(memory, h.poolCount, h.bufferSize, {
        base: h.poolBase,
        first: h.firstBuffer,
        owned: h.buffers,
      });
      const common = {
        packed: h.packed,
        size: h.queueSize,
        buffers: pool,
        eventIdx: h.eventIdx,
        inOrder: h.inOrder,
        reset: false,
      };
      const rx = driverQueueAt(memory, h.rxRing, { ...common, name: `rx${h.index}` });
      const tx = driverQueueAt(memory, h.txRing, { ...common, name: `tx${h.index}` });
      // Poll mode, as the port set it: no used-buffer notifications (§2.7.7 / §2.8.10).
      rx.setInterrupts(false);
      tx.setInterrupts(false);
      fds.push(dupFd(h.rxKickFd), dupFd(h.txKickFd), dupFd(h.rxCallFd));
      const counters = new Float64Array(memory.buffer, h.statsOffset, h.queuePairs * SLOTS);
      const pair = new QueuePair({
        index: h.index,
        rx,
        tx,
        pool,
        rxKickFd: fds[0],
        txKickFd: fds[1],
        rxCallFd: fds[2],
        source: { counters },
        mergeable: h.mergeable,
        txOffload: h.txOffload,
      });
      pair.#owned = { memory, fds };
      pair.refill(true);
      return pair;
    } catch (e) {
      for (const fd of fds) closeQuietly(fd);
      memory.close();
      throw e;
    }
  }

  /**
   * Sends `n` frames: buffer `bufs[i]` holding `lens[i]` frame bytes at
   * `pool.dataOffset(bufs[i])`. Returns how many were queued; the pair owns those buffers now
   * and frees them when the device is done. The rest stay the caller's.
   * One publish and at most one kick per call; no allocation. Throws `BufferError` (changing
   * nothing) for a buffer the caller does not own, {@linkcode VirtqueueError} when the device
   * broke a rule while used buffers were taken back (VirtioNet then fails the port).
   */
  txBurst(bufs: Uint32Array, lens: Uint32Array, n: number): number {
    const q = this.#tx;
    const pool = this.pool;
    // Reclaim what the device finished with (§2.7.14 / §2.8.22 used buffers), but only when the
    // ring runs low (like DPDK's tx_free_thresh): reading used entries pulls cache lines the
    // device is writing, so doing it in large batches keeps both cores out of each other's way.
    if (q.numFree < n || q.numFree < this.#refillThreshold) this.reclaimTx();
    const free = q.numFree;
    const count = n < free ? n : free;
    if (count === 0) return 0;
    const lensWithHdr = this.#scratchLens;
    const capacity = pool.frameCapacity;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const len = lens[i];
      if (len > capacity) throw new RangeError(`frame ${i}: ${len} bytes exceed ${capacity}`);
      lensWithHdr[i] = len + NET_HDR_SIZE;
      bytes += len;
    }
    // Refuses (changing nothing) a buffer the caller does not own: out of range, free, or
    // already sent.
    pool.submit(bufs, count);
    if (this.#txOffload) {
      // The caller's offload requests stay; receive-only bits go (§5.1.6.2).
      const bytes = pool.bytes;
      for (let i = 0; i < count; i++) sanitizeTxNetHdr(bytes, pool.headerOffset(bufs[i]));
    } else for (let i = 0; i < count; i++) pool.clearHeader(bufs[i]);
    const sent = q.enqueue(bufs, lensWithHdr, 0, count, false);
    const c = this.#c, at = this.#at;
    if (q.needsNotify()) {
      eventfdSignal(this.#txKickFd);
      c[at + KICKS]++;
    }
    c[at + TX_PACKETS] += sent;
    c[at + TX_BYTES] += bytes;
    return sent;
  }

  /**
   * Takes the used buffers of the transmit queue back into the pool (§2.7.14 / §2.8.22);
   * returns how many. Throws {@linkcode VirtqueueError} (those taken before the bad entry back
   * in the pool) when the device broke a rule.
   */
  reclaimTx(): number {
    const q = this.#tx, out = this.#scratchBufs;
    let done: number;
    try {
      done = q.dequeue(out, this.#scratchLens, q.size);
    } catch (e) {
      throw this.#fault(q.name, e, out);
    }
    if (done > 0) {
      this.pool.reclaim(out, 0, done);
      this.#c[this.#at + TX_COMPLETED] += done;
    }
    return done;
  }

  /** Frames sent on this pair that the device has not returned yet. */
  get txInFlight(): number {
    return this.#tx.size - this.#tx.numFree;
  }

  /**
   * The device broke a rule on `queue` while it was dequeued into `bufs`: the buffers the call
   * had taken (`e.dequeued`, still the pair's) go back to the pool. Returns the error to throw.
   */
  #fault(queue: string, e: unknown, bufs: Uint32Array | null): unknown {
    if (!(e instanceof VirtqueueError)) return e;
    this.faultQueue = queue;
    if (bufs !== null && e.dequeued > 0) this.pool.reclaim(bufs, 0, e.dequeued);
    return e;
  }

  /**
   * Every buffer in the pair's rings (and a mergeable frame's carried head) back to the pool:
   * for a device that is gone or broke a rule. The rings must not be used again.
   */
  takeInFlight(): void {
    const out = this.#scratchBufs, pool = this.pool;
    pool.reclaim(out, 0, this.#rx.takeInFlight(out));
    pool.reclaim(out, 0, this.#tx.takeInFlight(out));
    if (this.#merge !== null) pool.reclaim(out, 0, this.#merge.drop(out));
  }

  /**
   * Receives up to `max` frames: their buffer numbers into `bufs`, frame lengths into `lens`.
   * The caller owns those buffers (free them to `pool`, or send them on). Refills the receive
   * ring in the same call; at most one kick. Throws {@linkcode VirtqueueError} when the device
   * broke a rule (a used length shorter than the header included), with the buffers the call had
   * taken back in the pool, none handed to the caller.
   */
  rxBurst(bufs: Uint32Array, lens: Uint32Array, max: number): number {
    if (this.#merge !== null) return this.#rxBurstMergeable(bufs, lens, max);
    const q = this.#rx;
    let got: number;
    try {
      got = q.dequeue(bufs, lens, max);
    } catch (e) {
      throw this.#fault(q.name, e, bufs);
    }
    let bytes = 0;
    for (let i = 0; i < got; i++) {
      // The device writes the header then the frame (§5.1.6.4); the ring checked len ≤ posted.
      const len = lens[i] - NET_HDR_SIZE;
      if (len < 0) {
        const rule = `used buffer ${bufs[i]}: len ${lens[i]} is shorter than the ` +
          `${NET_HDR_SIZE}-byte virtio-net header (§5.1.6.4)`;
        throw this.#fault(q.name, new VirtqueueError(q.name, rule, got), bufs);
      }
      lens[i] = len;
      bytes += len;
    }
    this.pool.deliver(bufs, got);
    const c = this.#c, at = this.#at;
    c[at + RX_PACKETS] += got;
    c[at + RX_BYTES] += bytes;
    // Refill in batches (like DPDK's rx_free_thresh): one publish per batch, not per frame.
    if (q.numFree >= this.#refillThreshold) this.refill(true);
    return got;
  }

  /**
   * Receives whole frames, also those spanning several buffers (VIRTIO_NET_F_MRG_RXBUF, jumbo
   * frames): returns the number of frames; frame `f` is the next `segs[f]` entries of `bufs` /
   * `lens` (frame bytes per buffer), at most `maxBufs` entries in all. The frame starts at
   * `pool.dataOffset(b)` in its first buffer and at `pool.headerOffset(b)` in the others (only
   * the first carries the header, §5.1.6.4). The caller owns every buffer returned. Without
   * MRG_RXBUF each frame is one buffer (`segs[f] = 1`).
   *
   * @example
   * ```ts ignore
   * const frames = pair.rxFrames(bufs, lens, segs, 64);
   * for (let f = 0, j = 0; f < frames; j += segs[f++]) console.log(`frame of ${segs[f]}`);
   * ```
   */
  rxFrames(bufs: Uint32Array, lens: Uint32Array, segs: Uint32Array, maxBufs: number): number {
    const merge = this.#merge;
    if (merge === null) {
      const n = this.rxBurst(bufs, lens, maxBufs);
      segs.fill(1, 0, n);
      return n;
    }
    let frames: number;
    try {
      frames = merge.receive(this.#rx, this.pool, bufs, lens, segs, maxBufs);
    } catch (e) {
      // The buffers the failing call had taken wait in the receiver: back to the pool.
      if (e instanceof VirtqueueError) {
        this.pool.reclaim(this.#scratchBufs, 0, merge.drop(this.#scratchBufs));
      }
      throw this.#fault(this.#rx.name, e, null);
    }
    this.pool.deliver(bufs, merge.buffers);
    const c = this.#c, at = this.#at;
    c[at + RX_PACKETS] += frames;
    c[at + RX_BYTES] += merge.bytes;
    if (this.#rx.numFree >= this.#refillThreshold) this.refill(true);
    return frames;
  }

  /** rxBurst with MRG_RXBUF: frames of one buffer pass, longer ones are dropped and counted. */
  #rxBurstMergeable(bufs: Uint32Array, lens: Uint32Array, max: number): number {
    const segs = this.#segs;
    const frames = this.rxFrames(bufs, lens, segs, max);
    let out = 0, j = 0, dropped = 0, droppedBytes = 0;
    for (let f = 0; f < frames; f++) {
      const k = segs[f];
      if (k === 1) {
        bufs[out] = bufs[j];
        lens[out++] = lens[j];
      } else {
        for (let i = 0; i < k; i++) droppedBytes += lens[j + i];
        this.pool.free(bufs, j, k); // entries j.. are past `out`: not overwritten yet
        dropped++;
      }
      j += k;
    }
    if (dropped > 0) {
      const c = this.#c, at = this.#at;
      c[at + RX_DROPPED] += dropped;
      c[at + RX_PACKETS] -= dropped;
      c[at + RX_BYTES] -= droppedBytes;
    }
    return out;
  }

  /**
   * Resolves with true once `rxBurst` / `rxFrames` will find a frame (false after `timeoutMs`;
   * negative: no limit). With one waiting it resolves at once, touching neither the ring's
   * notification state nor the kernel, so a loop that polls and calls this only when a burst
   * came back empty costs nothing while traffic flows. Otherwise it arms used-buffer
   * notifications (§2.7.7 / §2.8.10 driver event suppression; EVENT_IDX: the next used slot),
   * checks the ring once more (a buffer used before the device saw the change raises no
   * notification), then waits on the receive call eventfd with poll(2) on one of Deno's FFI
   * threads, so this thread's event loop keeps running and an idle port costs no CPU; once
   * woken it disarms (polling again). Rejects when the pair is closed meanwhile.
   *
   * @example
   * ```ts ignore
   * for (;;) {
   *   const n = pair.rxBurst(bufs, lens, 32);
   *   if (n === 0) await pair.readable();
   *   pair.pool.free(bufs, 0, n);
   * }
   * ```
   */
  async readable(timeoutMs = -1): Promise<boolean> {
    const q = this.#rx;
    if (q.hasUsed()) return true;
    if (this.#closed) throw new Error(`rx${this.index}: readable() on a closed queue pair`);
    const call = this.#rxCallFd;
    if (call < 0) throw new Error(`rx${this.index}: no call eventfd, readable() cannot wait`);
    if (this.#waiting) throw new Error(`rx${this.index}: readable() is already waiting`);
    if (this.#wakeFd < 0) this.#wakeFd = eventfd();
    const deadline = timeoutMs < 0 ? Infinity : performance.now() + timeoutMs;
    this.#waiting = true;
    try {
      for (;;) {
        // A call raised before this arm (for a buffer a burst already took, or one the device
        // used as the last wait disarmed) is stale: drop it, so only what the device signals
        // from now on wakes the wait (a buffer used in between is seen by hasUsed below).
        eventfdDrain(call);
        q.setInterrupts(true);
        // seq_cst store above, acquire load here: nothing used before the arm goes unseen.
        if (q.hasUsed()) {
          q.setInterrupts(false);
          return true;
        }
        const left = deadline === Infinity ? -1 : Math.max(0, deadline - performance.now());
        let which: number;
        try {
          which = await pollInAsync([call, this.#wakeFd], left);
        } catch (e) {
          // close() may have closed the call fd before Deno's FFI thread began its poll(2).
          if (!this.#closed) throw e;
          which = 1;
        }
        if (this.#closed) throw new Error(`rx${this.index}: the queue pair closed while waiting`);
        q.setInterrupts(false); // frames flow: poll again, no notifications
        if (which === 0) {
          eventfdDrain(call);
          this.#c[this.#at + WAKEUPS]++;
        }
        if (q.hasUsed()) return true;
        if (which < 0) return false;
      }
    } finally {
      this.#waiting = false;
      if (this.#closed) this.#closeWake();
    }
  }

  #closeWake(): void {
    closeQuietly(this.#wakeFd);
    this.#wakeFd = -1;
  }

  /**
   * Posts free buffers to every empty slot of the receive ring (§5.1.6.3) in one publish; with
   * `kick`, notifies the device when it asked to be.
   */
  refill(kick: boolean): void {
    const q = this.#rx;
    const want = q.numFree;
    if (want === 0) return;
    const k = this.pool.takeForPort(this.#scratchBufs, 0, want);
    if (k < want) this.#c[this.#at + RX_NO_BUFFERS]++;
    if (k === 0) return;
    q.enqueue(this.#scratchBufs, this.#refillLens, 0, k, true);
    if (kick && q.needsNotify()) {
      eventfdSignal(this.#rxKickFd);
      this.#c[this.#at + KICKS]++;
    }
  }

  /**
   * Waits (polling, at most `timeoutMs`) until the device has used every frame sent on this
   * pair, freeing their buffers. Returns the number still in flight: 0 means all were taken.
   */
  txDrain(timeoutMs = 1000): number {
    const q = this.#tx;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      this.reclaimTx();
      const inFlight = q.size - q.numFree;
      if (inFlight === 0 || performance.now() > deadline) return inFlight;
    }
  }

  /**
   * Ends a pending {@linkcode readable} (it rejects); for an {@linkcode attach}ed pair also
   * unmaps this thread's view and closes its eventfd copies. Stop using the pair first; the port
   * (in its thread) stops the rings. Idempotent.
   */
  close(): void {
    if (!this.#closed) {
      this.#closed = true;
      // A waiting readable() holds the wake fd in poll(2): signal it; readable closes it.
      if (this.#waiting) eventfdSignal(this.#wakeFd);
      else this.#closeWake();
    }
    const owned = this.#owned;
    if (owned === null) return;
    this.#owned = null;
    for (const fd of owned.fds) closeQuietly(fd);
    // Counters stay readable: views switch to a copy before the memory goes.
    this.#source.counters = this.#source.counters.slice();
    owned.memory.close();
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
