/**
 * The virtio-net device configuration layout, `struct virtio_net_config` (virtio 1.2 §5.1.4),
 * little endian:
 *
 * ```
 *   0 mac[6]   6 status u16   8 max_virtqueue_pairs u16   10 mtu u16   12 speed u32   16 duplex u8
 * ```
 *
 * Each field is valid only with its feature: mac with VIRTIO_NET_F_MAC, status with
 * VIRTIO_NET_F_STATUS, max_virtqueue_pairs with VIRTIO_NET_F_MQ, mtu with VIRTIO_NET_F_MTU.
 *
 * @module
 */

/** Bytes of the fields read here (mac, status, max_virtqueue_pairs, mtu). */
export const NET_CONFIG_READ_SIZE = 12;

/** `status`: VIRTIO_NET_S_LINK_UP (§5.1.4). */
export const NET_S_LINK_UP = 1;

/** Byte offset of `status` (§5.1.4). */
export const NET_CONFIG_STATUS = 6;

/** The fields of a virtio_net_config read with {@linkcode parseNetConfig}. */
export interface NetConfig {
  /** The device's MAC address. */
  mac: Uint8Array;
  /** Status bits (VIRTIO_NET_S_LINK_UP = 1, VIRTIO_NET_S_ANNOUNCE = 2). */
  status: number;
  /** Queue pairs the device supports. */
  maxVirtqueuePairs: number;
  /** The MTU the device advises. */
  mtu: number;
}

/**
 * Decodes the first {@linkcode NET_CONFIG_READ_SIZE} bytes of a virtio_net_config.
 *
 * @example
 * ```ts
 * import { parseNetConfig } from "./net_config.ts";
 * const c = parseNetConfig(new Uint8Array([2, 0, 0, 0, 0, 1, 1, 0, 2, 0, 0x28, 0x23]));
 * console.assert(c.mac[5] === 1 && c.status === 1 && c.maxVirtqueuePairs === 2 && c.mtu === 9000);
 * ```
 */
export function parseNetConfig(bytes: Uint8Array): NetConfig {
  if (bytes.length < NET_CONFIG_READ_SIZE) {
    throw new RangeError(
      `virtio_net_config: ${bytes.length} bytes, need ${NET_CONFIG_READ_SIZE} (§5.1.4)`,
    );
  }
  const le16 = (o: number) => bytes[o] | bytes[o + 1] << 8;
  return {
    mac: bytes.slice(0, 6),
    status: le16(6),
    maxVirtqueuePairs: le16(8),
    mtu: le16(10),
  };
}
