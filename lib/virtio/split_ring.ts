/**
 * The split virtqueue (virtio 1.2 §2.7): a descriptor table, an available ring the driver writes
 * and a used ring the device writes.
 *
 * ```
 *   SplitDriverQueue ── desc[id] + avail.ring[idx] + avail.idx ──► SplitDeviceQueue.pop
 *   SplitDriverQueue.dequeue ◄── used.ring[idx] {id, len} + used.idx ◄── pushUsed / publishUsed
 * ```
 *
 * Descriptor (16 bytes): addr u64 @0 (two u32 halves), len u32 @8, flags u16 @12, next u16 @14.
 * Available ring: flags u16, idx u16, ring[size] u16, used_event u16 (§2.7.6).
 * Used ring: flags u16, idx u16, ring[size] {id u32, len u32}, avail_event u16 (§2.7.8).
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
import { BUF_READABLE, BUF_WRITABLE, InFlight } from "./in_flight.ts";
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

const AVAIL_F_NO_INTERRUPT = 1;
const USED_F_NO_NOTIFY = 1;

/**
 * Split indirect tables (§2.7.5.3): flags at byte 12, a chain of their own from entry 0 linked
 * by `next`.
 */
export const SPLIT_INDIRECT_TABLE: IndirectFormat = {
  flagsAt: 12,
  linked: true,
  lengthSection: "§2.7.5.3",
  nestedSection: "§2.7.5.3.1",
};

/**
 * Sizes and offsets of a split ring of `size` entries placed in one block: descriptor table
 * (16-byte aligned), available ring (2), used ring (4) per §2.7; each area starts on a 64-byte
 * boundary.
 *
 * @example
 * ```ts
 * import { splitRingLayout } from "./split_ring.ts";
 * const l = splitRingLayout(256);
 * console.assert(l.descSize === 4096 && l.driverSize === 518 && l.deviceSize === 2054);
 * console.assert(l.driverOffset === 4096 && l.deviceOffset === 4672);
 * ```
 */
export function splitRingLayout(size: number): RingLayout {
  checkQueueSize(size, false);
  const descSize = size * DESC_BYTES;
  const driverOffset = alignUp(descSize, AREA_ALIGN);
  const driverSize = 6 + 2 * size;
  const deviceOffset = alignUp(driverOffset + driverSize, AREA_ALIGN);
  const deviceSize = 6 + 8 * size;
  return {
    descOffset: 0,
    descSize,
    driverOffset,
    driverSize,
    deviceOffset,
    deviceSize,
    byteLength: alignUp(deviceOffset + deviceSize, AREA_ALIGN),
  };
}

/** Options of {@linkcode SplitDriverQueue}. */
export interface SplitDriverOptions {
  /** Guest addresses of the buffers, by buffer number. */
  buffers: BufferTable;
  /** Addresses of the three areas, handed to the backend (checked for alignment). */
  addresses: QueueAddresses;
  /** VIRTIO_F_RING_EVENT_IDX was negotiated: use used_event / avail_event (§2.7.7, §2.7.10). */
  eventIdx?: boolean;
  /** Avail index to start from (vhost SET_VRING_BASE; default 0). */
  base?: number;
  /**
   * `false`: the areas already hold a fresh ring at `base`, reset by an earlier instance over the
   * same memory (another thread's) that enqueued nothing; take it over as it is, keeping what
   * the device wrote since (used flags, avail_event). Default true: reset the areas.
   */
  reset?: boolean;
  /**
   * Every buffer is an indirect table of split descriptors (§2.7.5.3; the control queue's
   * commands): each is posted with VIRTQ_DESC_F_INDIRECT, its writable parts are in the table.
   */
  indirect?: boolean;
}

/**
 * The driver side of a split ring. Every buffer is one descriptor; the descriptor index is the
 * buffer id, taken from the free ids of its {@linkcode InFlight} table.
 */
export class SplitDriverQueue implements DriverQueue {
  /** Queue size (a power of two). */
  readonly size: number;
  /** Areas to hand to the backend. */
  readonly addresses: QueueAddresses;
  /** Name used in error messages. */
  readonly name: string;

  readonly #desc32: Uint32Array; // addr lo [4i], addr hi [4i+1], len [4i+2]
  readonly #desc16: Uint16Array; // flags [8i+6], next [8i+7]
  readonly #avail: Uint16Array; // flags [0], idx [1], ring [2+i], used_event [2+size]
  readonly #used16: Uint16Array; // flags [0], idx [1], avail_event [2+4*size]
  readonly #used32: Uint32Array; // id [1+2i], len [2+2i]
  readonly #addrLo: Uint32Array;
  readonly #addrHi: Uint32Array;
  readonly #eventIdx: boolean;
  readonly #mask: number;
  /** VIRTQ_DESC_F_INDIRECT when every buffer is an indirect table, else 0. */
  readonly #indirect: number;

  /** Buffers in flight by id (= descriptor index). */
  readonly #inFlight: InFlight;

  /** Next avail index (16-bit, free running). */
  #availIdx: number;
  /** Avail index at the last needsNotify. */
  #notifiedIdx: number;
  /** Next used index to read (16-bit, free running). */
  #lastUsed: number;
  #interrupts = true;

  /**
   * Resets the three areas (the ring starts empty, at `base`) and takes ownership of them.
   *
   * @param desc descriptor table, `16 * size` bytes, 16-byte aligned.
   * @param driver available ring, `6 + 2 * size` bytes, 2-byte aligned.
   * @param device used ring, `6 + 8 * size` bytes, 4-byte aligned.
   * @param size a power of two up to 32768.
   * @param name queue name for error messages, e.g. `"rx0"`.
   * @example
   * ```ts
   * import { SplitDriverQueue, splitRingLayout } from "./split_ring.ts";
   * const l = splitRingLayout(8);
   * const mem = new Uint8Array(l.byteLength);
   * const base = 0x10000000;
   * const q = new SplitDriverQueue(
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
   * console.assert(q.numFree === 7 && q.base === 1);
   * ```
   */
  constructor(
    desc: Uint8Array,
    driver: Uint8Array,
    device: Uint8Array,
    size: number,
    name: string,
    options: SplitDriverOptions,
  ) {
    const { buffers, addresses } = options;
    const views = splitViews(desc, driver, device, size, name, addresses);
    this.size = size;
    this.name = name;
    this.#mask = size - 1;
    this.addresses = addresses;
    this.#desc32 = views.desc32;
    this.#desc16 = views.desc16;
    this.#avail = views.avail;
    this.#used16 = views.used16;
    this.#used32 = views.used32;
    this.#addrLo = buffers.addrLo;
    this.#addrHi = buffers.addrHi;
    this.#eventIdx = options.eventIdx ?? false;
    this.#indirect = options.indirect ? DESC_F_INDIRECT : 0;

    const base = checkSplitBase(name, "base", options.base ?? 0);
    this.#availIdx = this.#notifiedIdx = this.#lastUsed = base;

    this.#inFlight = new InFlight(size); // descriptor 0 first

    // A fresh ring at `base`: nothing available, nothing used, notifications on (§2.7.6, §2.7.8).
    if (options.reset === false) return;
    this.#desc32.fill(0);
    this.#avail.fill(0);
    this.#used16.fill(0);
    this.#avail[1] = base;
    this.#used16[1] = base;
    // Event indices at the first entry, so the first buffers raise a notification either way.
    this.#avail[2 + size] = base;
    this.#used16[2 + 4 * size] = base;
  }

  /** Buffers that may still be enqueued. */
  get numFree(): number {
    return this.#inFlight.numFree;
  }

  /** Next avail index (vhost SET_VRING_BASE). */
  get base(): number {
    return this.#availIdx;
  }

  /**
   * Makes up to `n` buffers available with one avail.idx update (§2.7.13). Returns how many.
   *
   * @example
   * ```ts ignore
   * const added = queue.enqueue(bufs, lens, 0, 32, false); // transmit
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
    const d32 = this.#desc32, d16 = this.#desc16, avail = this.#avail;
    const addrLo = this.#addrLo, addrHi = this.#addrHi;
    const mask = this.#mask;
    // An indirect table's descriptor carries INDIRECT; its entries say what is writable.
    const flags = this.#indirect !== 0 ? this.#indirect : writable ? DESC_F_WRITE : 0;
    const ids = inFlight.add(bufs, lens, offset, count, writable ? BUF_WRITABLE : BUF_READABLE);
    let idx = this.#availIdx;
    for (let i = 0; i < count; i++) {
      const buf = bufs[offset + i];
      const id = ids[i];
      const w = id << 2;
      d32[w] = addrLo[buf];
      d32[w + 1] = addrHi[buf];
      d32[w + 2] = lens[offset + i];
      d16[(id << 3) + 6] = flags;
      d16[(id << 3) + 7] = 0;
      avail[2 + (idx & mask)] = id; // §2.7.13.2
      idx = (idx + 1) & 0xffff;
    }
    // §2.7.13.3: descriptors and ring entries are written before idx; the release store orders
    // them before the device can see the new index.
    Atomics.store(avail, 1, idx);
    this.#availIdx = idx;
    return count;
  }

  /**
   * Takes up to `max` used buffers (§2.7.14), checking each id the device returned.
   *
   * @example
   * ```ts ignore
   * const n = queue.dequeue(bufs, lens, 32); // bufs[0..n), lens[0..n)
   * ```
   */
  dequeue(bufs: Uint32Array, lens: Uint32Array, max: number): number {
    const size = this.size;
    const inFlight = this.#inFlight;
    const outstanding = size - inFlight.numFree;
    if (outstanding === 0) return 0;
    let last = this.#lastUsed;
    // §2.7.14: read used.idx before the entries it covers (acquire).
    const usedIdx = Atomics.load(this.#used16, 1);
    let ready = (usedIdx - last) & 0xffff;
    if (ready === 0) return 0;
    if (ready > outstanding) {
      throw new VirtqueueError(
        this.name,
        `used idx ${usedIdx} is ${ready} entries past ${last}, but only ${outstanding} buffers ` +
          "are in flight (index jump beyond the ring)",
      );
    }
    if (ready > max) ready = max;
    const used32 = this.#used32, mask = this.#mask;
    // Used ring entries are {id u32, len u32} at words 1 + 2i and 2 + 2i of used32.
    const taken = inFlight.takeUsed(used32, last & mask, 2, 1, 0xffffffff, 2, ready, bufs, lens);
    last = (last + taken) & 0xffff;
    this.#lastUsed = last;
    if (taken < ready) {
      const e = (last & mask) << 1;
      const where = `used ring entry ${last & mask}`;
      throw inFlight.usedError(this.name, where, used32[e + 1], used32[e + 2], taken);
    }
    if (this.#eventIdx && this.#interrupts) {
      // §2.7.7: interrupt when the next entry is used. seq_cst store, so the next dequeue's
      // used.idx load cannot move before it (no lost interrupt).
      Atomics.store(this.#avail, 2 + size, last);
    }
    return ready;
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
    return this.#inFlight.takeAll(out);
  }

  /**
   * True when the device wants a notification for what was enqueued since the last call
   * (§2.7.13.4 / §2.7.10).
   *
   * @example
   * ```ts ignore
   * if (queue.enqueue(bufs, lens, 0, n, false) > 0 && queue.needsNotify()) kick();
   * ```
   */
  needsNotify(): boolean {
    const newIdx = this.#availIdx;
    const oldIdx = this.#notifiedIdx;
    this.#notifiedIdx = newIdx;
    if (newIdx === oldIdx) return false;
    // Full barrier between publishing avail.idx and reading the device's suppression state
    // (§2.7.13.4): enqueue's Atomics.store is sequentially consistent, so these loads stay after.
    const eventAt = 2 + 4 * this.size; // avail_event
    return wantsEvent(this.#used16, USED_F_NO_NOTIFY, eventAt, this.#eventIdx, newIdx, oldIdx);
  }

  /**
   * Asks the device for used-buffer notifications or not (§2.7.7): avail flags NO_INTERRUPT, or
   * used_event with event index. After enabling, dequeue once more before sleeping.
   *
   * @example
   * ```ts ignore
   * queue.setInterrupts(false); // poll mode
   * ```
   */
  setInterrupts(enabled: boolean): void {
    this.#interrupts = enabled;
    if (this.#eventIdx) {
      // Enabled: the next entry. Disabled: the entry just behind it, which the used index
      // reaches only 65535 entries later (at most one stray interrupt per 65536 buffers while
      // interrupts stay off; Linux writes a fixed value for the same purpose).
      const event = enabled ? this.#lastUsed : (this.#lastUsed - 1) & 0xffff;
      Atomics.store(this.#avail, 2 + this.size, event);
    } else {
      Atomics.store(this.#avail, 0, enabled ? 0 : AVAIL_F_NO_INTERRUPT);
    }
  }

  /**
   * True when the device has used a buffer {@linkcode dequeue} has not taken yet (§2.7.14; Linux's
   * virtqueue_poll). Takes nothing. Call after `setInterrupts(true)` before sleeping: the
   * seq_cst store there orders this acquire load of used.idx after it.
   */
  hasUsed(): boolean {
    return this.#inFlight.numFree !== this.size && Atomics.load(this.#used16, 1) !== this.#lastUsed;
  }
}

/** Options of {@linkcode SplitDeviceQueue}. */
export interface SplitDeviceOptions {
  /** Translates the driver's addresses (descriptors and indirect tables). */
  memory: AddressTranslator;
  /** VIRTIO_F_RING_EVENT_IDX was negotiated. */
  eventIdx?: boolean;
  /** Avail index to start from (vhost SET_VRING_BASE; default 0). */
  base?: number;
  /**
   * VIRTIO_F_IN_ORDER was negotiated: nothing changes here, every used entry is still written
   * (§2.7.9 lets a device write one per batch; the driver side of this stack does not need it).
   */
  inOrder?: boolean;
}

/**
 * The device side of a split ring: reads what the driver made available, checks it, and writes
 * used entries back. Every address goes through the {@linkcode AddressTranslator}; nothing the
 * driver wrote is trusted.
 */
export class SplitDeviceQueue implements DeviceQueue {
  /** Queue size. */
  readonly size: number;
  /** Name used in error messages. */
  readonly name: string;

  readonly #desc32: Uint32Array;
  readonly #desc16: Uint16Array;
  readonly #avail: Uint16Array; // written by the driver
  readonly #used16: Uint16Array; // written by us
  readonly #used32: Uint32Array;
  readonly #memory: AddressTranslator;
  readonly #eventIdx: boolean;
  readonly #mask: number;

  /** Next avail index to read. */
  #lastAvail: number;
  /** avail.idx as last loaded. */
  #shadowAvail: number;
  /** Next used index to write, and the one last published. */
  #usedIdx: number;
  #publishedIdx: number;
  /** Used index at the last needsCall. */
  #signalledIdx: number;
  #notifications = true;
  /** avail_event last written. */
  #armed = -1;

  /**
   * Reads and writes the driver's areas (they are not reset).
   *
   * @param desc descriptor table, `16 * size` bytes, 16-byte aligned.
   * @param driver available ring, `6 + 2 * size` bytes, 2-byte aligned.
   * @param device used ring, `6 + 8 * size` bytes, 4-byte aligned.
   * @param size a power of two up to 32768 (vhost SET_VRING_NUM).
   * @param name queue name for error messages.
   * @example
   * ```ts
   * import { SplitDeviceQueue, splitRingLayout } from "./split_ring.ts";
   * import { DescriptorChain, LocalMemory } from "./virtqueue.ts";
   * const l = splitRingLayout(8);
   * const mem = new Uint8Array(l.byteLength);
   * const q = new SplitDeviceQueue(
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
    options: SplitDeviceOptions,
  ) {
    const views = splitViews(desc, driver, device, size, name);
    this.size = size;
    this.name = name;
    this.#mask = size - 1;
    this.#desc32 = views.desc32;
    this.#desc16 = views.desc16;
    this.#avail = views.avail;
    this.#used16 = views.used16;
    this.#used32 = views.used32;
    this.#memory = options.memory;
    this.#eventIdx = options.eventIdx ?? false;
    const base = checkSplitBase(name, "vring base", options.base ?? 0);
    this.#lastAvail = this.#shadowAvail = base;
    this.#usedIdx = this.#publishedIdx = this.#signalledIdx = base;
  }

  /** Next avail index to read (vhost GET_VRING_BASE). */
  get base(): number {
    return this.#lastAvail;
  }

  /** The vhost-user GET_VRING_BASE value: for split rings, {@linkcode base}. */
  get vringBase(): number {
    return this.#lastAvail;
  }

  /**
   * Takes the next available chain into `chain` (§2.7.5 descriptor chains, §2.7.5.3 indirect
   * tables). `chain` must hold `size` segments.
   *
   * @example
   * ```ts ignore
   * while (queue.pop(chain)) { handle(chain); queue.pushUsed(chain.id, 0); }
   * queue.publishUsed();
   * ```
   */
  pop(chain: DescriptorChain): boolean {
    const size = this.size;
    const last = this.#lastAvail;
    if (last === this.#shadowAvail) {
      // §2.7.6: read avail.idx before the entries it covers (acquire).
      const idx = Atomics.load(this.#avail, 1);
      if (idx === last) {
        if (this.#eventIdx) this.#arm();
        return false;
      }
      const ahead = (idx - last) & 0xffff;
      if (ahead > size) {
        this.#fail(
          `avail idx ${idx} is ${ahead} entries ahead of ${last}, more than the queue size ${size}`,
        );
      }
      this.#shadowAvail = idx;
    }
    if (chain.len.length < size) throw chainRoomError(chain, size, this.name);
    const slot = last & this.#mask;
    const head = this.#avail[2 + slot];
    if (head >= size) {
      this.#fail(`avail ring entry ${slot}: head ${head} is out of range (queue size ${size})`);
    }
    const d32 = this.#desc32, d16 = this.#desc16, memory = this.#memory;
    let i = head;
    let descs = 0;
    let segs = 0;
    for (;;) {
      if (++descs > size) {
        this.#fail(
          `chain at head ${head} is longer than the queue size ${size} (a loop?) (§2.7.5.2)`,
        );
      }
      const w = i << 2;
      const lo = d32[w], hi = d32[w + 1], len = d32[w + 2];
      const flags = d16[(i << 3) + 6];
      if ((flags & DESC_F_INDIRECT) !== 0) {
        if ((flags & DESC_F_NEXT) !== 0) {
          this.#fail(`descriptor ${i}: INDIRECT and NEXT are both set (§2.7.5.3.1)`);
        }
        segs = readIndirect(
          SPLIT_INDIRECT_TABLE,
          chain,
          segs,
          memory,
          this.name,
          size,
          i,
          lo,
          hi,
          len,
        );
        break;
      }
      const r = memory.translate(lo | 0, hi, len | 0);
      if (r < 0) this.#fail(outsideMemoryRule(`descriptor ${i}`, lo, hi, len));
      setSegment(chain, segs, r, memory.offset, len, flags);
      segs++;
      if ((flags & DESC_F_NEXT) === 0) break;
      const next = d16[(i << 3) + 7];
      if (next >= size) {
        this.#fail(`descriptor ${i}: next ${next} is out of range (queue size ${size})`);
      }
      i = next;
    }
    chain.id = head;
    chain.count = segs;
    this.#lastAvail = (last + 1) & 0xffff;
    return true;
  }

  /**
   * Writes used entry `{id, len}` (§2.7.8), visible at {@linkcode publishUsed}.
   *
   * @example
   * ```ts ignore
   * queue.pushUsed(chain.id, bytesWritten);
   * ```
   */
  pushUsed(id: number, len: number): void {
    if (id >= this.size) {
      throw new VirtqueueError(this.name, `pushUsed: id ${id} is not a descriptor head`);
    }
    const e = (this.#usedIdx & this.#mask) << 1;
    this.#used32[e + 1] = id;
    this.#used32[e + 2] = len;
    this.#usedIdx = (this.#usedIdx + 1) & 0xffff;
  }

  /**
   * Publishes the used entries pushed since the last call with one release store of used.idx.
   *
   * @example
   * ```ts ignore
   * queue.publishUsed();
   * if (queue.needsCall()) call();
   * ```
   */
  publishUsed(): void {
    const idx = this.#usedIdx;
    if (idx === this.#publishedIdx) return;
    // §2.7.8: entries are written before idx; the release store orders them.
    Atomics.store(this.#used16, 1, idx);
    this.#publishedIdx = idx;
  }

  /**
   * True when the driver wants a used-buffer notification for what was published since the last
   * call (§2.7.7): avail flags NO_INTERRUPT, or used_event with event index.
   *
   * @example
   * ```ts ignore
   * if (queue.needsCall()) call();
   * ```
   */
  needsCall(): boolean {
    const newIdx = this.#publishedIdx;
    const oldIdx = this.#signalledIdx;
    this.#signalledIdx = newIdx;
    if (newIdx === oldIdx) return false;
    // Full barrier between publishing used.idx and reading the driver's suppression state:
    // publishUsed's Atomics.store is sequentially consistent, so these loads stay after it.
    const eventAt = 2 + this.size; // used_event
    return wantsEvent(this.#avail, AVAIL_F_NO_INTERRUPT, eventAt, this.#eventIdx, newIdx, oldIdx);
  }

  /**
   * Asks the driver for available-buffer notifications (kicks) or not (§2.7.10): used flags
   * NO_NOTIFY, or avail_event with event index. After enabling, pop once more before sleeping.
   *
   * @example
   * ```ts ignore
   * queue.setNotifications(false); // poll mode
   * ```
   */
  setNotifications(enabled: boolean): void {
    this.#notifications = enabled;
    if (this.#eventIdx) {
      this.#armed = -1;
      this.#arm();
    } else {
      // seq_cst: ordered before the caller's next avail.idx load.
      Atomics.store(this.#used16, 0, enabled ? 0 : USED_F_NO_NOTIFY);
    }
  }

  /**
   * True when the driver has made a chain available that {@linkcode pop} has not taken
   * (avail.idx moved, §2.7.6). Takes nothing. Call after `setNotifications(true)` before
   * sleeping on the kick eventfd: the seq_cst store there orders this acquire load after it.
   */
  hasAvail(): boolean {
    return Atomics.load(this.#avail, 1) !== this.#lastAvail;
  }

  /**
   * Event index mode: avail_event = the next entry to read when notifications are on, else the
   * one just behind it (reached only after 65535 more entries).
   */
  #arm(): void {
    const last = this.#lastAvail;
    const event = this.#notifications ? last : (last - 1) & 0xffff;
    if (event === this.#armed) return;
    this.#armed = event;
    // seq_cst: the following avail.idx check cannot move before it (no lost kick).
    Atomics.store(this.#used16, 2 + 4 * this.size, event);
  }

  #fail(rule: string): never {
    throw new VirtqueueError(this.name, rule);
  }
}

/**
 * Event suppression, the same rule for both sides (§2.7.7, §2.7.10): does the peer whose ring
 * is `ring` want a notification now that this side's index moved from `oldIdx` to `newIdx`?
 * With event index: when its event index (at `ring[eventAt]`) lies in between; without: unless
 * it set `noFlag` in its flags (`ring[0]`: the used ring's NO_NOTIFY, the available ring's
 * NO_INTERRUPT).
 */
function wantsEvent(
  ring: Uint16Array,
  noFlag: number,
  eventAt: number,
  eventIdx: boolean,
  newIdx: number,
  oldIdx: number,
): boolean {
  if (eventIdx) return needEvent(Atomics.load(ring, eventAt), newIdx, oldIdx);
  return (Atomics.load(ring, 0) & noFlag) === 0;
}

/** Typed views of a split ring's three areas, as both sides read and write them. */
interface SplitViews {
  /** addr lo [4i], addr hi [4i+1], len [4i+2]. */
  desc32: Uint32Array;
  /** flags [8i+6], next [8i+7]. */
  desc16: Uint16Array;
  /** flags [0], idx [1], ring [2+i], used_event [2+size]. */
  avail: Uint16Array;
  /** flags [0], idx [1], avail_event [2+4*size]. */
  used16: Uint16Array;
  /** id [1+2i], len [2+2i]. */
  used32: Uint32Array;
}

/**
 * Checks the queue size, the areas' addresses when given (the driver side hands them to the
 * backend) and their memory (§2.7: descriptor table 16-byte aligned, available ring 2, used
 * ring 4), then lays the views over the areas.
 */
function splitViews(
  desc: Uint8Array,
  driver: Uint8Array,
  device: Uint8Array,
  size: number,
  name: string,
  addresses?: QueueAddresses,
): SplitViews {
  checkQueueSize(size, false, name);
  if (addresses !== undefined) {
    checkRingAddress(name, "descriptor table", addresses.desc, 16);
    checkRingAddress(name, "available ring", addresses.driver, 2);
    checkRingAddress(name, "used ring", addresses.device, 4);
  }
  checkRingArea(name, "descriptor table", desc, size * DESC_BYTES, 16);
  checkRingArea(name, "available ring", driver, 6 + 2 * size, 2);
  checkRingArea(name, "used ring", device, 6 + 8 * size, 4);
  return {
    desc32: new Uint32Array(desc.buffer, desc.byteOffset, size * 4),
    desc16: new Uint16Array(desc.buffer, desc.byteOffset, size * 8),
    avail: new Uint16Array(driver.buffer, driver.byteOffset, 3 + size),
    used16: new Uint16Array(device.buffer, device.byteOffset, 3 + 4 * size),
    used32: new Uint32Array(device.buffer, device.byteOffset, 1 + 2 * size),
  };
}

/** A split ring's start position (vhost SET_VRING_BASE) is a 16-bit avail index (§2.7.6). */
function checkSplitBase(name: string, what: string, base: number): number {
  if (!Number.isInteger(base) || base < 0 || base > 0xffff) {
    throw new VirtqueueError(name, `${what} ${base} is not a 16-bit avail index`);
  }
  return base;
}
