/**
 * A fixed pool of packet buffers inside shared memory, named by buffer number.
 *
 * ```
 *   buffer n:  [ virtio_net_hdr (12 B) | frame ...                    ]  slot = bufferSize bytes
 *              ^ addrLo[n] / addrHi[n]  ^ dataOffset(n) in `bytes`
 * ```
 *
 * Free buffers sit on a stack of numbers, so allocating and freeing a burst touches only a
 * `Uint32Array`.
 *
 * @module
 */

import { NET_HDR_SIZE } from "../virtio/net_hdr.ts";
import type { SharedMemory } from "./shared_memory.ts";
import type { BufferTable } from "../virtio/virtqueue.ts";

/**
 * Where a {@linkcode BufferPool} finds its buffers when it shares them with other pools (one
 * pool per queue pair, each in its own thread): the same numbering, a disjoint set on each
 * free stack.
 */
export interface BufferShare {
  /** Byte offset of buffer 0, already carved by another pool (default: carve them now). */
  base?: number;
  /** First buffer on this pool's free stack (default 0). */
  first?: number;
  /** Buffers on this pool's free stack, from `first` (default: all of them). */
  owned?: number;
}

/**
 * Packet buffers: buffer number `n` holds a virtio-net header followed by the frame.
 *
 * @example
 * ```ts ignore
 * import { BufferPool } from "./buffer_pool.ts";
 * import { SharedMemory } from "./shared_memory.ts";
 * using mem = SharedMemory.create(8 << 20, { hugepages: false });
 * const pool = new BufferPool(mem, 1024, 2048);
 * const n = pool.allocOne();
 * pool.bytes.set([0xff, 0xff], pool.dataOffset(n));
 * pool.freeOne(n);
 * ```
 */
export class BufferPool implements BufferTable {
  /** Number of buffers. */
  readonly count: number;
  /** Bytes per buffer, header included. */
  readonly bufferSize: number;
  /** Largest frame a buffer holds (`bufferSize` minus the 12-byte header). */
  readonly frameCapacity: number;
  /** The shared memory, as bytes; frames are at {@linkcode dataOffset}. */
  readonly bytes: Uint8Array;
  /** Low halves of each buffer's address (where its header starts). */
  readonly addrLo: Uint32Array;
  /** High halves of each buffer's address. */
  readonly addrHi: Uint32Array;
  /** Byte offset of buffer 0 inside `bytes`. */
  readonly base: number;
  readonly #words: Uint32Array;
  readonly #stack: Uint32Array;
  #top: number;

  /**
   * Carves `count` buffers of `bufferSize` bytes (a multiple of 64) out of `memory`, or takes
   * over buffers carved earlier and owns some of them ({@linkcode BufferShare}).
   */
  constructor(memory: SharedMemory, count: number, bufferSize = 2048, share: BufferShare = {}) {
    if (bufferSize % 64 !== 0 || bufferSize < 128) {
      throw new RangeError(`buffer size ${bufferSize} must be a multiple of 64 and at least 128`);
    }
    this.count = count;
    this.bufferSize = bufferSize;
    this.frameCapacity = bufferSize - NET_HDR_SIZE;
    this.base = share.base ?? memory.alloc(count * bufferSize, 4096);
    const first = share.first ?? 0;
    const owned = share.owned ?? count - first;
    if (first < 0 || owned < 0 || first + owned > count) {
      throw new RangeError(`buffer share [${first}, ${first + owned}) is not inside 0..${count}`);
    }
    this.bytes = memory.bytes;
    this.#words = new Uint32Array(memory.buffer);
    this.addrLo = new Uint32Array(count);
    this.addrHi = new Uint32Array(count);
    this.#stack = new Uint32Array(count);
    for (let n = 0; n < count; n++) {
      const addr = memory.addr + this.base + n * bufferSize;
      this.addrLo[n] = addr % 0x1_0000_0000;
      this.addrHi[n] = Math.floor(addr / 0x1_0000_0000);
    }
    for (let i = 0; i < owned; i++) this.#stack[i] = first + owned - 1 - i; // `first` on top
    this.#top = owned;
  }

  /** Buffers currently free. */
  get available(): number {
    return this.#top;
  }

  /** Byte offset in {@linkcode bytes} of buffer `n`'s frame (just past its header). */
  dataOffset(n: number): number {
    return this.base + n * this.bufferSize + NET_HDR_SIZE;
  }

  /** Byte offset in {@linkcode bytes} of buffer `n`'s virtio-net header. */
  headerOffset(n: number): number {
    return this.base + n * this.bufferSize;
  }

  /** Zeroes buffer `n`'s virtio-net header (no offloads, §5.1.6.2). */
  clearHeader(n: number): void {
    const w = (this.base + n * this.bufferSize) >>> 2;
    this.#words[w] = 0;
    this.#words[w + 1] = 0;
    this.#words[w + 2] = 0;
  }

  /** Takes one buffer; returns its number, or -1 when the pool is empty. */
  allocOne(): number {
    if (this.#top === 0) return -1;
    return this.#stack[--this.#top];
  }

  /** Takes up to `n` buffers into `out[offset..]`; returns how many. */
  alloc(out: Uint32Array, offset: number, n: number): number {
    const take = n < this.#top ? n : this.#top;
    const stack = this.#stack;
    let top = this.#top;
    for (let i = 0; i < take; i++) out[offset + i] = stack[--top];
    this.#top = top;
    return take;
  }

  /** Returns buffer `n` to the pool. */
  freeOne(n: number): void {
    this.#stack[this.#top++] = n;
  }

  /** Returns `bufs[offset..offset+n)` to the pool. */
  free(bufs: Uint32Array, offset: number, n: number): void {
    const stack = this.#stack;
    let top = this.#top;
    if (top + n > this.count) {
      throw new RangeError(`buffer pool: freeing ${n} buffers would exceed ${this.count}`);
    }
    for (let i = 0; i < n; i++) stack[top++] = bufs[offset + i];
    this.#top = top;
  }
}
