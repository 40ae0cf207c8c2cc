/**
 * The packed virtqueue (virtio 1.2 §2.8): one ring of 16-byte descriptors that the driver makes
 * available and the device overwrites as used, plus one 4-byte event suppression structure per
 * side.
 *
 * ```
 *   PackedDriverQueue ── desc ring (AVAIL = wrap, USED = !wrap) ──► PackedDeviceQueue.pop
 *   PackedDriverQueue.dequeue ◄── same slots (AVAIL = USED = wrap) ◄── pushUsed / publishUsed
 * ```
 *
 * Descriptor: addr u64 @0 (two u32 halves), len u32 @8, id u16 @12, flags u16 @14 (§2.8.13).
 * Event suppression: off_wrap u16 @0, flags u16 @2 (§2.8.14), read and written as one u32.
 * Fields are little-endian as virtio 1.x requires; typed arrays use the host order, so this runs
 * on little-endian hosts (x86-64, arm64).
 *
 * Only what the layout's spec says is written here; the descriptor flags and the indirect-table
 * walk (`descriptor.ts`), the driver's buffers in flight (`in_flight.ts`) and the size and area
 * checks (`ring_area.ts`) are shared with the other layout.
 *
 * @module
 */

import {
  chainRoomError,
  DESC_BYTES,
  DESC_F_INDIRECT,
  DESC_F_NEXT,
  DESC_F_WRITE,
  type IndirectFormat,
  outsideMemoryRule,
  readIndirect,
  setSegment,
} from "./descriptor.ts";
import { BUF_FREE, BUF_READABLE, BUF_WRITABLE, InFlight } from "./in_flight.ts";
import {
  alignUp,
  AREA_ALIGN,
  checkQueueSize,
  checkRingAddress,
  checkRingArea,
} from "./ring_area.ts";
import {
  type AddressTranslator,
  type BufferTable,
  type DescriptorChain,
  type DeviceQueue,
  type DriverQueue,
  needEvent,
  type QueueAddresses,
  type RingLayout,
  VirtqueueError,
} from "./virtqueue.ts";

const DESC_F_AVAIL = 1 << 7;
const DESC_F_USED = 1 << 15;
const AVAIL_USED = DESC_F_AVAIL | DESC_F_USED;
/** Device side: a chain in flight has a device-writable segment (a bit above its descriptor count). */
const CHAIN_WRITABLE = 1 << 16;

const EVENT_FLAG_ENABLE = 0;
const EVENT_FLAG_DISABLE = 1;
const EVENT_FLAG_DESC = 2;

/**
 * Packed indirect tables (§2.8.7): flags at byte 14, every entry used in order (NEXT and id
 * ignored).
 */
export const PACKED_INDIRECT_TABLE: IndirectFormat = {
  flagsAt: 14,
  linked: false,
  lengthSection: "§2.8.7",
  nestedSection: "§2.8.19",
};

/**
 * Sizes and offsets of a packed ring of `size` descriptors placed in one block: descriptor ring
 * (16-byte aligned, §2.8.10.1), driver event suppression, device event suppression (4 bytes each,
 * 4-byte aligned). Each area starts on a 64-byte boundary.
 *
 * @example
 * ```ts
 * import { packedRingLayout } from "./packed_ring.ts";
 * const l = packedRingLayout(256);
 * console.assert(l.descSize === 4096 && l.driverOffset === 4096 && l.deviceOffset === 4160);
 * ```
 */
export function packedRingLayout(size: number): RingLayout {
  checkQueueSize(size, true);
  const descSize = size * DESC_BYTES;
  const driverOffset = alignUp(descSize, AREA_ALIGN);
  const deviceOffset = driverOffset + AREA_ALIGN;
  return {
    descOffset: 0,
    descSize,
    driverOffset,
    driverSize: 4,
    deviceOffset,
    deviceSize: 4,
    byteLength: deviceOffset + AREA_ALIGN,
  };
}

/**
 * Event suppression, the same rule for both sides (§2.8.10): does the peer whose suppression
 * word is `event` (off_wrap | flags << 16) want a notification now that this side moved
 * `advanced` slots to position `pos` in lap `wrap`? With DESC (only under EVENT_IDX) the peer
 * asked to hear when slot `off` of lap `off_wrap >> 15` is passed.
 */
function wantsEvent(
  event: number,
  eventIdx: boolean,
  size: number,
  pos: number,
  wrap: number,
  advanced: number,
): boolean {
  const flags = event >>> 16;
  if (flags !== EVENT_FLAG_DESC || !eventIdx) return flags !== EVENT_FLAG_DISABLE;
  if (advanced >= size) return true;
  let off = event & 0x7fff;
  if ((event >>> 15 & 1) !== wrap) off -= size;
  return needEvent(off, pos, pos - advanced);
}

/** The rule broken by a used descriptor whose AVAIL/USED bits fit neither lap (§2.8.1). */
function wrongPolarity(pos: number, flags: number, wrap: number): string {
  return `used descriptor ${pos}: flags 0x${flags.toString(16)} have the wrong wrap polarity ` +
    `(AVAIL=${flags >> 7 & 1} USED=${flags >> 15 & 1}; the used wrap counter is ${wrap}, so ` +
    `a used descriptor has both ${wrap}, one still available AVAIL=${wrap} USED=${wrap ^ 1})`;
}

/** Options of {@linkcode PackedDriverQueue}. */
export interface PackedDriverOptions {
  /** Guest addresses of the buffers, by buffer number. */
  buffers: BufferTable;
  /** Addresses of the three areas, handed to the backend (checked for alignment). */
  addresses: QueueAddresses;
  /** VIRTIO_F_RING_EVENT_IDX was negotiated: event suppression may use descriptor offsets. */
  eventIdx?: boolean;
  /** Start position in the vhost SET_VRING_BASE encoding (default `1 << 15`: index 0, wrap 1). */
  base?: number;
  /**
   * VIRTIO_F_IN_ORDER was negotiated (§2.8.20): buffer ids are ring positions, and one used
   * descriptor may stand for a whole batch.
   */
  inOrder?: boolean;
  /**
   * `false`: the areas already hold a fresh ring at `base`, reset by an earlier instance over the
   * same memory (another thread's) that enqueued nothing; take it over as it is, keeping what
   * the device wrote since (its event suppression flags). Default true: reset the areas.
   */
  reset?: boolean;
  /**
   * Every buffer is an indirect table of packed descriptors (§2.8.13; the control queue's
   * commands): each is posted with DESC_F_INDIRECT, and its writable parts are in the table.
   */
  indirect?: boolean;
}

/**
 * The driver side of a packed ring. Every buffer is one descriptor; buffer ids come from the free
 * ids of its {@linkcode InFlight} table (under VIRTIO_F_IN_ORDER the id is the ring slot).
 */
export class PackedDriverQueue implements DriverQueue {
  /** Queue size (descriptors in the ring). */
  readonly size: number;
  /** Areas to hand to the backend. */
  readonly addresses: QueueAddresses;
  /** Name used in error messages. */
  readonly name: string;

  readonly #desc32: Uint32Array; // addr lo [4i], addr hi [4i+1], len [4i+2]
  readonly #desc16: Uint16Array; // id [8i+6], flags [8i+7]
  readonly #driverEvent: Uint32Array; // off_wrap | flags << 16, written by us
  readonly #deviceEvent: Uint32Array; // off_wrap | flags << 16, written by the device
  readonly #addrLo: Uint32Array;
  readonly #addrHi: Uint32Array;
  readonly #eventIdx: boolean;
  readonly #inOrder: boolean;
  /** DESC_F_INDIRECT when every buffer is an indirect table, else 0. */
  readonly #indirect: number;
  /** In-order: ring position of the last buffer the current used batch covers, or -1. */
  #batchEnd = -1;
  /** In-order: the length the device wrote for that last buffer. */
  #batchLen = 0;

  /** Buffers in flight by buffer id. */
  readonly #inFlight: InFlight;

  #availPos: number;
  #availWrap: number;
  #usedPos: number;
  #usedWrap: number;
  /** Descriptors made available since the last needsNotify. */
  #added = 0;
  /** Driver event flags are DESC: keep off_wrap at the next used slot. */
  #interruptDesc = false;

  /**
   * Resets the three areas (the ring starts empty) and takes ownership of them.
   *
   * @param desc descriptor ring, at least `16 * size` bytes, 16-byte aligned.
   * @param driver driver event suppression area (4 bytes, 4-byte aligned).
   * @param device device event suppression area (4 bytes, 4-byte aligned).
   * @param size 1 to 32768 (any value, §2.8).
   * @param name queue name for error messages, e.g. `"rx0"`.
   * @example
   * ```ts
   * import { PackedDriverQueue, packedRingLayout } from "./packed_ring.ts";
   * const l = packedRingLayout(8);
   * const mem = new Uint8Array(l.byteLength);
   * const base = 0x10000000;
   * const q = new PackedDriverQueue(
   *   mem.subarray(l.descOffset, l.descOffset + l.descSize),
   *   mem.subarray(l.driverOffset, l.driverOffset + l.driverSize),
   *   mem.subarray(l.deviceOffset, l.deviceOffset + l.deviceSize),
   *   8,
   *   "tx0",
   *   {
   *     buffers: { addrLo: new Uint32Array([0x20000000]), addrHi: new Uint32Array(1) },
   *     addresses: { desc: base, driver: base + l.driverOffset, device: base + l.deviceOffset },
   *   },
   * );
   * console.assert(q.enqueue(new Uint32Array([0]), new Uint32Array([60]), 0, 1, false) === 1);
   * console.assert(q.numFree === 7 && q.base === (1 | 1 << 15));
   * ```
   */
  constructor(
    desc: Uint8Array,
    driver: Uint8Array,
    device: Uint8Array,
    size: number,
    name: string,
    options: PackedDriverOptions,
  ) {
    const { buffers, addresses } = options;
    const views = packedViews(desc, driver, device, size, name, addresses);
    this.size = size;
    this.name = name;
    this.addresses = addresses;
    this.#desc32 = views.desc32;
    this.#desc16 = views.desc16;
    this.#driverEvent = views.driverEvent;
    this.#deviceEvent = views.deviceEvent;
    this.#addrLo = buffers.addrLo;
    this.#addrHi = buffers.addrHi;
    this.#eventIdx = options.eventIdx ?? false;
    this.#inOrder = options.inOrder ?? false;
    this.#indirect = options.indirect ? DESC_F_INDIRECT : 0;

    const base = checkPackedBase(name, "base", options.base ?? 1 << 15, size);
    this.#availPos = this.#usedPos = base & 0x7fff;
    this.#availWrap = this.#usedWrap = base >>> 15;

    this.#inFlight = new InFlight(size); // id 0 first

    // A fresh ring: no descriptor is available or used in either wrap (§2.8.1), both event
    // suppression structures at ENABLE.
    if (options.reset === false) return;
    this.#desc32.fill(0);
    this.#driverEvent[0] = 0;
    this.#deviceEvent[0] = 0;
  }

  /** Buffers that may still be enqueued. */
  get numFree(): number {
    return this.#inFlight.numFree;
  }

  /** Next avail position, vhost SET_VRING_BASE encoding: bits 0-14 index, bit 15 wrap counter. */
  get base(): number {
    return this.#availPos | this.#availWrap << 15;
  }

  /**
   * Makes up to `n` buffers available in one publish (§2.8.21). Returns how many were added.
   *
   * @example
   * ```ts ignore
   * const added = queue.enqueue(bufs, lens, 0, 32, true); // receive buffers
   * if (queue.needsNotify()) kick();
   * ```
   */
  enqueue(
    bufs: Uint32Array,
    lens: Uint32Array,
    offset: number,
    n: number,
    writable: boolean,
  ): number {
    const inFlight = this.#inFlight;
    const count = n < inFlight.numFree ? n : inFlight.numFree;
    if (count <= 0) return 0;
    const size = this.size;
    const d32 = this.#desc32, d16 = this.#desc16;
    const addrLo = this.#addrLo, addrHi = this.#addrHi;
    const state = writable ? BUF_WRITABLE : BUF_READABLE;
    // An indirect table's descriptor carries INDIRECT; its entries say what is writable.
    const writeFlag = this.#indirect !== 0 ? this.#indirect : writable ? DESC_F_WRITE : 0;
    let pos = this.#availPos;
    let wrap = this.#availWrap;
    // In order, the id is the slot: buffers are used in the order they were made available.
    const ids = inFlight.add(bufs, lens, offset, count, state, this.#inOrder ? pos : -1);
    const first = pos;
    let firstFlags = 0;
    for (let i = 0; i < count; i++) {
      const buf = bufs[offset + i];
      const id = ids[i];
      const w = pos << 2;
      d32[w] = addrLo[buf];
      d32[w + 1] = addrHi[buf];
      d32[w + 2] = lens[offset + i];
      d16[(pos << 3) + 6] = id;
      // §2.8.1: available = AVAIL bit equal to the driver's wrap counter, USED bit its inverse.
      const flags = writeFlag | (wrap ? DESC_F_AVAIL : DESC_F_USED);
      // The device reads a slot only after the one before it is available, so the flags of all
      // but the first slot may be written as we go; the first one waits for the end.
      if (i === 0) firstFlags = flags;
      else d16[(pos << 3) + 7] = flags;
      if (++pos === size) {
        pos = 0;
        wrap ^= 1;
      }
    }
    // §2.8.21.2: the driver makes the first descriptor available last; the release store orders
    // every descriptor written above before the device can see it.
    Atomics.store(d16, (first << 3) + 7, firstFlags);
    this.#availPos = pos;
    this.#availWrap = wrap;
    this.#added += count;
    return count;
  }

  /**
   * Takes up to `max` used buffers (§2.8.22), checking each id the device returned.
   *
   * @example
   * ```ts ignore
   * const n = queue.dequeue(bufs, lens, 32); // bufs[0..n), lens[0..n)
   * ```
   */
  dequeue(bufs: Uint32Array, lens: Uint32Array, max: number): number {
    if (this.#inOrder) return this.#dequeueInOrder(bufs, lens, max);
    const size = this.size;
    const inFlight = this.#inFlight;
    const d32 = this.#desc32, d16 = this.#desc16;
    const start = this.#usedPos, startWrap = this.#usedWrap;
    let pos = start;
    let wrap = startWrap;
    // At most one used descriptor per buffer in flight (none in flight: no slot to look at).
    const outstanding = size - inFlight.numFree;
    const limit = max < outstanding ? max : outstanding;
    let n = 0;
    let polarity = -1; // flags of a slot with the wrong wrap polarity, if the scan met one
    while (n < limit) {
      // §2.8.1: used = AVAIL and USED both equal the driver's used wrap counter. The acquire load
      // orders the id/len reads after the device's flags store.
      const flags = Atomics.load(d16, (pos << 3) + 7);
      if ((flags & AVAIL_USED) !== (wrap ? AVAIL_USED : 0)) {
        // Not used yet: the slot must still read as we made it available (§2.8.1); anything
        // else is a used descriptor written with the wrong wrap polarity.
        if ((flags & AVAIL_USED) !== (wrap ? DESC_F_AVAIL : DESC_F_USED)) {
          polarity = flags;
        }
        break;
      }
      n++;
      // One descriptor per buffer, so the next used slot is the next one (§2.8.6).
      if (++pos === size) {
        pos = 0;
        wrap ^= 1;
      }
    }
    // Descriptors are 4 words: len at word 2, id in the low half of word 3 (§2.8.13).
    const taken = inFlight.takeUsed(d32, start, 4, 3, 0xffff, 2, n, bufs, lens);
    if (taken < n) {
      // Stay at the bad descriptor.
      pos = start + taken;
      wrap = startWrap;
      if (pos >= size) pos -= size, wrap ^= 1;
      this.#usedPos = pos, this.#usedWrap = wrap;
      const where = `used descriptor ${pos}`;
      const id = d16[(pos << 3) + 6], len = d32[(pos << 2) + 2];
      throw inFlight.usedError(this.name, where, id, len, taken);
    }
    if (polarity >= 0) {
      this.#endDequeue(pos, wrap, n); // the n good ones are the caller's (VirtqueueError.dequeued)
      throw new VirtqueueError(this.name, wrongPolarity(pos, polarity, wrap), n);
    }
    return this.#endDequeue(pos, wrap, n);
  }

  /**
   * Every buffer in flight into `out` (at least `size` long), forgotten by the ring; returns the
   * count. The ring is dead afterwards (a broken or departed device).
   *
   * @example
   * ```ts ignore
   * pool.reclaim(out, 0, queue.takeInFlight(out));
   * ```
   */
  takeInFlight(out: Uint32Array): number {
    this.#batchEnd = -1;
    return this.#inFlight.takeAll(out);
  }

  /** Saves the used position after a dequeue; re-arms DESC interrupts. */
  #endDequeue(pos: number, wrap: number, n: number): number {
    this.#usedPos = pos;
    this.#usedWrap = wrap;
    if (n !== 0 && this.#interruptDesc) {
      // §2.8.10: ask for the next used slot; seq_cst store, so a following dequeue's flag load
      // cannot move before it (no lost interrupt).
      Atomics.store(this.#driverEvent, 0, EVENT_FLAG_DESC << 16 | pos | wrap << 15);
    }
    return n;
  }

  /**
   * {@linkcode dequeue} under VIRTIO_F_IN_ORDER (§2.8.20): a used descriptor with id X at slot p
   * returns every buffer from p to X; the device wrote only that one descriptor.
   */
  #dequeueInOrder(bufs: Uint32Array, lens: Uint32Array, max: number): number {
    const size = this.size;
    const inFlight = this.#inFlight;
    const d32 = this.#desc32, d16 = this.#desc16;
    let pos = this.#usedPos;
    let wrap = this.#usedWrap;
    let end = this.#batchEnd;
    let n = 0;
    while (n < max && inFlight.numFree !== size) {
      if (end < 0) {
        // §2.8.1 used test, acquire load: id/len are read after the device's flags store.
        const flags = Atomics.load(d16, (pos << 3) + 7);
        if ((flags & AVAIL_USED) !== (wrap ? AVAIL_USED : 0)) {
          // Still available as we wrote it (§2.8.1), or used with the wrong wrap polarity.
          if ((flags & AVAIL_USED) !== (wrap ? DESC_F_AVAIL : DESC_F_USED)) {
            this.#usedPos = pos, this.#usedWrap = wrap, this.#batchEnd = -1;
            throw new VirtqueueError(this.name, wrongPolarity(pos, flags, wrap), n);
          }
          break;
        }
        const id = d16[(pos << 3) + 6];
        const count = id >= pos ? id - pos + 1 : id + size - pos + 1;
        const outstanding = size - inFlight.numFree;
        if (id >= size || count > outstanding || inFlight.stateOf(id) === BUF_FREE) {
          this.#usedPos = pos, this.#usedWrap = wrap;
          throw new VirtqueueError(
            this.name,
            `used descriptor ${pos}: in-order id ${id} does not name a buffer in flight ` +
              `(${outstanding} in flight from slot ${pos}, queue size ${size})`,
            n,
          );
        }
        const len = d32[(pos << 2) + 2];
        if (!inFlight.keepsRules(id, len)) {
          this.#usedPos = pos, this.#usedWrap = wrap;
          throw inFlight.usedError(this.name, `used descriptor ${pos}`, id, len, n);
        }
        end = id;
        this.#batchLen = inFlight.reportedLen(id, len);
      }
      if (pos !== end && inFlight.stateOf(pos) === BUF_WRITABLE) {
        this.#usedPos = pos, this.#usedWrap = wrap, this.#batchEnd = -1;
        throw new VirtqueueError(
          this.name,
          `in-order batch ending at ${end} skips receive buffer ${pos}, whose length is unknown`,
          n,
        );
      }
      bufs[n] = inFlight.release(pos);
      lens[n] = pos === end ? this.#batchLen : 0;
      n++;
      if (pos === end) end = -1;
      if (++pos === size) {
        pos = 0;
        wrap ^= 1;
      }
    }
    this.#batchEnd = end;
    return this.#endDequeue(pos, wrap, n);
  }

  /**
   * True when the device wants a notification for what was enqueued since the last call
   * (§2.8.21.3 / §2.8.10).
   *
   * @example
   * ```ts ignore
   * if (queue.enqueue(bufs, lens, 0, n, false) > 0 && queue.needsNotify()) kick();
   * ```
   */
  needsNotify(): boolean {
    const added = this.#added;
    this.#added = 0;
    if (added === 0) return false;
    // Full barrier between publishing the flags and reading the device's suppression state
    // (§2.8.21.3): enqueue's Atomics.store is sequentially consistent, so this load cannot be
    // reordered before it. off_wrap and flags are read as one 32-bit snapshot.
    const event = Atomics.load(this.#deviceEvent, 0);
    return wantsEvent(event, this.#eventIdx, this.size, this.#availPos, this.#availWrap, added);
  }

  /**
   * Asks the device for used-buffer notifications or not (driver event suppression, §2.8.10).
   * After enabling, dequeue once more: buffers used before the device saw the change raise none.
   *
   * @example
   * ```ts ignore
   * queue.setInterrupts(false); // poll mode
   * ```
   */
  setInterrupts(enabled: boolean): void {
    this.#interruptDesc = enabled && this.#eventIdx;
    let word = EVENT_FLAG_DISABLE << 16;
    if (this.#interruptDesc) {
      word = EVENT_FLAG_DESC << 16 | this.#usedPos | this.#usedWrap << 15;
    } else if (enabled) word = EVENT_FLAG_ENABLE << 16;
    // seq_cst: ordered before the caller's next dequeue flag load.
    Atomics.store(this.#driverEvent, 0, word);
  }

  /**
   * True when the device has used a buffer {@linkcode dequeue} has not taken yet (§2.8.22; Linux's
   * virtqueue_poll). Takes nothing. Call after `setInterrupts(true)` before sleeping: the
   * seq_cst store there orders this acquire load after it, so a buffer used before the device
   * saw the change is seen here instead of being waited for.
   */
  hasUsed(): boolean {
    if (this.#batchEnd >= 0) return true; // in order: the rest of a batch already seen
    if (this.#inFlight.numFree === this.size) return false;
    const flags = Atomics.load(this.#desc16, (this.#usedPos << 3) + 7);
    return (flags & AVAIL_USED) === (this.#usedWrap ? AVAIL_USED : 0);
  }
}

/** Options of {@linkcode PackedDeviceQueue}. */
export interface PackedDeviceOptions {
  /** Translates the driver's addresses (descriptors and indirect tables). */
  memory: AddressTranslator;
  /** VIRTIO_F_RING_EVENT_IDX was negotiated. */
  eventIdx?: boolean;
  /** Start position from vhost SET_VRING_BASE: bits 0-14 index, bit 15 wrap (default `1 << 15`). */
  base?: number;
  /**
   * VIRTIO_F_IN_ORDER was negotiated (§2.8.20): the device uses buffers in the order they were
   * made available (the caller's promise), and the used descriptors of device-readable buffers
   * pushed between two publishes are written as one, naming the last buffer.
   */
  inOrder?: boolean;
}

/**
 * The device side of a packed ring: reads what the driver made available, checks it, and writes
 * used descriptors back. Every address goes through the {@linkcode AddressTranslator}; nothing
 * the driver wrote is trusted.
 */
export class PackedDeviceQueue implements DeviceQueue {
  /** Queue size. */
  readonly size: number;
  /** Name used in error messages. */
  readonly name: string;

  readonly #desc32: Uint32Array;
  readonly #desc16: Uint16Array;
  readonly #driverEvent: Uint32Array; // written by the driver
  readonly #deviceEvent: Uint32Array; // written by us
  readonly #memory: AddressTranslator;
  readonly #eventIdx: boolean;
  readonly #inOrder: boolean;
  /**
   * Ring descriptors of each chain in flight, by buffer id (0 = not in flight), plus
   * {@linkcode CHAIN_WRITABLE} when a segment is device-writable.
   */
  readonly #chainDescs: Uint32Array;
  /** In order: slot of the unpublished used descriptor that the next readable buffer joins, or -1. */
  #batchSlot = -1;

  #availPos: number;
  #availWrap: number;
  #usedPos: number;
  #usedWrap: number;
  /** Used entries pushed but not published: the first one's slot and flags. */
  #pending = 0;
  #firstSlot = 0;
  #firstFlags = 0;
  /** Ring slots the used position advanced since the last needsCall. */
  #advanced = 0;
  /** Device event flags are DESC: keep off_wrap at the next avail slot. */
  #notifyDesc = false;
  /** off_wrap last written in DESC mode. */
  #armed = -1;

  /**
   * Reads and writes the driver's areas (they are not reset).
   *
   * @param desc descriptor ring, at least `16 * size` bytes, 16-byte aligned.
   * @param driver driver event suppression area (4 bytes, 4-byte aligned).
   * @param device device event suppression area (4 bytes, 4-byte aligned).
   * @param size 1 to 32768, as set by vhost SET_VRING_NUM.
   * @param name queue name for error messages.
   * @example
   * ```ts
   * import { PackedDeviceQueue, packedRingLayout } from "./packed_ring.ts";
   * import { DescriptorChain, LocalMemory } from "./virtqueue.ts";
   * const l = packedRingLayout(8);
   * const mem = new Uint8Array(l.byteLength);
   * const q = new PackedDeviceQueue(
   *   mem.subarray(l.descOffset, l.descOffset + l.descSize),
   *   mem.subarray(l.driverOffset, l.driverOffset + l.driverSize),
   *   mem.subarray(l.deviceOffset, l.deviceOffset + l.deviceSize),
   *   8,
   *   "tx0",
   *   { memory: new LocalMemory(mem, 0x10000000) },
   * );
   * console.assert(!q.pop(new DescriptorChain(8))); // nothing available yet
   * ```
   */
  constructor(
    desc: Uint8Array,
    driver: Uint8Array,
    device: Uint8Array,
    size: number,
    name: string,
    options: PackedDeviceOptions,
  ) {
    const views = packedViews(desc, driver, device, size, name);
    this.size = size;
    this.name = name;
    this.#desc32 = views.desc32;
    this.#desc16 = views.desc16;
    this.#driverEvent = views.driverEvent;
    this.#deviceEvent = views.deviceEvent;
    this.#memory = options.memory;
    this.#eventIdx = options.eventIdx ?? false;
    this.#inOrder = options.inOrder ?? false;
    this.#chainDescs = new Uint32Array(size);
    // vhost-user.rst SET_VRING_BASE for packed rings: bits 0-14 avail index, 15 avail wrap
    // counter, 16-30 used index, 31 used wrap counter. A frontend that sends only the low half
    // (DPDK's) means used = avail: nothing in flight.
    const raw = options.base ?? 1 << 15;
    const avail = checkPackedBase(name, "vring base", raw & 0xffff, size, raw);
    const used = raw >>> 16 === 0
      ? avail
      : checkPackedBase(name, "vring base", raw >>> 16, size, raw);
    this.#availPos = avail & 0x7fff;
    this.#availWrap = avail >>> 15;
    this.#usedPos = used & 0x7fff;
    this.#usedWrap = used >>> 15;
  }

  /** Next avail position for vhost GET_VRING_BASE: bits 0-14 index, bit 15 wrap counter. */
  get base(): number {
    return this.#availPos | this.#availWrap << 15;
  }

  /**
   * The whole vhost-user GET_VRING_BASE value: {@linkcode base} in bits 0-15, the next used
   * position (bits 16-30) and used wrap counter (bit 31) above it (vhost-user.rst).
   */
  get vringBase(): number {
    return (this.#availPos | this.#availWrap << 15 |
      (this.#usedPos | this.#usedWrap << 15) << 16) >>> 0;
  }

  /**
   * Takes the next available buffer into `chain` (§2.8.6 chains, §2.8.7 indirect tables).
   * `chain` must hold `size` segments.
   *
   * @example
   * ```ts ignore
   * while (queue.pop(chain)) { handle(chain); queue.pushUsed(chain.id, 0); }
   * queue.publishUsed();
   * ```
   */
  pop(chain: DescriptorChain): boolean {
    const size = this.size;
    const d32 = this.#desc32, d16 = this.#desc16;
    const memory = this.#memory;
    let pos = this.#availPos;
    let wrap = this.#availWrap;
    // §2.8.1: available = AVAIL equal to our wrap counter and USED not. The driver writes the
    // first slot's flags last (§2.8.21.2); this acquire load orders every read below after it.
    let flags = Atomics.load(d16, (pos << 3) + 7);
    if (((flags >>> 7) & 1) !== wrap || ((flags >>> 15) & 1) === wrap) {
      if (this.#notifyDesc) this.#arm(pos | wrap << 15);
      return false;
    }
    if (chain.len.length < size) throw chainRoomError(chain, size, this.name);
    const head = pos;
    let descs = 0;
    let segs = 0;
    let id = 0;
    let writable = 0;
    for (;;) {
      const w = pos << 2;
      const lo = d32[w], hi = d32[w + 1], len = d32[w + 2];
      id = d16[(pos << 3) + 6];
      descs++;
      const slot = pos;
      if (++pos === size) {
        pos = 0;
        wrap ^= 1;
      }
      if ((flags & DESC_F_INDIRECT) !== 0) {
        if ((flags & DESC_F_NEXT) !== 0) {
          this.#fail(`descriptor ${slot}: INDIRECT and NEXT are both set (§2.8.19)`);
        }
        segs = readIndirect(
          PACKED_INDIRECT_TABLE,
          chain,
          segs,
          memory,
          this.name,
          size,
          slot,
          lo,
          hi,
          len,
        );
        writable = DESC_F_WRITE; // a table's segments: counted as writable, never batched
        break;
      }
      const r = memory.translate(lo | 0, hi, len | 0);
      if (r < 0) this.#fail(outsideMemoryRule(`descriptor ${slot}`, lo, hi, len));
      setSegment(chain, segs, r, memory.offset, len, flags);
      writable |= flags & DESC_F_WRITE;
      segs++;
      if ((flags & DESC_F_NEXT) === 0) break;
      if (descs === size) {
        this.#fail(`chain at descriptor ${head} is longer than the queue size ${size} (§2.8.6)`);
      }
      // Plain read: ordered by the acquire load of the first slot's flags.
      flags = d16[(pos << 3) + 7];
    }
    // The buffer id is in the last descriptor of the chain (§2.8.6).
    if (id >= size) {
      this.#fail(
        `chain at descriptor ${head}: buffer id ${id} is out of range (queue size ${size})`,
      );
    }
    if (this.#chainDescs[id] !== 0) {
      this.#fail(`chain at descriptor ${head}: buffer id ${id} is already in flight`);
    }
    this.#chainDescs[id] = descs | (writable !== 0 ? CHAIN_WRITABLE : 0);
    chain.id = id;
    chain.count = segs;
    this.#availPos = pos;
    this.#availWrap = wrap;
    return true;
  }

  /**
   * Writes the used descriptor for buffer `id` (visible at {@linkcode publishUsed}) and skips
   * the used position forward by the chain's descriptor count (§2.8.6).
   *
   * @example
   * ```ts ignore
   * queue.pushUsed(chain.id, bytesWritten);
   * ```
   */
  pushUsed(id: number, len: number): void {
    const entry = id < this.size ? this.#chainDescs[id] : 0;
    if (entry === 0) {
      throw new VirtqueueError(this.name, `pushUsed: buffer id ${id} is not in flight`);
    }
    this.#chainDescs[id] = 0;
    const count = entry & ~CHAIN_WRITABLE;
    const pos = this.#usedPos;
    const wrap = this.#usedWrap;
    const batchable = this.#inOrder && len === 0 && (entry & CHAIN_WRITABLE) === 0;
    if (batchable && this.#batchSlot >= 0) {
      // §2.8.20: one used descriptor for a batch, naming its last buffer; the driver counts
      // the buffers from its id, and those skipped were read completely (len 0 like this one).
      this.#desc16[(this.#batchSlot << 3) + 6] = id;
      this.#advance(pos, wrap, count);
      return;
    }
    this.#batchSlot = batchable ? pos : -1;
    this.#desc32[(pos << 2) + 2] = len;
    this.#desc16[(pos << 3) + 6] = id;
    // §2.8.1: used = AVAIL and USED both equal our used wrap counter; WRITE says len is
    // meaningful (§2.8.4).
    const flags = (wrap ? AVAIL_USED : 0) | (len > 0 ? DESC_F_WRITE : 0);
    if (this.#pending === 0) {
      this.#firstSlot = pos;
      this.#firstFlags = flags;
    } else {
      // The driver reads slots in order, so this one stays unseen until the first is published.
      this.#desc16[(pos << 3) + 7] = flags;
    }
    this.#pending++;
    this.#advance(pos, wrap, count);
  }

  /** Moves the used position `count` slots on from `pos` (§2.8.6: a chain's descriptors). */
  #advance(pos: number, wrap: number, count: number): void {
    let next = pos + count;
    if (next >= this.size) {
      next -= this.size;
      this.#usedWrap = wrap ^ 1;
    }
    this.#usedPos = next;
    this.#advanced += count;
  }

  /**
   * Publishes the used descriptors pushed since the last call: the first one's flags last,
   * with one release store (§2.8.21.2 applied to used descriptors).
   *
   * @example
   * ```ts ignore
   * queue.publishUsed();
   * if (queue.needsCall()) call();
   * ```
   */
  publishUsed(): void {
    this.#batchSlot = -1; // a published descriptor is the driver's: no buffer joins it
    if (this.#pending === 0) return;
    Atomics.store(this.#desc16, (this.#firstSlot << 3) + 7, this.#firstFlags);
    this.#pending = 0;
  }

  /**
   * True when the driver wants a used-buffer notification for what was published since the
   * last call (driver event suppression, §2.8.10).
   *
   * @example
   * ```ts ignore
   * if (queue.needsCall()) call();
   * ```
   */
  needsCall(): boolean {
    const advanced = this.#advanced;
    this.#advanced = 0;
    if (advanced === 0) return false;
    // Full barrier between publishing used flags and reading the driver's suppression state:
    // publishUsed's Atomics.store is sequentially consistent, so this load stays after it.
    const event = Atomics.load(this.#driverEvent, 0);
    return wantsEvent(event, this.#eventIdx, this.size, this.#usedPos, this.#usedWrap, advanced);
  }

  /**
   * Asks the driver for available-buffer notifications (kicks) or not (device event
   * suppression, §2.8.10). After enabling, pop once more before sleeping.
   *
   * @example
   * ```ts ignore
   * queue.setNotifications(false); // poll mode
   * ```
   */
  setNotifications(enabled: boolean): void {
    this.#notifyDesc = enabled && this.#eventIdx;
    this.#armed = -1;
    if (this.#notifyDesc) {
      this.#arm(this.#availPos | this.#availWrap << 15);
    } else {
      const flags = enabled ? EVENT_FLAG_ENABLE : EVENT_FLAG_DISABLE;
      // seq_cst: ordered before the caller's next pop flag load.
      Atomics.store(this.#deviceEvent, 0, flags << 16);
    }
  }

  /**
   * True when the driver has made a descriptor available that {@linkcode pop} has not taken
   * (§2.8.1). Takes nothing. Call after `setNotifications(true)` before sleeping on the kick
   * eventfd: the seq_cst store there orders this acquire load after it (no lost kick).
   */
  hasAvail(): boolean {
    const flags = Atomics.load(this.#desc16, (this.#availPos << 3) + 7);
    const wrap = this.#availWrap;
    return ((flags >>> 7) & 1) === wrap && ((flags >>> 15) & 1) !== wrap;
  }

  /** DESC mode: ask to be notified when slot offWrap becomes available. */
  #arm(offWrap: number): void {
    if (offWrap === this.#armed) return;
    this.#armed = offWrap;
    // seq_cst: the following availability check cannot move before it (no lost kick).
    Atomics.store(this.#deviceEvent, 0, EVENT_FLAG_DESC << 16 | offWrap);
  }

  #fail(rule: string): never {
    throw new VirtqueueError(this.name, rule);
  }
}

/** Typed views of a packed ring's three areas, as both sides read and write them. */
interface PackedViews {
  /** addr lo [4i], addr hi [4i+1], len [4i+2]. */
  desc32: Uint32Array;
  /** id [8i+6], flags [8i+7]. */
  desc16: Uint16Array;
  /** Driver event suppression: off_wrap | flags << 16, written by the driver. */
  driverEvent: Uint32Array;
  /** Device event suppression: off_wrap | flags << 16, written by the device. */
  deviceEvent: Uint32Array;
}

/**
 * Checks the queue size, the areas' addresses when given (the driver side hands them to the
 * backend) and their memory (§2.8.10.1: descriptor ring 16-byte aligned, event suppression
 * areas 4 bytes, 4-byte aligned), then lays the views over the areas.
 */
function packedViews(
  desc: Uint8Array,
  driver: Uint8Array,
  device: Uint8Array,
  size: number,
  name: string,
  addresses?: QueueAddresses,
): PackedViews {
  checkQueueSize(size, true, name);
  if (addresses !== undefined) {
    checkRingAddress(name, "descriptor ring", addresses.desc, 16);
    checkRingAddress(name, "driver event suppression area", addresses.driver, 4);
    checkRingAddress(name, "device event suppression area", addresses.device, 4);
  }
  checkRingArea(name, "descriptor ring", desc, size * DESC_BYTES, 16);
  checkRingArea(name, "driver event suppression area", driver, 4, 4);
  checkRingArea(name, "device event suppression area", device, 4, 4);
  return {
    desc32: new Uint32Array(desc.buffer, desc.byteOffset, size * 4),
    desc16: new Uint16Array(desc.buffer, desc.byteOffset, size * 8),
    driverEvent: new Uint32Array(driver.buffer, driver.byteOffset, 1),
    deviceEvent: new Uint32Array(device.buffer, device.byteOffset, 1),
  };
}

/**
 * A packed ring position (vhost SET_VRING_BASE) is a slot of the ring in bits 0-14 and the wrap
 * counter in bit 15; `raw` is the whole value it came from, for the message (default `base`).
 */
function checkPackedBase(
  name: string,
  what: string,
  base: number,
  size: number,
  raw = base,
): number {
  if ((base & 0x7fff) >= size || base >>> 16 !== 0 || raw < 0 || raw > 0xffff_ffff) {
    throw new VirtqueueError(
      name,
      `${what} 0x${raw.toString(16)} is not a position in a ring of ${size}` +
        (raw === base
          ? " (bits 0-14 index, bit 15 wrap counter)"
          : " (bits 0-14 avail index, 15 avail wrap counter, 16-30 used index, 31 used wrap)"),
    );
  }
  return base;
}
