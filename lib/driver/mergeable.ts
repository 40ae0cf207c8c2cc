/**
 * Mergeable receive buffers (VIRTIO_NET_F_MRG_RXBUF, virtio 1.2 §5.1.6.3 / §5.1.6.4): the device
 * may spread one frame over several receive buffers; the first one starts with the 12-byte
 * header, whose `num_buffers` says how many used buffers the frame takes, the rest hold frame
 * bytes from their first byte.
 *
 * ```
 *   used buffers:  [hdr nb=3 | data…] [data…] [data…] [hdr nb=1 | data] …
 *   rxFrames out:  bufs = b0 b1 b2 b3 …   lens = bytes of frame in each   segs = 3 1 …
 * ```
 *
 * A frame whose buffers are not all used yet is carried to the next call, so a caller only ever
 * sees whole frames. Buffers stay numbers in typed arrays: no object per frame.
 *
 * @module
 */

import { NET_HDR_NUM_BUFFERS, NET_HDR_SIZE } from "../virtio/net_hdr.ts";
import { type DriverQueue, VirtqueueError } from "../virtio/virtqueue.ts";
import type { BufferPool } from "./buffer_pool.ts";

/**
 * Gathers used receive buffers into whole frames for one receive queue. One instance per queue
 * (it carries the tail of a frame between calls).
 *
 * @example
 * ```ts ignore
 * import { MergeableReceiver } from "./mergeable.ts";
 * const rx = new MergeableReceiver(256, "rx0");
 * const frames = rx.receive(queue, pool, bufs, lens, segs, 64);
 * console.log(frames, rx.buffers, rx.bytes);
 * ```
 */
export class MergeableReceiver {
  /** Buffers written to `bufs` by the last {@linkcode receive}. */
  buffers = 0;
  /** Frame bytes (headers excluded) of the frames the last {@linkcode receive} returned. */
  bytes = 0;
  readonly #name: string;
  readonly #inBufs: Uint32Array;
  readonly #inLens: Uint32Array;
  readonly #carryBufs: Uint32Array;
  readonly #carryLens: Uint32Array;
  #carried = 0;
  /** Buffers the carried frame still needs. */
  #carryNeed = 0;
  #carryBytes = 0;

  /** Room for a queue of `queueSize` descriptors named `name` (for errors). */
  constructor(queueSize: number, name: string) {
    this.#name = name;
    this.#inBufs = new Uint32Array(queueSize);
    this.#inLens = new Uint32Array(queueSize);
    this.#carryBufs = new Uint32Array(queueSize);
    this.#carryLens = new Uint32Array(queueSize);
  }

  /**
   * Takes used buffers from `q` (at most `maxBufs` in `bufs`, a carried frame's included) and
   * returns the number of whole frames: frame `f` is the next `segs[f]` entries of `bufs` /
   * `lens`, where `lens` counts frame bytes only. The frame starts at `pool.dataOffset(b)` in
   * its first buffer and at `pool.headerOffset(b)` in the others. Throws
   * {@linkcode VirtqueueError} when the device breaks §5.1.6.4 (num_buffers 0 or more than the
   * queue holds, a first buffer shorter than the header), RangeError when one frame spans more
   * than `maxBufs` buffers.
   */
  receive(
    q: DriverQueue,
    pool: BufferPool,
    bufs: Uint32Array,
    lens: Uint32Array,
    segs: Uint32Array,
    maxBufs: number,
  ): number {
    let out = this.#carried;
    if (out > 0 && out >= maxBufs) {
      throw new RangeError(
        `${this.#name}: a frame spans more than ${maxBufs} receive buffers; give rxFrames ` +
          `larger arrays`,
      );
    }
    for (let i = 0; i < out; i++) {
      bufs[i] = this.#carryBufs[i];
      lens[i] = this.#carryLens[i];
    }
    let need = this.#carryNeed;
    let frameBytes = this.#carryBytes;
    this.#carried = 0;
    const inBufs = this.#inBufs, inLens = this.#inLens, bytes = pool.bytes;
    const carried = out;
    let got: number;
    try {
      got = q.dequeue(inBufs, inLens, maxBufs - out);
    } catch (e) {
      // The device broke a rule: what it returned before the bad entry and the carried head of
      // a frame are kept for drop() (they are still the port's, not the caller's).
      if (e instanceof VirtqueueError) this.#keep(bufs, carried, e.dequeued);
      throw e;
    }
    let frames = 0, first = 0, total = 0;
    for (let j = 0; j < got; j++) {
      const b = inBufs[j];
      let len = inLens[j];
      if (need === 0) {
        // §5.1.6.4: the header is in the first buffer; num_buffers (le16) counts the frame's
        // buffers. dequeue's acquire load of the used entry ordered the device's writes before.
        const h = pool.headerOffset(b) + NET_HDR_NUM_BUFFERS;
        need = bytes[h] | bytes[h + 1] << 8;
        if (need === 0 || need > q.size || len < NET_HDR_SIZE) {
          this.#keep(bufs, carried, got);
          throw new VirtqueueError(
            this.#name,
            `used buffer ${b}: num_buffers ${need}, ${len} bytes (§5.1.6.4: 1..${q.size} ` +
              `buffers, the first holding the ${NET_HDR_SIZE}-byte header)`,
          );
        }
        len -= NET_HDR_SIZE;
        first = out;
        frameBytes = 0;
      }
      bufs[out] = b;
      lens[out] = len;
      out++;
      frameBytes += len;
      if (--need === 0) {
        segs[frames++] = out - first;
        total += frameBytes;
      }
    }
    if (need > 0) {
      // The frame's last buffers are not used yet: keep what arrived for the next call.
      this.#carried = out - first;
      for (let i = 0; i < this.#carried; i++) {
        this.#carryBufs[i] = bufs[first + i];
        this.#carryLens[i] = lens[first + i];
      }
      this.#carryNeed = need;
      this.#carryBytes = frameBytes;
      out = first;
    } else {
      this.#carryNeed = 0;
      this.#carryBytes = 0;
    }
    this.buffers = out;
    this.bytes = total;
    return frames;
  }

  /**
   * Writes the buffers this receiver holds into `out` and forgets them; returns the count: a
   * frame's head carried to the next call, or, after {@linkcode receive} threw a
   * {@linkcode VirtqueueError}, every buffer that call had taken. For a dead or broken device,
   * beside `takeInFlight`; the buffers are the port's, not a caller's.
   */
  drop(out: Uint32Array): number {
    const n = this.#carried;
    for (let i = 0; i < n; i++) out[i] = this.#carryBufs[i];
    this.#carried = 0;
    this.#carryNeed = 0;
    this.#carryBytes = 0;
    return n;
  }

  /** A fault: keeps the carried buffers (`bufs[0..carried)`) and the `got` just dequeued. */
  #keep(bufs: Uint32Array, carried: number, got: number): void {
    const keep = this.#carryBufs;
    for (let i = 0; i < carried; i++) keep[i] = bufs[i];
    for (let i = 0; i < got; i++) keep[carried + i] = this.#inBufs[i];
    this.#carried = carried + got;
    this.#carryNeed = 0;
    this.#carryBytes = 0;
  }
}
