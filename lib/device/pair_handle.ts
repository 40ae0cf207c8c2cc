/**
 * The shared-memory mailbox between a vhost-user session (one thread) and a Worker serving one
 * of its queue pairs: what the Worker needs to serve the pair (the memory table with one fd per
 * region, both vrings' sizes, addresses, positions and call fds), the commands, and the
 * positions the Worker reports when it stops (GET_VRING_BASE).
 *
 * ```
 *   Int32 words:  command │ request # │ ack # │ state │ error length
 *   Float64 slots: regions (gpa, size, uva, mmap offset, fd) × 8 │ flags │ rx ring │ tx ring │
 *                  stopped-at positions
 *   session thread: write slots, command, Atomics.add(request) + notify ─► Worker
 *   Worker: act, Atomics.store(ack = request) + notify ─► session thread (bounded wait)
 * ```
 *
 * A plain, lock-free hand-over: only the session thread writes a request, only the Worker
 * answers it, and each side publishes with a seq_cst `Atomics` store after its plain writes.
 *
 * @module
 */

import type { NetDeviceOptions } from "./net_device.ts";

/** The message that starts a pair Worker (`pair_worker.ts`). */
export interface PairWorkerStart {
  /** Always `"start"`. */
  type: "start";
  /** Queue pair number (for names in errors). */
  index: number;
  /** Int32 mailbox words ({@linkcode PAIR_WORDS}) then the error text bytes. */
  mailbox: SharedArrayBuffer;
  /** Float64 handle slots ({@linkcode PAIR_SLOTS}). */
  handle: SharedArrayBuffer;
  /** Counters: two Int32 words (the counters' sequence), then one Float64 per counter. */
  counters: SharedArrayBuffer;
  /** Data path options (mode, macSwap, frame, burst). */
  options: NetDeviceOptions;
}

/** Commands (word {@linkcode PairWord.COMMAND}). */
export const PairCommand = {
  /** Map the handle's memory and serve its two vrings. */
  ATTACH: 1,
  /** Stop serving (publish what was taken), report the positions, unmap, close the fds. */
  DETACH: 2,
  /** Detach and end the Worker. */
  EXIT: 3,
} as const;

/** States (word {@linkcode PairWord.STATE}). */
export const PairState = {
  /** Not serving a pair. */
  DETACHED: 0,
  /** Serving its pair. */
  RUNNING: 1,
  /** Stopped by a rule the frontend broke, or an ATTACH that failed: see the error text. */
  FAULTED: 2,
} as const;

/** Int32 words of the mailbox. */
export const PairWord = {
  /** The command of the latest request. */
  COMMAND: 0,
  /** Request number, bumped by the session thread for each command. */
  REQUEST: 1,
  /** The request number the Worker has finished. */
  ACK: 2,
  /** One of {@linkcode PairState}. */
  STATE: 3,
  /** Bytes of UTF-8 error text in the error area. */
  ERROR_LENGTH: 4,
} as const;

/** Int32 words in the mailbox. */
export const PAIR_WORDS = 8;
/** Bytes of error text kept. */
export const PAIR_ERROR_BYTES = 1024;
/** Float64 slots of a handle. */
export const PAIR_SLOTS = 64;
/** Most memory regions (vhost-user's limit). */
const MAX_REGIONS = 8;
/** Slots per region: guest physical address, size, user address, mmap offset, fd. */
const REGION_SLOTS = 5;
/** Slot of the region count; regions follow. */
const NREGIONS = 0;
/** Flag slots: packed rings, EVENT_IDX, MRG_RXBUF, IN_ORDER. */
const PACKED = 1 + MAX_REGIONS * REGION_SLOTS, EVENT_IDX = PACKED + 1, MERGEABLE = PACKED + 2;
const IN_ORDER = PACKED + 3;
/** Ring slots (rx at RINGS, tx at RINGS + RING_SLOTS): size, desc, driver, device, base, call fd. */
const RINGS = IN_ORDER + 1, RING_SLOTS = 6;
/** Where the Worker leaves the rx and tx positions it stopped at. */
const STOPPED_AT = RINGS + 2 * RING_SLOTS;

/** One region of the memory table, with the fd that backs it. */
export interface PairRegion {
  /** Guest physical address. */
  guestPhysAddr: number;
  /** Bytes. */
  size: number;
  /** Frontend virtual address. */
  userspaceAddr: number;
  /** Offset into the fd. */
  mmapOffset: number;
  /** An fd the receiving Worker owns from the hand-over on. */
  fd: number;
}

/** One vring as the Worker rebuilds it. */
export interface PairRing {
  /** Ring size. */
  size: number;
  /** Descriptor area address (frontend VA). */
  desc: number;
  /** Driver area address. */
  driver: number;
  /** Device area address. */
  device: number;
  /** Position to start at (GET_VRING_BASE format). */
  base: number;
  /** Call eventfd the Worker owns from the hand-over on, or -1. */
  callFd: number;
}

/** What a Worker needs to serve one queue pair. */
export interface PairHandle {
  /** The memory table. */
  regions: PairRegion[];
  /** F_RING_PACKED negotiated. */
  packed: boolean;
  /** RING_F_EVENT_IDX negotiated. */
  eventIdx: boolean;
  /** NET_F_MRG_RXBUF negotiated. */
  mergeable: boolean;
  /** F_IN_ORDER negotiated. */
  inOrder: boolean;
  /** The receiveq (vring 2i). */
  rx: PairRing;
  /** The transmitq (vring 2i + 1). */
  tx: PairRing;
}

/**
 * Writes `h` into the handle slots (session thread, before the ATTACH request).
 *
 * @example
 * ```ts
 * import { PAIR_SLOTS, readHandle, writeHandle } from "./pair_handle.ts";
 * const slots = new Float64Array(PAIR_SLOTS);
 * const ring = { size: 256, desc: 0x1000, driver: 0x2000, device: 0x3000, base: 0, callFd: -1 };
 * writeHandle(slots, { regions: [], packed: false, eventIdx: false, mergeable: true, inOrder: false, rx: ring, tx: ring });
 * console.assert(readHandle(slots).mergeable && readHandle(slots).rx.size === 256);
 * ```
 */
export function writeHandle(slots: Float64Array, h: PairHandle): void {
  if (h.regions.length > MAX_REGIONS) {
    throw new RangeError(`${h.regions.length} memory regions; at most ${MAX_REGIONS}`);
  }
  slots[NREGIONS] = h.regions.length;
  h.regions.forEach((r, i) => {
    const at = 1 + i * REGION_SLOTS;
    slots[at] = r.guestPhysAddr;
    slots[at + 1] = r.size;
    slots[at + 2] = r.userspaceAddr;
    slots[at + 3] = r.mmapOffset;
    slots[at + 4] = r.fd;
  });
  slots[PACKED] = h.packed ? 1 : 0;
  slots[EVENT_IDX] = h.eventIdx ? 1 : 0;
  slots[MERGEABLE] = h.mergeable ? 1 : 0;
  slots[IN_ORDER] = h.inOrder ? 1 : 0;
  [h.rx, h.tx].forEach((ring, k) => {
    const at = RINGS + k * RING_SLOTS;
    slots[at] = ring.size;
    slots[at + 1] = ring.desc;
    slots[at + 2] = ring.driver;
    slots[at + 3] = ring.device;
    slots[at + 4] = ring.base;
    slots[at + 5] = ring.callFd;
  });
}

/**
 * Reads a handle written by {@linkcode writeHandle} (Worker, after seeing the request).
 *
 * @example
 * ```ts
 * import { PAIR_SLOTS, readHandle } from "./pair_handle.ts";
 * console.assert(readHandle(new Float64Array(PAIR_SLOTS)).regions.length === 0);
 * ```
 */
export function readHandle(slots: Float64Array): PairHandle {
  const regions: PairRegion[] = [];
  for (let i = 0; i < slots[NREGIONS]; i++) {
    const at = 1 + i * REGION_SLOTS;
    regions.push({
      guestPhysAddr: slots[at],
      size: slots[at + 1],
      userspaceAddr: slots[at + 2],
      mmapOffset: slots[at + 3],
      fd: slots[at + 4],
    });
  }
  const ring = (k: number): PairRing => {
    const at = RINGS + k * RING_SLOTS;
    return {
      size: slots[at],
      desc: slots[at + 1],
      driver: slots[at + 2],
      device: slots[at + 3],
      base: slots[at + 4],
      callFd: slots[at + 5],
    };
  };
  return {
    regions,
    packed: slots[PACKED] === 1,
    eventIdx: slots[EVENT_IDX] === 1,
    mergeable: slots[MERGEABLE] === 1,
    inOrder: slots[IN_ORDER] === 1,
    rx: ring(0),
    tx: ring(1),
  };
}

/**
 * The positions the Worker stopped its rx and tx vrings at (GET_VRING_BASE values); written by
 * the Worker before it acknowledges a DETACH, read by the session thread after.
 *
 * @example
 * ```ts
 * import { PAIR_SLOTS, stoppedAt } from "./pair_handle.ts";
 * const slots = new Float64Array(PAIR_SLOTS);
 * stoppedAt(slots, 1, 42);
 * console.assert(stoppedAt(slots, 1) === 42);
 * ```
 */
export function stoppedAt(slots: Float64Array, ring: 0 | 1, position?: number): number {
  if (position !== undefined) slots[STOPPED_AT + ring] = position;
  return slots[STOPPED_AT + ring];
}
