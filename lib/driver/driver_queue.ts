/**
 * Places a driver-side virtqueue of either layout inside {@linkcode SharedMemory}: the one spot
 * where the net driver picks split (§2.7) or packed (§2.8).
 *
 * @module
 */

import type { SharedMemory } from "./shared_memory.ts";
import { PackedDeviceQueue, PackedDriverQueue, packedRingLayout } from "../virtio/packed_ring.ts";
import { SplitDeviceQueue, SplitDriverQueue, splitRingLayout } from "../virtio/split_ring.ts";
import type {
  AddressTranslator,
  BufferTable,
  DeviceQueue,
  DriverQueue,
  QueueAddresses,
  RingLayout,
} from "../virtio/virtqueue.ts";

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
  /** Every buffer is an indirect table (the control queue; see `SplitDriverOptions`). */
  indirect?: boolean;
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
  const { packed, size, name, buffers, eventIdx, inOrder, reset, indirect } = placement;
  const { desc, driver, device, addresses } = ringAreas(memory, at, packed, size);
  const options = { buffers, addresses, eventIdx, reset, indirect };
  return packed
    ? new PackedDriverQueue(desc, driver, device, size, name, { ...options, inOrder })
    : new SplitDriverQueue(desc, driver, device, size, name, options);
}

/**
 * The device side of a queue whose ring block starts at byte `at` of `memory`, served in this
 * process (the emulated control queue), its descriptors translated by `translator` (a
 * `LocalMemory` over `memory`). Notifications stay on; no event index.
 *
 * @example
 * ```ts ignore
 * import { deviceQueueAt } from "./driver_queue.ts";
 * const local = new LocalMemory(new Uint8Array(memory.buffer), memory.addr);
 * const device = deviceQueueAt(memory, at, true, 8, "ctrl", local);
 * ```
 */
export function deviceQueueAt(
  memory: SharedMemory,
  at: number,
  packed: boolean,
  size: number,
  name: string,
  translator: AddressTranslator,
): DeviceQueue {
  const { desc, driver, device } = ringAreas(memory, at, packed, size);
  const options = { memory: translator };
  return packed
    ? new PackedDeviceQueue(desc, driver, device, size, name, options)
    : new SplitDeviceQueue(desc, driver, device, size, name, options);
}

/** Views and addresses of the three areas of the ring block at byte `at` of `memory`. */
function ringAreas(memory: SharedMemory, at: number, packed: boolean, size: number): {
  desc: Uint8Array;
  driver: Uint8Array;
  device: Uint8Array;
  addresses: QueueAddresses;
} {
  const layout = layoutOf(packed, size);
  const area = (offset: number, length: number) =>
    new Uint8Array(memory.buffer, at + offset, length);
  return {
    desc: area(layout.descOffset, layout.descSize),
    driver: area(layout.driverOffset, layout.driverSize),
    device: area(layout.deviceOffset, layout.deviceSize),
    addresses: {
      desc: memory.addr + at + layout.descOffset,
      driver: memory.addr + at + layout.driverOffset,
      device: memory.addr + at + layout.deviceOffset,
    },
  };
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
