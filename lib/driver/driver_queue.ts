/**
 * Places a driver-side virtqueue of either layout inside {@linkcode SharedMemory}: the one spot
 * where the net driver picks split (§2.7) or packed (§2.8).
 *
 * @module
 */

import type { SharedMemory } from "./shared_memory.ts";
import { PackedDriverQueue, packedRingLayout } from "../virtio/packed_ring.ts";
import { SplitDriverQueue, splitRingLayout } from "../virtio/split_ring.ts";
import type { BufferTable, DriverQueue, RingLayout } from "../virtio/virtqueue.ts";

/** Alignment of a ring block: a page, so no ring shares a page with packet buffers. */
export const RING_ALIGN = 4096;

function layoutOf(packed: boolean, size: number): RingLayout {
  return packed ? packedRingLayout(size) : splitRingLayout(size);
}

/**
 * Bytes one queue of this layout and size takes in shared memory.
 *
 * @example
 * ```ts
 * import { ringBytes } from "./driver_queue.ts";
 * console.assert(ringBytes(true, 256) >= 256 * 16);
 * ```
 */
export function ringBytes(packed: boolean, size: number): number {
  return layoutOf(packed, size).byteLength;
}

/**
 * Allocates a ring block in `memory` (or reuses the one at byte offset `at`, e.g. to start a
 * fresh ring after the backend changed) and returns the driver side of a queue over it.
 *
 * @example
 * ```ts ignore
 * import { createDriverQueue } from "./driver_queue.ts";
 * const rx = createDriverQueue(memory, true, 256, "rx0", pool, false);
 * ```
 */
export function createDriverQueue(
  memory: SharedMemory,
  packed: boolean,
  size: number,
  name: string,
  buffers: BufferTable,
  eventIdx: boolean,
  inOrder = false,
  at = -1,
): DriverQueue {
  if (at < 0) at = memory.alloc(layoutOf(packed, size).byteLength, RING_ALIGN);
  return driverQueueAt(memory, at, { packed, size, name, buffers, eventIdx, inOrder });
}

/** How {@linkcode driverQueueAt} builds a queue. */
export interface DriverQueuePlacement {
  /** Packed (§2.8) or split (§2.7) layout. */
  packed: boolean;
  /** Queue size. */
  size: number;
  /** Name for error messages, e.g. `rx1`. */
  name: string;
  /** Buffer addresses by number. */
  buffers: BufferTable;
  /** VIRTIO_RING_F_EVENT_IDX negotiated. */
  eventIdx: boolean;
  /** VIRTIO_F_IN_ORDER negotiated (packed rings). */
  inOrder: boolean;
  /** False: take over a fresh ring another instance reset there (see `PackedDriverOptions`). */
  reset?: boolean;
}

/**
 * The driver side of a queue whose ring block starts at byte `at` of `memory` (as
 * {@linkcode createDriverQueue} placed it); with `reset: false`, a second instance over the same
 * block, e.g. in the Worker that drives the queue pair.
 *
 * @example
 * ```ts ignore
 * import { driverQueueAt } from "./driver_queue.ts";
 * const rx = driverQueueAt(view, handle.rxRing, { packed: true, size: 256, name: "rx1",
 *   buffers: pool, eventIdx: false, inOrder: true, reset: false });
 * ```
 */
export function driverQueueAt(
  memory: SharedMemory,
  at: number,
  placement: DriverQueuePlacement,
): DriverQueue {
  const { packed, size, name, buffers, eventIdx, inOrder, reset } = placement;
  const layout = layoutOf(packed, size);
  const area = (offset: number, length: number) =>
    new Uint8Array(memory.buffer, at + offset, length);
  const desc = area(layout.descOffset, layout.descSize);
  const driver = area(layout.driverOffset, layout.driverSize);
  const device = area(layout.deviceOffset, layout.deviceSize);
  const addresses = {
    desc: memory.addr + at + layout.descOffset,
    driver: memory.addr + at + layout.driverOffset,
    device: memory.addr + at + layout.deviceOffset,
  };
  const options = { buffers, addresses, eventIdx, reset };
  return packed
    ? new PackedDriverQueue(desc, driver, device, size, name, { ...options, inOrder })
    : new SplitDriverQueue(desc, driver, device, size, name, options);
}

/**
 * Byte offset in its memory of the ring block of a queue {@linkcode createDriverQueue} placed
 * there (the inverse of the addresses it computed).
 *
 * @example
 * ```ts ignore
 * import { ringOffset } from "./driver_queue.ts";
 * const at = ringOffset(memory, true, 256, rx.addresses);
 * ```
 */
export function ringOffset(
  memory: SharedMemory,
  packed: boolean,
  size: number,
  addresses: { desc: number },
): number {
  return addresses.desc - memory.addr - layoutOf(packed, size).descOffset;
}
