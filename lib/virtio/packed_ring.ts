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
 * @module
 */

import {
  type AddressTranslator,
  type BufferTable,
  checkRingAddress,
  checkRingArea,
  type DescriptorChain,
  type DeviceQueue,
  type DriverQueue,
  needEvent,
  outsideMemoryRule,
  type QueueAddresses,
  readLe32,
  type RingLayout,
  VirtqueueError,
} from "./virtqueue.ts";

const DESC_F_NEXT = 1;
const DESC_F_WRITE = 2;
const DESC_F_INDIRECT = 4;
const DESC_F_AVAIL = 1 << 7;
const DESC_F_USED = 1 << 15;
const AVAIL_USED = DESC_F_AVAIL | DESC_F_USED;

const EVENT_FLAG_ENABLE = 0;
const EVENT_FLAG_DISABLE = 1;
const EVENT_FLAG_DESC = 2;

const MAX_SIZE = 32768;
const DESC_BYTES = 16;
/** Areas start on cache lines so the driver's and the device's writes do not share one. */
const AREA_ALIGN = 64;

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
  checkSize(size);
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
}

/**
 * The driver side of a packed ring. Every buffer is one descriptor; buffer ids come from a free
 * stack and name the buffer in flight (`idToBuf`).
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
  /** In-order: ring position of the last buffer the current used batch covers, or -1. */
  #batchEnd = -1;
  /** In-order: the length the device wrote for that last buffer. */
  #batchLen = 0;

  readonly #freeIds: Uint16Array;
  #freeTop: number;
  readonly #idToBuf: Uint32Array;
  readonly #postedLen: Uint32Array;
  /** 0 = free, 1 = in flight device-readable, 2 = in flight device-writable. */
  readonly #state: Uint8Array;

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
   * console.assert(q.free === 7 && q.base === (1 | 1 << 15));
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
    checkSize(size, name);
    this.size = size;
    this.name = name;
    const { buffers, addresses } = options;
    checkRingAddress(name, "descriptor ring", addresses.desc, 16);
    checkRingAddress(name, "driver event suppression area", addresses.driver, 4);
    checkRingAddress(name, "device event suppression area", addresses.device, 4);
    this.addresses = addresses;
    checkRingArea(name, "descriptor ring", desc, size * DESC_BYTES, 16);
    checkRingArea(name, "driver event suppression area", driver, 4, 4);
    checkRingArea(name, "device event suppression area", device, 4, 4);
    this.#desc32 = new Uint32Array(desc.buffer, desc.byteOffset, size * 4);
    this.#desc16 = new Uint16Array(desc.buffer, desc.byteOffset, size * 8);
    this.#driverEvent = new Uint32Array(driver.buffer, driver.byteOffset, 1);
    this.#deviceEvent = new Uint32Array(device.buffer, device.byteOffset, 1);
    this.#addrLo = buffers.addrLo;
    this.#addrHi = buffers.addrHi;
    this.#eventIdx = options.eventIdx ?? false;
    this.#inOrder = options.inOrder ?? false;

    const base = options.base ?? 1 << 15;
    const index = base & 0x7fff;
    if (index >= size || base >>> 16 !== 0) {
      throw new VirtqueueError(
        name,
        `base 0x${base.toString(16)} is not a position in a ring of ${size}`,
      );
    }
    this.#availPos = this.#usedPos = index;
    this.#availWrap = this.#usedWrap = base >>> 15;

    this.#freeIds = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.#freeIds[i] = size - 1 - i; // id 0 on top
    this.#freeTop = size;
    this.#idToBuf = new Uint32Array(size);
    this.#postedLen = new Uint32Array(size);
    this.#state = new Uint8Array(size);

    // A fresh ring: no descriptor is available or used in either wrap (§2.8.1), both event
    // suppression structures at ENABLE.
    if (options.reset === false) return;
    this.#desc32.fill(0);
    this.#driverEvent[0] = 0;
    this.#deviceEvent[0] = 0;
  }

  /** Buffers that may still be enqueued. */
  get free(): number {
    return this.#freeTop;
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
    const count = n < this.#freeTop ? n : this.#freeTop;
    if (count <= 0) return 0;
    const size = this.size;
    const d32 = this.#desc32, d16 = this.#desc16;
    const addrLo = this.#addrLo, addrHi = this.#addrHi;
    const freeIds = this.#freeIds, idToBuf = this.#idToBuf;
    const postedLen = this.#postedLen, state = this.#state;
    const kind = writable ? 2 : 1;
    const writeFlag = writable ? DESC_F_WRITE : 0;
    const inOrder = this.#inOrder;
    let top = this.#freeTop;
    let pos = this.#availPos;
    let wrap = this.#availWrap;
    const first = pos;
    let firstFlags = 0;
    for (let i = 0; i < count; i++) {
      const buf = bufs[offset + i];
      const len = lens[offset + i];
      // In order, the id is the slot: buffers are used in the order they were made available.
      const id = inOrder ? pos : freeIds[top - 1];
      top--;
      idToBuf[id] = buf;
      postedLen[id] = len;
      state[id] = kind;
      const w = pos << 2;
      d32[w] = addrLo[buf];
      d32[w + 1] = addrHi[buf];
      d32[w + 2] = len;
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
    this.#freeTop = top;
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
    let top = this.#freeTop;
    if (top === size) return 0; // nothing in flight: no slot to look at
    const d32 = this.#desc32, d16 = this.#desc16;
    const freeIds = this.#freeIds, idToBuf = this.#idToBuf;
    const postedLen = this.#postedLen, state = this.#state;
    let pos = this.#usedPos;
    let wrap = this.#usedWrap;
    let n = 0;
    while (n < max && top !== size) {
      // §2.8.1: used = AVAIL and USED both equal the driver's used wrap counter. The acquire load
      // orders the id/len reads after the device's flags store.
      const flags = Atomics.load(d16, (pos << 3) + 7);
      if ((flags & AVAIL_USED) !== (wrap ? AVAIL_USED : 0)) break;
      const id = d16[(pos << 3) + 6];
      if (id >= size) {
        this.#usedPos = pos, this.#usedWrap = wrap, this.#freeTop = top;
        throw new VirtqueueError(
          this.name,
          `used descriptor ${pos}: id ${id} is out of range (queue size ${size})`,
        );
      }
      const kind = state[id];
      if (kind === 0) {
        this.#usedPos = pos, this.#usedWrap = wrap, this.#freeTop = top;
        throw new VirtqueueError(
          this.name,
          `used descriptor ${pos}: id ${id} is not in flight (returned twice or never made available)`,
        );
      }
      let len = 0;
      if (kind === 2) {
        len = d32[(pos << 2) + 2];
        if (len > postedLen[id]) {
          this.#usedPos = pos, this.#usedWrap = wrap, this.#freeTop = top;
          throw new VirtqueueError(
            this.name,
            `used descriptor ${pos}: id ${id} len ${len} exceeds the ${
              postedLen[id]
            } bytes the buffer holds`,
          );
        }
      }
      bufs[n] = idToBuf[id];
      lens[n] = len; // device-readable buffers: the device wrote nothing (§2.8.4)
      n++;
      state[id] = 0;
      freeIds[top++] = id;
      // One descriptor per buffer, so the next used slot is the next one (§2.8.6).
      if (++pos === size) {
        pos = 0;
        wrap ^= 1;
      }
    }
    return this.#endDequeue(pos, wrap, top, n);
  }

  /** Saves the used position and free count after a dequeue; re-arms DESC interrupts. */
  #endDequeue(pos: number, wrap: number, top: number, n: number): number {
    this.#usedPos = pos;
    this.#usedWrap = wrap;
    this.#freeTop = top;
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
    let top = this.#freeTop;
    const d32 = this.#desc32, d16 = this.#desc16;
    const idToBuf = this.#idToBuf, state = this.#state;
    let pos = this.#usedPos;
    let wrap = this.#usedWrap;
    let end = this.#batchEnd;
    let n = 0;
    while (n < max && top !== size) {
      if (end < 0) {
        // §2.8.1 used test, acquire load: id/len are read after the device's flags store.
        const flags = Atomics.load(d16, (pos << 3) + 7);
        if ((flags & AVAIL_USED) !== (wrap ? AVAIL_USED : 0)) break;
        const id = d16[(pos << 3) + 6];
        const count = id >= pos ? id - pos + 1 : id + size - pos + 1;
        if (id >= size || count > size - top || state[id] === 0) {
          this.#usedPos = pos, this.#usedWrap = wrap, this.#freeTop = top;
          throw new VirtqueueError(
            this.name,
            `used descriptor ${pos}: in-order id ${id} does not name a buffer in flight ` +
              `(${size - top} in flight from slot ${pos}, queue size ${size})`,
          );
        }
        const len = state[id] === 2 ? d32[(pos << 2) + 2] : 0;
        if (len > this.#postedLen[id]) {
          this.#usedPos = pos, this.#usedWrap = wrap, this.#freeTop = top;
          throw new VirtqueueError(
            this.name,
            `used descriptor ${pos}: id ${id} len ${len} exceeds the ${
              this.#postedLen[id]
            } bytes the buffer holds`,
          );
        }
        end = id;
        this.#batchLen = len;
      }
      if (pos !== end && state[pos] === 2) {
        this.#usedPos = pos, this.#usedWrap = wrap, this.#freeTop = top, this.#batchEnd = -1;
        throw new VirtqueueError(
          this.name,
          `in-order batch ending at ${end} skips receive buffer ${pos}, whose length is unknown`,
        );
      }
      bufs[n] = idToBuf[pos];
      lens[n] = pos === end ? this.#batchLen : 0;
      n++;
      state[pos] = 0;
      top++;
      if (pos === end) end = -1;
      if (++pos === size) {
        pos = 0;
        wrap ^= 1;
      }
    }
    this.#batchEnd = end;
    return this.#endDequeue(pos, wrap, top, n);
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
    if (this.#freeTop === this.size) return false;
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
  /** Ring descriptors of each chain in flight, by buffer id (0 = not in flight). */
  readonly #chainDescs: Uint16Array;

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
    checkSize(size, name);
    this.size = size;
    this.name = name;
    checkRingArea(name, "descriptor ring", desc, size * DESC_BYTES, 16);
    checkRingArea(name, "driver event suppression area", driver, 4, 4);
    checkRingArea(name, "device event suppression area", device, 4, 4);
    this.#desc32 = new Uint32Array(desc.buffer, desc.byteOffset, size * 4);
    this.#desc16 = new Uint16Array(desc.buffer, desc.byteOffset, size * 8);
    this.#driverEvent = new Uint32Array(driver.buffer, driver.byteOffset, 1);
    this.#deviceEvent = new Uint32Array(device.buffer, device.byteOffset, 1);
    this.#memory = options.memory;
    this.#eventIdx = options.eventIdx ?? false;
    this.#chainDescs = new Uint16Array(size);
    const base = options.base ?? 1 << 15;
    const index = base & 0x7fff;
    if (index >= size || base >>> 16 !== 0) {
      throw new VirtqueueError(
        name,
        `vring base 0x${base.toString(16)} is not a position in a ring of ${size}` +
          " (bits 0-14 index, bit 15 wrap counter)",
      );
    }
    this.#availPos = this.#usedPos = index;
    this.#availWrap = this.#usedWrap = base >>> 15;
  }

  /** Next avail position for vhost GET_VRING_BASE: bits 0-14 index, bit 15 wrap counter. */
  get base(): number {
    return this.#availPos | this.#availWrap << 15;
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
    if (chain.len.length < size) {
      throw new RangeError(
        `virtqueue ${this.name}: DescriptorChain holds ${chain.len.length} segments, the queue needs ${size}`,
      );
    }
    const head = pos;
    let descs = 0;
    let segs = 0;
    let id = 0;
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
        segs = this.#indirect(chain, segs, slot, lo, hi, len);
        break;
      }
      const r = memory.translate(lo | 0, hi, len | 0);
      if (r < 0) this.#fail(outsideMemoryRule(`descriptor ${slot}`, lo, hi, len));
      chain.region[segs] = r;
      chain.offset[segs] = memory.offset;
      chain.len[segs] = len;
      chain.writable[segs] = (flags & DESC_F_WRITE) !== 0 ? 1 : 0;
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
    this.#chainDescs[id] = descs;
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
    const count = id < this.size ? this.#chainDescs[id] : 0;
    if (count === 0) {
      throw new VirtqueueError(this.name, `pushUsed: buffer id ${id} is not in flight`);
    }
    this.#chainDescs[id] = 0;
    const pos = this.#usedPos;
    const wrap = this.#usedWrap;
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

  /** Reads the indirect table of descriptor `slot` into `chain` from segment `segs` on. */
  #indirect(
    chain: DescriptorChain,
    segs: number,
    slot: number,
    lo: number,
    hi: number,
    len: number,
  ): number {
    if (len === 0 || len % DESC_BYTES !== 0) {
      this.#fail(
        `descriptor ${slot}: indirect table length ${len} is not a non-zero multiple of 16 (§2.8.7)`,
      );
    }
    const entries = len / DESC_BYTES;
    if (segs + entries > this.size) {
      this.#fail(
        `descriptor ${slot}: chain with an indirect table of ${entries} descriptors is longer ` +
          `than the queue size ${this.size}`,
      );
    }
    const memory = this.#memory;
    const r = memory.translate(lo | 0, hi, len | 0);
    if (r < 0) this.#fail(outsideMemoryRule(`indirect table of descriptor ${slot}`, lo, hi, len));
    const table = memory.bytes(r);
    const start = memory.offset;
    // §2.8.7: the table's descriptors are used in order; WRITE is their only valid flag (NEXT and
    // id are ignored), and an indirect descriptor inside a table is refused.
    for (let k = 0; k < entries; k++) {
      const o = start + k * DESC_BYTES;
      const elo = readLe32(table, o), ehi = readLe32(table, o + 4), elen = readLe32(table, o + 8);
      const eflags = table[o + 14] | table[o + 15] << 8;
      if ((eflags & DESC_F_INDIRECT) !== 0) {
        this.#fail(
          `indirect descriptor ${k} of descriptor ${slot}: nested indirect table (§2.8.19)`,
        );
      }
      const er = memory.translate(elo | 0, ehi, elen | 0);
      if (er < 0) {
        this.#fail(
          outsideMemoryRule(`indirect descriptor ${k} of descriptor ${slot}`, elo, ehi, elen),
        );
      }
      chain.region[segs] = er;
      chain.offset[segs] = memory.offset;
      chain.len[segs] = elen;
      chain.writable[segs] = (eflags & DESC_F_WRITE) !== 0 ? 1 : 0;
      segs++;
    }
    return segs;
  }

  #fail(rule: string): never {
    throw new VirtqueueError(this.name, rule);
  }
}

/** Sizes 1..32768, any value (§2.8). A queue's size may come from the peer: VirtqueueError. */
function checkSize(size: number, queue?: string): void {
  if (Number.isInteger(size) && size >= 1 && size <= MAX_SIZE) return;
  const rule = `packed ring size ${size} must be an integer from 1 to 32768`;
  if (queue === undefined) throw new RangeError(rule);
  throw new VirtqueueError(queue, rule);
}

function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}
