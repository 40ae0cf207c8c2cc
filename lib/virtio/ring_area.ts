/**
 * What both ring layouts check about a queue's size and the memory of its three areas
 * (descriptor area, driver area, device area): queue sizes (virtio 1.2 §2.6: at most 32768;
 * §2.7 split: a power of two; §2.8 packed: any value), each area's size and alignment (§2.7,
 * §2.8.10.1), and where this package places the areas in one block.
 *
 * ```
 *   block (64-byte aligned): | descriptor area | pad | driver area | pad | device area | pad |
 *                            each area starts on a 64-byte boundary (AREA_ALIGN)
 * ```
 *
 * @module
 */

import { VirtqueueError } from "./virtqueue.ts";

/** The largest queue size of either layout (§2.6). */
export const MAX_QUEUE_SIZE = 32768;
/** Areas start on cache lines so the driver's and the device's writes do not share one. */
export const AREA_ALIGN = 64;

/**
 * `n` rounded up to a multiple of `align`.
 *
 * @example
 * ```ts
 * import { alignUp } from "./ring_area.ts";
 * console.assert(alignUp(4097, 64) === 4160 && alignUp(4096, 64) === 4096);
 * ```
 */
export function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/**
 * Checks a queue size: 1 to 32768, and for a split ring a power of two (§2.7; packed: any value,
 * §2.8). The size may come from the peer (vhost SET_VRING_NUM): with `queue` it throws
 * {@linkcode VirtqueueError}, without (a layout asked for by this process) RangeError.
 *
 * @throws {VirtqueueError | RangeError} when the size is not one the layout allows.
 * @example
 * ```ts
 * import { checkQueueSize } from "./ring_area.ts";
 * checkQueueSize(1000, true); // packed: fine
 * try {
 *   checkQueueSize(1000, false, "rx0");
 * } catch (e) {
 *   console.assert((e as Error).message === "virtqueue rx0: split ring size 1000 must be a power of two up to 32768");
 * }
 * ```
 */
export function checkQueueSize(size: number, packed: boolean, queue?: string): void {
  if (Number.isInteger(size) && size >= 1 && size <= MAX_QUEUE_SIZE) {
    if (packed || (size & (size - 1)) === 0) return;
  }
  const rule = packed
    ? `packed ring size ${size} must be an integer from 1 to ${MAX_QUEUE_SIZE}`
    : `split ring size ${size} must be a power of two up to ${MAX_QUEUE_SIZE}`;
  if (queue === undefined) throw new RangeError(rule);
  throw new VirtqueueError(queue, rule);
}

/**
 * Checks that a ring area's memory is large enough and aligned as the spec requires (checked on
 * `bytes.byteOffset`, which also lets typed-array views be laid over it).
 *
 * @param queue queue name for the error.
 * @param what the area, e.g. `"used ring"`.
 * @param bytes the area's memory.
 * @param need bytes the area must hold.
 * @param align alignment in bytes.
 * @throws {VirtqueueError} when the area is too small or misaligned.
 * @example
 * ```ts
 * import { checkRingArea } from "./ring_area.ts";
 * import { VirtqueueError } from "./virtqueue.ts";
 * checkRingArea("rx0", "used ring", new Uint8Array(64), 38, 4); // fine
 * try {
 *   checkRingArea("rx0", "used ring", new Uint8Array(64).subarray(2), 38, 4);
 * } catch (e) {
 *   console.assert(e instanceof VirtqueueError);
 * }
 * ```
 */
export function checkRingArea(
  queue: string,
  what: string,
  bytes: Uint8Array,
  need: number,
  align: number,
): void {
  if (bytes.byteLength < need) {
    throw new VirtqueueError(queue, `${what} has ${bytes.byteLength} bytes, needs ${need}`);
  }
  if (bytes.byteOffset % align !== 0) {
    throw new VirtqueueError(
      queue,
      `${what} starts at byte ${bytes.byteOffset} of its buffer, not on a ${align}-byte boundary`,
    );
  }
}

/**
 * Checks that a ring area's address (as handed to the backend) is `align`-byte aligned.
 *
 * @throws {VirtqueueError} when it is not.
 * @example
 * ```ts
 * import { checkRingAddress } from "./ring_area.ts";
 * checkRingAddress("tx0", "descriptor table", 0x10000000, 16); // fine
 * ```
 */
export function checkRingAddress(queue: string, what: string, addr: number, align: number): void {
  if (!Number.isSafeInteger(addr) || addr < 0 || addr % align !== 0) {
    throw new VirtqueueError(
      queue,
      `${what} address 0x${addr.toString(16)} is not ${align}-byte aligned`,
    );
  }
}
