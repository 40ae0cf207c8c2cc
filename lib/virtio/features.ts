/**
 * Feature bits (virtio 1.2 §6 reserved bits, §5.1.3 net device bits) and negotiation.
 *
 * @module
 */

/** Feature bit numbers used by this stack (virtio 1.2 §5.1.3, §6; vhost-user bit 30). */
export const Feature = {
  NET_F_CSUM: 0,
  NET_F_GUEST_CSUM: 1,
  NET_F_MTU: 3,
  NET_F_MAC: 5,
  NET_F_GUEST_TSO4: 7,
  NET_F_GUEST_TSO6: 8,
  NET_F_HOST_TSO4: 11,
  NET_F_HOST_TSO6: 12,
  NET_F_MRG_RXBUF: 15,
  NET_F_STATUS: 16,
  NET_F_CTRL_VQ: 17,
  NET_F_MQ: 22,
  F_NOTIFY_ON_EMPTY: 24,
  VHOST_NET_F_VIRTIO_NET_HDR: 27,
  RING_F_INDIRECT_DESC: 28,
  RING_F_EVENT_IDX: 29,
  VHOST_USER_F_PROTOCOL_FEATURES: 30,
  F_VERSION_1: 32,
  F_ACCESS_PLATFORM: 33,
  F_RING_PACKED: 34,
  F_IN_ORDER: 35,
  F_ORDER_PLATFORM: 36,
  F_NOTIFICATION_DATA: 38,
} as const;

/** A feature bit name, as in {@linkcode Feature}. */
export type FeatureName = keyof typeof Feature;

/**
 * The mask of one or more feature bits.
 *
 * @example
 * ```ts
 * import { featureMask } from "./features.ts";
 * console.assert(featureMask("F_VERSION_1", "NET_F_MAC") === (1n << 32n) | (1n << 5n));
 * ```
 */
export function featureMask(...names: FeatureName[]): bigint {
  let mask = 0n;
  for (const name of names) mask |= 1n << BigInt(Feature[name]);
  return mask;
}

/**
 * True when `features` has bit `name`.
 *
 * @example
 * ```ts
 * import { featureMask, hasFeature } from "./features.ts";
 * console.assert(hasFeature(featureMask("F_RING_PACKED"), "F_RING_PACKED"));
 * ```
 */
export function hasFeature(features: bigint, name: FeatureName): boolean {
  return (features >> BigInt(Feature[name]) & 1n) === 1n;
}

/**
 * The net device's checksum and TSO offload bits (§5.1.3): CSUM, GUEST_CSUM, GUEST_TSO4/6,
 * HOST_TSO4/6.
 */
export const NET_OFFLOAD_FEATURES: bigint = featureMask(
  "NET_F_CSUM",
  "NET_F_GUEST_CSUM",
  "NET_F_GUEST_TSO4",
  "NET_F_GUEST_TSO6",
  "NET_F_HOST_TSO4",
  "NET_F_HOST_TSO6",
);

/** The transmit offload bits (CSUM, HOST_TSO4/6): with one, the driver's headers carry requests. */
export const NET_TX_OFFLOAD_FEATURES: bigint = featureMask(
  "NET_F_CSUM",
  "NET_F_HOST_TSO4",
  "NET_F_HOST_TSO6",
);

/**
 * Describes a feature mask as `NAME(bit)` items, unknown bits as `bit N`, for messages and logs.
 *
 * @example
 * ```ts
 * import { describeFeatures, featureMask } from "./features.ts";
 * console.assert(describeFeatures(featureMask("F_VERSION_1")) === "F_VERSION_1(32)");
 * ```
 */
export function describeFeatures(features: bigint): string {
  const parts: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((features >> BigInt(bit) & 1n) === 0n) continue;
    const name = Object.entries(Feature).find(([, b]) => b === bit)?.[0];
    parts.push(name ? `${name}(${bit})` : `bit ${bit}`);
  }
  return parts.join(" ") || "none";
}

/**
 * Describes the bits of `wanted` that `offered` lacks (for "not offered" errors), or returns
 * `undefined` when `wanted` is a subset of `offered` (virtio 1.2 §2.2: accept only what is offered).
 *
 * @example
 * ```ts
 * import { featureMask, unofferedFeatures } from "./features.ts";
 * console.assert(unofferedFeatures(featureMask("F_VERSION_1"), 0n) === "F_VERSION_1(32)");
 * ```
 */
export function unofferedFeatures(wanted: bigint, offered: bigint): string | undefined {
  const extra = wanted & ~offered;
  return extra === 0n ? undefined : describeFeatures(extra);
}
