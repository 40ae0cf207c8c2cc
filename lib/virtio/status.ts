/**
 * Device status (virtio 1.2 §2.1) and the order in which a driver sets it (§3.1.1).
 *
 * @module
 */

/** Device status bits (virtio 1.2 §2.1). */
export const DeviceStatus = {
  /** The guest OS has found the device. */
  ACKNOWLEDGE: 0x1,
  /** The guest OS knows how to drive the device. */
  DRIVER: 0x2,
  /** The driver is set up and ready to drive the device. */
  DRIVER_OK: 0x4,
  /** The driver has acknowledged the features it understands. */
  FEATURES_OK: 0x8,
  /** The device hit an error it cannot recover from without a reset. */
  DEVICE_NEEDS_RESET: 0x40,
  /** Something went wrong in the driver; it gave up on the device. */
  FAILED: 0x80,
} as const;

/**
 * Names the bits set in a status byte, for messages.
 *
 * @example
 * ```ts
 * import { DeviceStatus, statusName } from "./status.ts";
 * console.assert(statusName(DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER) === "ACKNOWLEDGE|DRIVER");
 * ```
 */
export function statusName(status: number): string {
  if (status === 0) return "RESET";
  const names = Object.entries(DeviceStatus)
    .filter(([, bit]) => (status & bit) !== 0)
    .map(([name]) => name);
  return names.join("|");
}

/**
 * The initialization steps of §3.1.1 in order; each step's status includes all earlier bits.
 *
 * @example
 * ```ts
 * import { DeviceStatus, initSequence } from "./status.ts";
 * console.assert(initSequence.at(-1) === 0xf);
 * console.assert((initSequence[2] & DeviceStatus.FEATURES_OK) !== 0);
 * ```
 */
export const initSequence: readonly number[] = [
  DeviceStatus.ACKNOWLEDGE,
  DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER,
  DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK,
  DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK |
  DeviceStatus.DRIVER_OK,
];
