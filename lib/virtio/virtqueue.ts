/**
 * One virtqueue interface, two layouts (virtio 1.2 §2.6): the net device above never asks whether
 * it drives a split ring (§2.7) or a packed ring (§2.8).
 *
 * ```
 *   driver (VirtioNet)                         device (backend)
 *   enqueue(bufs) ──► descriptors ───────────► pop chains
 *   dequeue(bufs) ◄── used entries ◄────────── pushUsed / publishUsed
 * ```
 *
 * Buffers are named by small integers (buffer numbers of a {@linkcode BufferTable}), never by
 * objects, so a burst moves through preallocated typed arrays without allocating.
 *
 * This file holds what both layouts and their users share: the {@linkcode DriverQueue} and
 * {@linkcode DeviceQueue} interfaces, {@linkcode VirtqueueError}, {@linkcode DescriptorChain},
 * {@linkcode needEvent} (§2.7.10) and {@linkcode LocalMemory}. Beside it: `split_ring.ts` and
 * `packed_ring.ts` (each layout, driver and device side), `descriptor.ts` (the descriptor
 * format, its flags and the indirect-table walk, §2.7.5 / §2.8.13), `in_flight.ts` (the
 * driver's buffers in flight and its checks on used entries) and `ring_area.ts` (queue sizes
 * and the areas' size and alignment).
 *
 * @module
 */

/**
 * Guest addresses of the packet buffers a queue carries, indexed by buffer number. The address is
 * split in two 32-bit halves so the hot path writes descriptors without `BigInt`.
 */
export interface BufferTable {
  /** Low 32 bits of each buffer's address. */
  readonly addrLo: Uint32Array;
  /** High 32 bits of each buffer's address. */
  readonly addrHi: Uint32Array;
}

/** Where a queue's three areas live, as the backend needs them (vhost-user SET_VRING_ADDR). */
export interface QueueAddresses {
  /** Descriptor table (split) or descriptor ring (packed). */
  readonly desc: number;
  /** Driver area: available ring (split) or driver event suppression (packed). */
  readonly driver: number;
  /** Device area: used ring (split) or device event suppression (packed). */
  readonly device: number;
}

/**
 * The driver's side of a virtqueue. Every buffer is one descriptor (the 12-byte virtio-net header
 * and the frame are contiguous, which VIRTIO_F_VERSION_1 allows: §2.7.4 / §2.8.4 message framing).
 */
export interface DriverQueue {
  /** Queue size (number of descriptors). */
  readonly size: number;
  /** Name used in error messages, e.g. `rx0`. */
  readonly name: string;
  /** Areas to hand to the backend. */
  readonly addresses: QueueAddresses;
  /**
   * Buffers the driver may still enqueue before the queue is full (Linux's vring `num_free`);
   * `size - numFree` buffers are in flight.
   */
  readonly numFree: number;
  /**
   * Makes `n` buffers available to the device in one publish: `bufs[offset + i]` with
   * `lens[offset + i]` bytes; `writable` marks them device-writable (receive queues).
   * Returns how many were added (fewer than `n` when the queue fills). Does not notify.
   */
  enqueue(
    bufs: Uint32Array,
    lens: Uint32Array,
    offset: number,
    n: number,
    writable: boolean,
  ): number;
  /**
   * Takes up to `max` used buffers: their numbers into `bufs[0..]` and the bytes the device wrote
   * into `lens[0..]` (0 for device-readable buffers). Returns the count.
   *
   * Throws {@linkcode VirtqueueError} when the device broke a rule: a used id out of range or not
   * in flight, a length above what was posted, more entries than buffers in flight. Buffers the
   * call took before the bad entry are not lost: the error's
   * {@linkcode VirtqueueError.dequeued} says how many are in `bufs` / `lens`, and they are the
   * caller's as if returned. The queue stays at the bad entry, so a later call reads it again
   * (and throws again, `dequeued` 0, unless the device rewrote it): the ring is broken until the
   * device is reset.
   */
  dequeue(bufs: Uint32Array, lens: Uint32Array, max: number): number;
  /**
   * Writes every buffer still in flight (made available, not yet used) into `out` and forgets
   * them; returns the count. For a dead or broken device (virtio 1.2 §2.1.1 DEVICE_NEEDS_RESET):
   * the buffers come back to the driver and the queue must not be used again.
   */
  takeInFlight(out: Uint32Array): number;
  /**
   * True when the device asked to be notified of what was enqueued since the last call (its event
   * suppression state; §2.7.10 / §2.8.10). Call once per burst, after `enqueue`.
   */
  needsNotify(): boolean;
  /** Asks the device to send (or stop sending) used-buffer notifications. */
  setInterrupts(enabled: boolean): void;
  /**
   * True when a used buffer waits for {@linkcode dequeue} (which this does not take). After
   * `setInterrupts(true)`, check this once before sleeping on the call eventfd.
   */
  hasUsed(): boolean;
  /**
   * The driver's next avail position, with wrap for packed rings (vhost SET_VRING_BASE
   * encoding). The device starts reading at the base it is given, so read this *before*
   * enqueueing anything the device must see (e.g. the initial receive buffers).
   */
  readonly base: number;
}

/** Error raised when a peer breaks a virtqueue rule; the message names the rule. */
export class VirtqueueError extends Error {
  /**
   * Thrown by {@linkcode DriverQueue.dequeue}: how many buffers the call had taken before it
   * reached the entry that broke the rule. They are in `bufs[0..dequeued)` / `lens[0..dequeued)`
   * and are the caller's, as if the call had returned `dequeued`. 0 for every other error.
   */
  readonly dequeued: number;

  /**
   * Creates the error; the message reads `virtqueue <queue>: <rule>`.
   *
   * @param queue queue name.
   * @param rule the rule broken.
   * @param dequeued see {@linkcode VirtqueueError.dequeued} (default 0).
   * @example
   * ```ts
   * import { VirtqueueError } from "./virtqueue.ts";
   * const e = new VirtqueueError("rx", "used id 70000 is out of range (queue size 256)");
   * console.assert(e.message.startsWith("virtqueue rx:") && e.dequeued === 0);
   * ```
   */
  constructor(queue: string, rule: string, dequeued = 0) {
    super(`virtqueue ${queue}: ${rule}`);
    this.name = "VirtqueueError";
    this.dequeued = dequeued;
  }
}

/**
 * Maps the driver's addresses to memory the device can read (the vhost-user memory table on the
 * device side; identity for in-process tests). Every descriptor the device follows goes through
 * {@linkcode translate}, so nothing outside a mapping is ever read or written.
 */
export interface AddressTranslator {
  /**
   * Finds the region holding all of `[addr, addr + len)`, where `addr = addrHi * 2**32 + addrLo`.
   * Returns the region number and leaves the byte offset inside it in {@linkcode offset}, or
   * returns -1 when no single region holds the whole range. `addrLo` and `len` are 32-bit
   * values that callers on the data path pass as `x | 0` (signed, so they cross the call
   * without a heap number when it is not inlined); implementations read them with `>>> 0`.
   */
  translate(addrLo: number, addrHi: number, len: number): number;
  /** Byte offset set by the last successful {@linkcode translate}. */
  offset: number;
  /** Bytes of region `r` (its views start at the region's first byte). */
  bytes(r: number): Uint8Array;
}

/**
 * A descriptor chain the device took from a queue, translated and checked, in preallocated arrays
 * (one instance is reused for every chain).
 */
export class DescriptorChain {
  /** Buffer id to return in the used entry. */
  id = 0;
  /** Number of segments filled in. */
  count = 0;
  /** Region number of each segment (see {@linkcode AddressTranslator}). */
  readonly region: Uint32Array;
  /** Byte offset of each segment inside its region. */
  readonly offset: Float64Array;
  /** Length of each segment in bytes. */
  readonly len: Uint32Array;
  /** 1 when the segment is device-writable (VIRTQ_DESC_F_WRITE), else 0. */
  readonly writable: Uint8Array;

  /**
   * Preallocates room for `maxSegments` segments (give it the queue size).
   *
   * @param maxSegments the longest chain accepted (the queue size bounds it: §2.7.5.3.1).
   * @example
   * ```ts
   * import { DescriptorChain } from "./virtqueue.ts";
   * const chain = new DescriptorChain(256);
   * console.assert(chain.count === 0);
   * ```
   */
  constructor(maxSegments: number) {
    this.region = new Uint32Array(maxSegments);
    this.offset = new Float64Array(maxSegments);
    this.len = new Uint32Array(maxSegments);
    this.writable = new Uint8Array(maxSegments);
  }
}

/** The device's side of a virtqueue: take available chains, return used ones. */
export interface DeviceQueue {
  /** Queue size. */
  readonly size: number;
  /**
   * Takes the next available chain into `chain` (following NEXT and INDIRECT, translating every
   * segment). Returns false when none is available. Throws {@linkcode VirtqueueError} naming the
   * rule when the driver broke one (segment outside memory, loop, chain longer than the queue,
   * nested indirect table, id out of range).
   */
  pop(chain: DescriptorChain): boolean;
  /** Returns the chain `id` with `len` bytes written; visible to the driver at `publishUsed`. */
  pushUsed(id: number, len: number): void;
  /** Publishes every used entry pushed since the last call with one release store. */
  publishUsed(): void;
  /** True when the driver asked to be notified of what was published since the last call. */
  needsCall(): boolean;
  /** Asks the driver to send (or stop sending) available-buffer notifications (kicks). */
  setNotifications(enabled: boolean): void;
  /**
   * True when an available chain waits for {@linkcode pop} (which this does not take). After
   * `setNotifications(true)`, check this once before sleeping on the kick eventfd.
   */
  hasAvail(): boolean;
  /** Position for vhost GET_VRING_BASE: next avail index to read, with wrap for packed rings. */
  readonly base: number;
  /**
   * The full GET_VRING_BASE value: split = {@linkcode base}; packed = base in bits 0-15, used
   * index and used wrap counter in bits 16-31 (vhost-user.rst).
   */
  readonly vringBase: number;
}

/**
 * Byte sizes and offsets of a ring's three areas when the ring is placed in one contiguous block
 * (offsets from the block's first byte; the block itself must start at a 64-byte boundary).
 * Returned by `packedRingLayout` and `splitRingLayout`.
 */
export interface RingLayout {
  /** Offset of the descriptor table (split) or descriptor ring (packed). */
  readonly descOffset: number;
  /** Bytes of the descriptor area. */
  readonly descSize: number;
  /** Offset of the driver area: available ring (split) or driver event suppression (packed). */
  readonly driverOffset: number;
  /** Bytes of the driver area. */
  readonly driverSize: number;
  /** Offset of the device area: used ring (split) or device event suppression (packed). */
  readonly deviceOffset: number;
  /** Bytes of the device area. */
  readonly deviceSize: number;
  /** Bytes of the whole block. */
  readonly byteLength: number;
}

/**
 * The event index test of virtio 1.2 §2.7.10 (`vring_need_event`): true when a peer that asked to
 * be notified once entry `eventIdx` is reached must be notified now that the index moved from
 * `oldIdx` to `newIdx`, i.e. when `eventIdx` lies in `[oldIdx, newIdx)` modulo 2^16.
 *
 * @example
 * ```ts
 * import { needEvent } from "./virtqueue.ts";
 * console.assert(needEvent(5, 8, 4));      // 5 is in [4, 8)
 * console.assert(!needEvent(8, 8, 4));     // 8 is not reached yet
 * console.assert(needEvent(0xffff, 2, 0xfffe)); // across the 16-bit wrap
 * ```
 */
export function needEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

/**
 * An {@linkcode AddressTranslator} over one block of this process's memory that starts at address
 * `base`: addresses in `[base, base + bytes.length)` translate to region 0. For in-process devices
 * and tests, where driver and device share an address space.
 */
export class LocalMemory implements AddressTranslator {
  /** Byte offset set by the last successful {@linkcode translate}. */
  offset = 0;
  readonly #bytes: Uint8Array;
  readonly #base: number;

  /**
   * Maps `[base, base + bytes.length)` to region 0.
   *
   * @param bytes the memory block (region 0).
   * @param base the address of `bytes[0]` as it appears in descriptors (below 2^53).
   * @example
   * ```ts
   * import { LocalMemory } from "./virtqueue.ts";
   * const mem = new LocalMemory(new Uint8Array(4096), 0x1_0000_0000);
   * console.assert(mem.translate(0x100, 1, 64) === 0 && mem.offset === 0x100);
   * console.assert(mem.translate(0xfc0, 1, 65) === -1); // runs past the end
   * ```
   */
  constructor(bytes: Uint8Array, base: number) {
    if (!Number.isSafeInteger(base) || base < 0) {
      throw new RangeError(`LocalMemory base ${base} must be a non-negative safe integer`);
    }
    this.#bytes = bytes;
    this.#base = base;
  }

  /**
   * Region 0 when `[addr, addr + len)` lies inside the block, else -1.
   *
   * @example
   * ```ts
   * import { LocalMemory } from "./virtqueue.ts";
   * const mem = new LocalMemory(new Uint8Array(256), 0x1000);
   * console.assert(mem.translate(0x1010, 0, 16) === 0 && mem.offset === 0x10);
   * console.assert(mem.translate(0xfff, 0, 1) === -1);
   * ```
   */
  translate(addrLo: number, addrHi: number, len: number): number {
    len >>>= 0;
    const off = addrHi * 0x1_0000_0000 + (addrLo >>> 0) - this.#base;
    if (off < 0 || off > this.#bytes.length - len) return -1;
    this.offset = off;
    return 0;
  }

  /**
   * The block (only region 0 exists).
   *
   * @example
   * ```ts
   * import { LocalMemory } from "./virtqueue.ts";
   * const block = new Uint8Array(64);
   * console.assert(new LocalMemory(block, 0).bytes(0) === block);
   * ```
   */
  bytes(_r: number): Uint8Array {
    return this.#bytes;
  }
}
