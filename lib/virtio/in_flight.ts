/**
 * The driver's table of buffers in flight, shared by both layouts' driver sides: which buffer
 * each buffer id names, the length posted with it and whether the device may write it, and the
 * check on every used entry the device returns (virtio 1.2 §2.7.14 split, §2.8.22 packed: the
 * device returns buffers by id, with the bytes it wrote). Nothing the device writes is trusted
 * (as Linux's virtio_ring.c `BAD_RING` checks): the id must be in range and in flight, and the
 * length no more than was posted.
 *
 * ```
 *   enqueue: add(bufs, lens) ──► ids ──► descriptors ──► device
 *   dequeue: used {id, len} in the ring ──► takeUsed ──► bufs, lens
 *                                     └─ stops at a bad entry: usedError(...) names the rule
 * ```
 *
 * Ids come from a stack of free ids, except under VIRTIO_F_IN_ORDER (§2.8.20) where they are
 * the ring slots (`slot` of {@linkcode InFlight.add}) and the stack is not read. The data path
 * works a burst at a time ({@linkcode InFlight.add}, {@linkcode InFlight.takeUsed}), so the
 * per-buffer loops run over locals; the in-order dequeue checks one batch at a time
 * ({@linkcode InFlight.keepsRules}).
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
 * The rule on a used entry `{id, len}` the device returned: the id is in range and in flight,
 * and a device-writable buffer's `len` is no more than was posted (a device-readable buffer's
 * `len` is ignored: the device wrote nothing into it, so 0 is reported).
 */
function keepsRules(
  state: Uint8Array,
  posted: Uint32Array,
  size: number,
  id: number,
  len: number,
): boolean {
  if (id >= size) return false;
  const s = state[id];
  return s === BUF_READABLE || (s === BUF_WRITABLE && len <= posted[id]);
}

/**
 * Buffers in flight by id (0 to `size - 1`), with the rule check on what the device returns.
 * Preallocated: nothing on the data path allocates.
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
  /** The ids the last add took, in order. */
  readonly #ids: Uint16Array;
  #numFree: number;

  /**
   * An empty table: every id free, id 0 taken first.
   *
   * @param size number of ids, 1 to 32768.
   * @example
   * ```ts
   * import { BUF_READABLE, InFlight } from "./in_flight.ts";
   * const t = new InFlight(4);
   * console.assert(t.numFree === 4);
   * ```
   */
  constructor(size: number) {
    this.size = size;
    this.#buf = new Uint32Array(size);
    this.#posted = new Uint32Array(size);
    this.#state = new Uint8Array(size);
    this.#freeIds = new Uint16Array(size);
    this.#ids = new Uint16Array(size);
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
   * Puts `count` buffers in flight: `bufs[offset + i]` posted with `lens[offset + i]` bytes, in
   * `state` (BUF_READABLE or BUF_WRITABLE), each under a free id, or under VIRTIO_F_IN_ORDER
   * (§2.8.20, `slot` given) under the ring slots from `slot` on, wrapping at `size`; a table
   * serves one mode or the other, not both. Returns the ids in `[0, count)` of an array the table
   * reuses. The caller checks {@linkcode numFree} first.
   *
   * @example
   * ```ts
   * import { BUF_READABLE, BUF_WRITABLE, InFlight } from "./in_flight.ts";
   * const t = new InFlight(4);
   * const ids = t.add(new Uint32Array([7, 9]), new Uint32Array([2048, 2048]), 0, 2, BUF_WRITABLE);
   * console.assert(ids[0] === 0 && ids[1] === 1 && t.numFree === 2);
   * const inOrder = new InFlight(4);
   * const slots = inOrder.add(new Uint32Array([7, 9]), new Uint32Array([60, 60]), 0, 2, BUF_READABLE, 3);
   * console.assert(slots[0] === 3 && slots[1] === 0);
   * ```
   */
  add(
    bufs: Uint32Array,
    lens: Uint32Array,
    offset: number,
    count: number,
    state: number,
    slot = -1,
  ): Uint16Array {
    const size = this.size, buf = this.#buf, posted = this.#posted, states = this.#state;
    const freeIds = this.#freeIds, ids = this.#ids;
    const inOrder = slot >= 0;
    let top = this.#numFree;
    for (let i = 0; i < count; i++) {
      let id = slot;
      if (inOrder) {
        if (++slot === size) slot = 0;
      } else id = freeIds[top - 1];
      top--;
      buf[id] = bufs[offset + i];
      posted[id] = lens[offset + i];
      states[id] = state;
      ids[i] = id;
    }
    this.#numFree = top;
    return ids;
  }

  /**
   * Ends the flight of `n` used entries the device wrote into a ring, in order. Entry k sits at
   * slot `(slot + k) mod size`, that is at `ring[(that slot) * stride + ...]`: its id in the low
   * bits `idMask` of word `idAt`, its length in word `lenAt` (split used ring: stride 2, id word
   * 1, all 32 bits, len word 2; packed descriptors: stride 4, id in the low 16 bits of word 3,
   * len word 2). Each entry that keeps the rules (id in range and in flight, length no more than
   * posted) gives its buffer number in `bufs[k]` and the length to report in `lens[k]` (0 for a
   * device-readable buffer). Returns `n`, or the index of the first entry that breaks a rule:
   * that entry and those after it stay in flight ({@linkcode usedError} names the rule).
   *
   * @example
   * ```ts
   * import { BUF_WRITABLE, InFlight } from "./in_flight.ts";
   * const t = new InFlight(4);
   * t.add(new Uint32Array([7, 9]), new Uint32Array([100, 100]), 0, 2, BUF_WRITABLE);
   * // A split used ring of 4 entries {id, len} after its flags/idx word: id 1 then id 0.
   * const used = new Uint32Array([0, 1, 60, 0, 101, 0, 0, 0, 0]);
   * const bufs = new Uint32Array(4), lens = new Uint32Array(4);
   * console.assert(t.takeUsed(used, 0, 2, 1, 0xffffffff, 2, 2, bufs, lens) === 1); // 101 > 100
   * console.assert(bufs[0] === 9 && lens[0] === 60 && t.numFree === 3);
   * ```
   */
  takeUsed(
    ring: Uint32Array,
    slot: number,
    stride: number,
    idAt: number,
    idMask: number,
    lenAt: number,
    n: number,
    bufs: Uint32Array,
    lens: Uint32Array,
  ): number {
    const size = this.size;
    const buf = this.#buf, posted = this.#posted, state = this.#state, freeIds = this.#freeIds;
    let top = this.#numFree;
    let k = 0;
    let w = slot * stride;
    const wEnd = size * stride;
    for (; k < n; k++) {
      const id = (ring[w + idAt] & idMask) >>> 0;
      // The test of keepsRules, written out: a call per entry costs the data path about 10%.
      if (id >= size) break;
      const s = state[id];
      if (s === BUF_FREE) break;
      let len = 0;
      if (s === BUF_WRITABLE) {
        len = ring[w + lenAt];
        if (len > posted[id]) break;
      }
      bufs[k] = buf[id];
      lens[k] = len;
      state[id] = BUF_FREE;
      freeIds[top++] = id;
      w += stride;
      if (w === wEnd) w = 0;
    }
    this.#numFree = top;
    return k;
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
   * True when one used entry `{id, len}` keeps the rules (the check {@linkcode takeUsed} makes
   * on each entry); {@linkcode usedError} names the one it breaks. Changes nothing.
   *
   * @example
   * ```ts
   * import { BUF_WRITABLE, InFlight } from "./in_flight.ts";
   * const t = new InFlight(8);
   * t.add(new Uint32Array([3]), new Uint32Array([100]), 0, 1, BUF_WRITABLE);
   * console.assert(t.keepsRules(0, 60) && !t.keepsRules(0, 101));
   * console.assert(!t.keepsRules(5, 0) && !t.keepsRules(70000, 0));
   * ```
   */
  keepsRules(id: number, len: number): boolean {
    return keepsRules(this.#state, this.#posted, this.size, id, len);
  }

  /**
   * The length to report for a used entry `{id, len}` that keeps the rules: `len` for a writable
   * buffer, 0 for a readable one.
   *
   * @example
   * ```ts
   * import { BUF_READABLE, InFlight } from "./in_flight.ts";
   * const t = new InFlight(8);
   * t.add(new Uint32Array([3]), new Uint32Array([60]), 0, 1, BUF_READABLE);
   * console.assert(t.reportedLen(0, 60) === 0);
   * ```
   */
  reportedLen(id: number, len: number): number {
    return this.#state[id] === BUF_WRITABLE ? len : 0;
  }

  /**
   * Ends the flight of id `id` (in flight) and returns its buffer number.
   *
   * @example
   * ```ts
   * import { BUF_READABLE, InFlight } from "./in_flight.ts";
   * const t = new InFlight(8);
   * const [id] = t.add(new Uint32Array([42]), new Uint32Array([60]), 0, 1, BUF_READABLE);
   * console.assert(t.release(id) === 42 && t.numFree === 8);
   * ```
   */
  release(id: number): number {
    this.#state[id] = BUF_FREE;
    this.#freeIds[this.#numFree++] = id;
    return this.#buf[id];
  }

  /**
   * Every buffer still in flight into `out` (at least `size` long), all ids freed; returns the
   * count. The table is dead afterwards ({@linkcode numFree} stays 0, so nothing is added
   * again): for a device that broke a rule or went away (§2.1.1 DEVICE_NEEDS_RESET).
   *
   * @example
   * ```ts
   * import { BUF_READABLE, InFlight } from "./in_flight.ts";
   * const t = new InFlight(4);
   * t.add(new Uint32Array([7, 9]), new Uint32Array([60, 60]), 0, 2, BUF_READABLE);
   * const out = new Uint32Array(4);
   * console.assert(t.takeAll(out) === 2 && out[0] === 7 && out[1] === 9 && t.numFree === 0);
   * ```
   */
  takeAll(out: Uint32Array): number {
    const state = this.#state, buf = this.#buf;
    let n = 0;
    for (let id = 0; id < this.size; id++) {
      if (state[id] === BUF_FREE) continue;
      state[id] = BUF_FREE;
      out[n++] = buf[id];
    }
    this.#numFree = 0;
    return n;
  }

  /**
   * The error for a used entry `{id, len}` that breaks a rule ({@linkcode takeUsed} stopped at it,
   * or {@linkcode keepsRules} refused it), found at `where` (e.g. `"used ring entry 3"`); `dequeued`
   * is how many buffers the call had already taken ({@linkcode VirtqueueError.dequeued}).
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
}
