/**
 * A fixed pool of packet buffers inside shared memory, named by buffer number.
 *
 * ```
 *   buffer n:  [ virtio_net_hdr (12 B) | frame ...                    ]  slot = bufferSize bytes
 *              ^ addrLo[n] / addrHi[n]  ^ dataOffset(n) in `bytes`
 * ```
 *
 * Free buffers sit on a stack of numbers, so allocating and freeing a burst touches only a
 * `Uint32Array`. One byte per buffer records who owns it (the pool, the caller, the port's
 * rings), so a buffer number that is out of range, freed twice or sent while the port still owns
 * it is refused with a {@linkcode BufferError} instead of corrupting the stack or a ring.
 *
 * @module
 */

import { NET_HDR_SIZE } from "../virtio/net_hdr.ts";
import type { SharedMemory } from "./shared_memory.ts";
import type { BufferTable } from "../virtio/virtqueue.ts";

/** Who holds a buffer (one byte per buffer in the pool). */
const FREE = 0, CALLER = 1, PORT = 2;

/** A buffer number the caller passed breaks the ownership rules (range, double free, in flight). */
export class BufferError extends RangeError {
  /**
   * Creates the error.
   *
   * @example
   * ```ts
   * import { BufferError } from "./buffer_pool.ts";
   * console.assert(new BufferError("free: buffer 9 is already free").name === "BufferError");
   * ```
   */
  constructor(message: string) {
    super(`buffer pool: ${message}`);
    this.name = "BufferError";
  }
}

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
  readonly #bytes: Uint8Array;
  readonly #memory: SharedMemory;
  /** FREE, CALLER or PORT per buffer. */
  readonly #owner: Uint8Array;
  /** Low halves of each buffer's address (where its header starts). */
  readonly addrLo: Uint32Array;
  /** High halves of each buffer's address. */
  readonly addrHi: Uint32Array;
  /** Byte offset of buffer 0 inside `bytes`. */
  readonly base: number;
  readonly #words: Uint32Array;
  readonly #stack: Uint32Array;
  /**
   * `alloc` / `allocOne` zero each buffer's header: set by a port that negotiated a transmit
   * offload, whose txBurst then sends the header as the caller wrote it (lib/driver/offload.ts).
   */
  zeroHeaders = false;
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
    this.#memory = memory;
    this.#bytes = memory.bytes;
    this.#owner = new Uint8Array(count);
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

  /**
   * The shared memory, as bytes; frames are at {@linkcode dataOffset}. Throws once the memory is
   * closed (the port closed); a view kept from before has length 0 then.
   */
  get bytes(): Uint8Array {
    if (this.#memory.closed) {
      throw new TypeError("buffer pool: the port is closed; its shared memory is unmapped");
    }
    return this.#bytes;
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
    const b = this.#stack[--this.#top];
    this.#owner[b] = CALLER;
    if (this.zeroHeaders) this.clearHeader(b);
    return b;
  }

  /** Takes up to `n` buffers into `out[offset..]`; returns how many. The caller owns them. */
  alloc(out: Uint32Array, offset: number, n: number): number {
    const got = this.#take(out, offset, n, CALLER);
    if (this.zeroHeaders) { for (let i = 0; i < got; i++) this.clearHeader(out[offset + i]); }
    return got;
  }

  /** Returns buffer `n` to the pool; throws a {@linkcode BufferError} unless the caller owns it. */
  freeOne(n: number): void {
    if (this.#owner[n] !== CALLER) throw new BufferError(this.#misuse("free", n));
    this.#owner[n] = FREE;
    this.#stack[this.#top++] = n;
  }

  /**
   * Returns `bufs[offset..offset+n)` to the pool. Throws a {@linkcode BufferError}, freeing
   * none, when one of them is not the caller's (out of range, already free, or owned by the port).
   */
  free(bufs: Uint32Array, offset: number, n: number): void {
    const stack = this.#stack, owner = this.#owner;
    let top = this.#top;
    for (let i = 0; i < n; i++) {
      const b = bufs[offset + i];
      // Out of range reads undefined: one compare checks range and ownership.
      if (owner[b] !== CALLER) {
        this.#undo(bufs, offset, i, CALLER);
        throw new BufferError(this.#misuse("free", b));
      }
      owner[b] = FREE;
      stack[top++] = b;
    }
    this.#top = top;
  }

  // --- for the port (lib/driver) ------------------------------------------------------------

  /** Takes up to `n` buffers for the port's receive rings. */
  takeForPort(out: Uint32Array, offset: number, n: number): number {
    return this.#take(out, offset, n, PORT);
  }

  /**
   * Marks the caller's `bufs[0..n)` as the port's (handed to a transmit ring). Throws a
   * {@linkcode BufferError}, changing none, when one is not the caller's (double submit).
   */
  submit(bufs: Uint32Array, n: number): void {
    const owner = this.#owner;
    for (let i = 0; i < n; i++) {
      const b = bufs[i];
      if (owner[b] !== CALLER) {
        this.#undo(bufs, 0, i, CALLER);
        throw new BufferError(this.#misuse("txBurst", b));
      }
      owner[b] = PORT;
    }
  }

  /** Gives the port's `bufs[offset..offset+n)` back to the caller (undoes {@linkcode submit}). */
  unsubmit(bufs: Uint32Array, offset: number, n: number): void {
    const owner = this.#owner;
    for (let i = 0; i < n; i++) owner[bufs[offset + i]] = CALLER;
  }

  /** Hands the port's `bufs[0..n)` (received frames) to the caller. */
  deliver(bufs: Uint32Array, n: number): void {
    const owner = this.#owner;
    for (let i = 0; i < n; i++) owner[bufs[i]] = CALLER;
  }

  /** Returns the port's `bufs[offset..offset+n)` (the device is done with them) to the pool. */
  reclaim(bufs: Uint32Array, offset: number, n: number): void {
    const stack = this.#stack, owner = this.#owner;
    let top = this.#top;
    for (let i = 0; i < n; i++) {
      const b = bufs[offset + i];
      if (owner[b] !== PORT) throw new BufferError(this.#misuse("reclaim", b));
      owner[b] = FREE;
      stack[top++] = b;
    }
    this.#top = top;
  }

  #take(out: Uint32Array, offset: number, n: number, who: number): number {
    const take = n < this.#top ? n : this.#top;
    const stack = this.#stack, owner = this.#owner;
    let top = this.#top;
    for (let i = 0; i < take; i++) {
      const b = stack[--top];
      owner[b] = who;
      out[offset + i] = b;
    }
    this.#top = top;
    return take;
  }

  /** Restores the owner of `bufs[offset..offset+k)` after a refused burst. */
  #undo(bufs: Uint32Array, offset: number, k: number, who: number): void {
    for (let i = 0; i < k; i++) {
      this.#owner[bufs[offset + i]] = who; // free() had not yet moved #top: nothing to pop
    }
  }

  #misuse(what: string, b: number): string {
    if (!Number.isInteger(b) || b < 0 || b >= this.count) {
      return `${what}: buffer ${b} is out of range (the pool has ${this.count})`;
    }
    return this.#owner[b] === FREE
      ? `${what}: buffer ${b} is already free (freed twice, or never allocated)`
      : `${what}: buffer ${b} belongs to the port (sent and not yet done, or posted for ` +
        "receive); free or send only buffers that alloc() or rxBurst() gave you";
  }
}
