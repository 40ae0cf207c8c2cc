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
  const layout = layoutOf(packed, size);
  if (at < 0) at = memory.alloc(layout.byteLength, RING_ALIGN);
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
  const options = { buffers, addresses, eventIdx };
  return packed
    ? new PackedDriverQueue(desc, driver, device, size, name, { ...options, inOrder })
    : new SplitDriverQueue(desc, driver, device, size, name, options);
}
