/**
 * The driver's table of buffers in flight, shared by both layouts' driver sides: which buffer
 * each buffer id names, the length posted with it and whether the device may write it, and the
 * check on every used entry the device returns (virtio 1.2 §2.7.14 split, §2.8.22 packed: the
 * device returns buffers by id, with the bytes it wrote). Nothing the device writes is trusted
 * (as Linux's virtio_ring.c `BAD_RING` checks): the id must be in range and in flight, and the
 * length no more than was posted.
 *
 * ```
 *   enqueue: add(buf, len, state) ──► id ──► descriptor ──► device
 *   dequeue: used {id, len} ──► usedLen(id, len) ──► release(id) ──► buf
 *                                  └─ -1: usedError(...) names the rule broken
 * ```
 *
 * Ids come from a stack of free ids, except under VIRTIO_F_IN_ORDER (§2.8.20) where the queue
 * names them itself ({@linkcode InFlight.addAt}: the ring slot) and the stack is not read.
 *
 * @module
 */

import { VirtqueueError } from "./virtqueue.ts";

/** State of an id that names no buffer. */
export const BUF_FREE = 0;
/** State of an id whose buffer is in flight, device-readable (a frame to send). */
export const BUF_READABLE = 1;
/** State of an id whose buffer is in flight, device-writable (room to receive into). */
export const BUF_WRITABLE = 2;

/**
 * Buffers in flight by id (0 to `size - 1`), with the rule check on what the device returns.
 * Every method is a few typed-array accesses: no allocation on the data path.
 */
export class InFlight {
  /** Number of ids (the queue size). */
  readonly size: number;
  readonly #buf: Uint32Array;
  readonly #posted: Uint32Array;
  /** BUF_FREE, BUF_READABLE or BUF_WRITABLE, by id. */
  readonly #state: Uint8Array;
  /** Free ids, top at `#numFree - 1`. */
  readonly #freeIds: Uint16Array;
  #numFree: number;

  /**
   * An empty table: every id free, id 0 taken first.
   *
   * @param size number of ids, 1 to 65536.
   * @example
   * ```ts
   * import { BUF_READABLE, InFlight } from "./in_flight.ts";
   * const t = new InFlight(4);
   * const id = t.add(17, 60, BUF_READABLE);
   * console.assert(id === 0 && t.numFree === 3);
   * console.assert(t.usedLen(id, 0) === 0 && t.release(id) === 17 && t.numFree === 4);
   * ```
   */
  constructor(size: number) {
    this.size = size;
    this.#buf = new Uint32Array(size);
    this.#posted = new Uint32Array(size);
    this.#state = new Uint8Array(size);
    this.#freeIds = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.#freeIds[i] = size - 1 - i; // id 0 on top
    this.#numFree = size;
  }

  /**
   * Ids not in flight: buffers that may still be added.
   *
   * @example
   * ```ts
   * import { InFlight } from "./in_flight.ts";
   * console.assert(new InFlight(8).numFree === 8);
   * ```
   */
  get numFree(): number {
    return this.#numFree;
  }

  /**
   * Takes a free id for buffer `buf` posted with `len` bytes in `state` (BUF_READABLE or
   * BUF_WRITABLE) and returns it. The caller checks {@linkcode numFree} first.
   *
   * @example
   * ```ts
   * import { BUF_WRITABLE, InFlight } from "./in_flight.ts";
   * const t = new InFlight(2);
   * console.assert(t.add(5, 2048, BUF_WRITABLE) === 0 && t.add(6, 2048, BUF_WRITABLE) === 1);
   * ```
   */
  add(buf: number, len: number, state: number): number {
    return this.addAt(this.#freeIds[this.#numFree - 1], buf, len, state);
  }

  /**
   * Like {@linkcode add}, but under the id the queue chose: VIRTIO_F_IN_ORDER (§2.8.20), where
   * the id is the ring slot. A table serves either `add` or `addAt`, not both.
   *
   * @example
   * ```ts
   * import { BUF_READABLE, InFlight } from "./in_flight.ts";
   * const t = new InFlight(8);
   * console.assert(t.addAt(5, 40, 60, BUF_READABLE) === 5 && t.numFree === 7);
   * ```
   */
  addAt(id: number, buf: number, len: number, state: number): number {
    this.#numFree--;
    this.#buf[id] = buf;
    this.#posted[id] = len;
    this.#state[id] = state;
    return id;
  }

  /**
   * The state of id `id` (below `size`): BUF_FREE, BUF_READABLE or BUF_WRITABLE.
   *
   * @example
   * ```ts
   * import { BUF_FREE, InFlight } from "./in_flight.ts";
   * console.assert(new InFlight(8).stateOf(3) === BUF_FREE);
   * ```
   */
  stateOf(id: number): number {
    return this.#state[id];
  }

  /**
   * The length to report for a used entry `{id, len}` the device wrote: `len` for a writable
   * buffer, 0 for a readable one (the device wrote nothing into it). -1 when the entry breaks a
   * rule (id out of range, id not in flight, `len` above what was posted):
   * {@linkcode usedError} names it. Changes nothing.
   *
   * @example
   * ```ts
   * import { BUF_WRITABLE, InFlight } from "./in_flight.ts";
   * const t = new InFlight(8);
   * const id = t.add(3, 100, BUF_WRITABLE);
   * console.assert(t.usedLen(id, 60) === 60 && t.usedLen(id, 101) === -1);
   * console.assert(t.usedLen(5, 0) === -1 && t.usedLen(70000, 0) === -1);
   * ```
   */
  usedLen(id: number, len: number): number {
    if (id >= this.size) return -1;
    const state = this.#state[id];
    if (state === BUF_READABLE) return 0;
    if (state === BUF_FREE || len > this.#posted[id]) return -1;
    return len;
  }

  /**
   * The error for a used entry `{id, len}` that {@linkcode usedLen} refused, found at `where`
   * (e.g. `"used ring entry 3"`); `dequeued` is how many buffers the refusing call had already
   * taken ({@linkcode VirtqueueError.dequeued}).
   *
   * @example
   * ```ts
   * import { InFlight } from "./in_flight.ts";
   * const e = new InFlight(8).usedError("rx0", "used descriptor 0", 5, 0, 0);
   * console.assert(e.message === "virtqueue rx0: used descriptor 0: id 5 is not in flight " +
   *   "(returned twice or never made available)");
   * ```
   */
  usedError(
    queue: string,
    where: string,
    id: number,
    len: number,
    dequeued: number,
  ): VirtqueueError {
    let rule: string;
    if (id >= this.size) rule = `id ${id} is out of range (queue size ${this.size})`;
    else if (this.#state[id] === BUF_FREE) {
      rule = `id ${id} is not in flight (returned twice or never made available)`;
    } else rule = `id ${id} len ${len} exceeds the ${this.#posted[id]} bytes the buffer holds`;
    return new VirtqueueError(queue, `${where}: ${rule}`, dequeued);
  }

  /**
   * Ends the flight of id `id` and returns its buffer number; the id is free again.
   *
   * @example
   * ```ts
   * import { BUF_READABLE, InFlight } from "./in_flight.ts";
   * const t = new InFlight(8);
   * console.assert(t.release(t.add(42, 60, BUF_READABLE)) === 42);
   * ```
   */
  release(id: number): number {
    this.#state[id] = BUF_FREE;
    this.#freeIds[this.#numFree++] = id;
    return this.#buf[id];
  }
}
