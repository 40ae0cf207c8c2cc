/**
 * Checksum and TCP segmentation offloads through the virtio-net header (virtio 1.2 §5.1.6.2,
 * §5.1.6.4): what to negotiate for them, and per-frame helpers that write a request into a
 * buffer's header or finish what the device left partial.
 *
 * ```
 *   open({ offloads: { txChecksum, txTso4, ... } }) ──► NET_F_CSUM, HOST_TSO4, ... (§5.1.3.1 deps)
 *   requestTxChecksum(bytes, hdr, len) ─► pseudo-header sum in the L4 field + NEEDS_CSUM
 *   requestTxTso(bytes, hdr, len, mss) ─► the above + gso_type TCPV4/6, gso_size, hdr_len
 *   rx header: DATA_VALID (checked) | NEEDS_CSUM (partial) ──completeChecksum──► finished field
 * ```
 *
 * The header rule: with a transmit offload negotiated, `pool.alloc` hands out buffers with a
 * zeroed header and txBurst sends the header as the caller left it, minus the receive-only
 * bits (DATA_VALID, RSC_INFO, num_buffers; a received frame sent on keeps NEEDS_CSUM and GSO,
 * which still describe it). Without one, txBurst zeroes every header, as before.
 *
 * @module
 */

import { featureMask, type FeatureName, hasFeature } from "../virtio/features.ts";
import {
  NET_HDR_F_NEEDS_CSUM,
  NET_HDR_FLAGS,
  NET_HDR_GSO_TCPV4,
  NET_HDR_GSO_TCPV6,
  NET_HDR_SIZE,
  netHdrCsumOffset,
  netHdrCsumStart,
  setNetHdrChecksum,
  setNetHdrGso,
} from "../virtio/net_hdr.ts";
import {
  FrameFlag,
  parseFrame,
  VIEW_L3,
  VIEW_L4,
  VIEW_L4_LENGTH,
  VIEW_PAYLOAD,
  VIEW_SIZE,
} from "../packet/frame_view.ts";
import { onesSum, write16 } from "../packet/checksum.ts";
import { ipv4PseudoSum } from "../packet/ipv4.ts";
import { ipv6PseudoSum } from "../packet/ipv6.ts";

/**
 * Offloads a port may use (`VirtioNetOptions.offloads`, and what `VirtioNet.offloads` reports
 * as negotiated). `tx*`: the driver may ask the device to do the work on frames it sends;
 * `rx*`: the device may hand the driver frames with the work left undone.
 */
export interface Offloads {
  /** VIRTIO_NET_F_CSUM: send frames with a partial checksum (NEEDS_CSUM, §5.1.6.2). */
  txChecksum: boolean;
  /** VIRTIO_NET_F_HOST_TSO4: send TCP/IPv4 segments larger than the MTU (needs txChecksum). */
  txTso4: boolean;
  /** VIRTIO_NET_F_HOST_TSO6: send TCP/IPv6 segments larger than the MTU (needs txChecksum). */
  txTso6: boolean;
  /** VIRTIO_NET_F_GUEST_CSUM: receive NEEDS_CSUM / DATA_VALID frames (§5.1.6.4). */
  rxChecksum: boolean;
  /**
   * VIRTIO_NET_F_GUEST_TSO4: receive whole TCP/IPv4 segments up to 64 KB (needs rxChecksum, and
   * mergeable buffers or 65562-byte ones, §5.1.6.3.1).
   */
  rxTso4: boolean;
  /** VIRTIO_NET_F_GUEST_TSO6: as rxTso4 for TCP/IPv6. */
  rxTso6: boolean;
}

/** Each offload's feature bit and the offload it depends on (virtio 1.2 §5.1.3.1). */
const OFFLOAD_BITS: Record<keyof Offloads, { bit: FeatureName; needs?: keyof Offloads }> = {
  txChecksum: { bit: "NET_F_CSUM" },
  txTso4: { bit: "NET_F_HOST_TSO4", needs: "txChecksum" },
  txTso6: { bit: "NET_F_HOST_TSO6", needs: "txChecksum" },
  rxChecksum: { bit: "NET_F_GUEST_CSUM" },
  rxTso4: { bit: "NET_F_GUEST_TSO4", needs: "rxChecksum" },
  rxTso6: { bit: "NET_F_GUEST_TSO6", needs: "rxChecksum" },
};

/**
 * The feature bits for the offloads asked for, each checked against `offered` and against its
 * dependency (§5.1.3.1: HOST_TSO4/6 require CSUM, GUEST_TSO4/6 require GUEST_CSUM). Throws a
 * `TypeError` naming the option and bit for an impossible combination, an `Error` for one the
 * device does not offer.
 *
 * @example
 * ```ts
 * import { offloadFeatures } from "./offload.ts";
 * import { featureMask } from "../virtio/features.ts";
 * const offered = featureMask("NET_F_CSUM", "NET_F_HOST_TSO4");
 * console.assert(offloadFeatures({ txChecksum: true, txTso4: true }, offered, "dev") === offered);
 * ```
 */
export function offloadFeatures(asked: Partial<Offloads>, offered: bigint, device: string): bigint {
  let mask = 0n;
  for (const [name, { bit, needs }] of Object.entries(OFFLOAD_BITS)) {
    if (!asked[name as keyof Offloads]) continue;
    if (needs !== undefined && !asked[needs]) {
      throw new TypeError(
        `offloads.${name} (${bit}, bit ${bitOf(bit)}) needs offloads.${needs} (` +
          `${OFFLOAD_BITS[needs].bit}, bit ${bitOf(OFFLOAD_BITS[needs].bit)}): virtio 1.2 §5.1.3.1`,
      );
    }
    if (!hasFeature(offered, bit)) {
      throw new Error(
        `${device} does not offer ${bit} (bit ${bitOf(bit)}) that offloads.${name} asks for; ` +
          "leave that offload off for this backend",
      );
    }
    mask |= featureMask(bit);
  }
  return mask;
}

/**
 * The offloads a negotiated feature set turns on.
 *
 * @example
 * ```ts
 * import { negotiatedOffloads } from "./offload.ts";
 * import { featureMask } from "../virtio/features.ts";
 * console.assert(negotiatedOffloads(featureMask("NET_F_GUEST_CSUM")).rxChecksum);
 * ```
 */
export function negotiatedOffloads(features: bigint): Offloads {
  const o = {} as Offloads;
  for (const [name, { bit }] of Object.entries(OFFLOAD_BITS)) {
    o[name as keyof Offloads] = hasFeature(features, bit);
  }
  return o;
}

function bitOf(name: FeatureName): number {
  return featureMask(name).toString(2).length - 1;
}

/** Scratch for parseFrame: one per thread (module), so no allocation per frame. */
const view = new Int32Array(VIEW_SIZE);

/** Offset of the checksum inside a TCP (16) and a UDP (6) header. */
const TCP_CSUM = 16, UDP_CSUM = 6;

/**
 * Asks the device to finish the TCP or UDP checksum of the frame in the buffer whose header is
 * at `bytes[hdrAt]` (the frame follows it, `len` bytes; IPv4 or IPv6, optionally VLAN-tagged):
 * writes the pseudo-header sum into the L4 checksum field and NEEDS_CSUM with `csum_start` /
 * `csum_offset` into the header (§5.1.6.2). The IPv4 header checksum must be right already.
 * Needs `offloads.txChecksum`. Returns the L4 header's offset in the frame (`csum_start`), or -1
 * (nothing written) when the frame is not TCP or UDP over IP. No allocation.
 *
 * @example
 * ```ts
 * import { requestTxChecksum } from "./offload.ts";
 * import { writeUdpFrame } from "../packet/udp_frame.ts";
 * const buf = new Uint8Array(12 + 64);
 * writeUdpFrame(buf, 12, 64);
 * console.assert(requestTxChecksum(buf, 0, 64) === 34 && buf[0] === 1);
 * ```
 */
export function requestTxChecksum(bytes: Uint8Array, hdrAt: number, len: number): number {
  return requestL4Checksum(bytes, hdrAt, len, false);
}

/** requestTxChecksum; with `tcpOnly` a UDP frame is refused too. Leaves the parse in `view`. */
function requestL4Checksum(
  bytes: Uint8Array,
  hdrAt: number,
  len: number,
  tcpOnly: boolean,
): number {
  const frame = hdrAt + NET_HDR_SIZE;
  const flags = parseFrame(bytes, frame, len, view);
  if ((flags & FrameFlag.TRUNCATED) !== 0) return -1;
  const tcp = (flags & FrameFlag.TCP) !== 0;
  if (!tcp && (tcpOnly || (flags & FrameFlag.UDP) === 0)) return -1;
  const l3 = view[VIEW_L3], l4 = view[VIEW_L4], l4Length = view[VIEW_L4_LENGTH];
  const pseudo = (flags & FrameFlag.IPV6) !== 0
    ? ipv6PseudoSum(bytes, l3, l4Length)
    : ipv4PseudoSum(bytes, l3, l4Length);
  const field = tcp ? TCP_CSUM : UDP_CSUM;
  // §5.1.6.2: the field holds the (folded, not inverted) pseudo-header sum; the device adds the
  // bytes from csum_start on and stores the inverted result there.
  write16(bytes, l4 + field, fold(pseudo));
  setNetHdrChecksum(bytes, hdrAt, l4 - frame, field);
  return l4 - frame;
}

/**
 * Asks the device to cut the TCP segment in the buffer whose header is at `bytes[hdrAt]` into
 * segments of `mss` payload bytes, each with its own IP and TCP checksum (§5.1.6.2): the
 * checksum request of {@linkcode requestTxChecksum}, then gso_type TCPV4 or TCPV6 (from the IP
 * version), gso_size `mss` and hdr_len (Ethernet + IP + TCP header bytes). Needs
 * `offloads.txTso4` / `txTso6`. Returns hdr_len, or -1 (nothing written) for a frame that is
 * not TCP over IP.
 *
 * @example
 * ```ts ignore
 * const hdr = pool.headerOffset(b);
 * if (requestTxTso(pool.bytes, hdr, len, 1448) < 0) throw new Error("not TCP");
 * ```
 */
export function requestTxTso(bytes: Uint8Array, hdrAt: number, len: number, mss: number): number {
  if (requestL4Checksum(bytes, hdrAt, len, true) < 0) return -1;
  const frame = hdrAt + NET_HDR_SIZE;
  const hdrLen = view[VIEW_PAYLOAD] - frame;
  const v6 = bytes[view[VIEW_L3]] >> 4 === 6;
  setNetHdrGso(bytes, hdrAt, v6 ? NET_HDR_GSO_TCPV6 : NET_HDR_GSO_TCPV4, mss, hdrLen);
  return hdrLen;
}

/**
 * Finishes a partial checksum in software (what a device does for NEEDS_CSUM, §5.1.6.2): for a
 * frame whose header at `bytes[hdrAt]` has NEEDS_CSUM, sums the frame from `csum_start` to its
 * end (`len` bytes in all, in this one buffer), stores the result at `csum_start + csum_offset`
 * and clears NEEDS_CSUM. Returns true when it finished one, false when the header had no
 * NEEDS_CSUM or its offsets do not fit in the frame (then nothing is written). For frames
 * received with `offloads.rxChecksum` (or forwarded to a port without `txChecksum`).
 *
 * @example
 * ```ts
 * import { completeChecksum, requestTxChecksum } from "./offload.ts";
 * import { writeUdpFrame } from "../packet/udp_frame.ts";
 * import { udpChecksumValid } from "../packet/udp.ts";
 * const buf = new Uint8Array(12 + 64);
 * writeUdpFrame(buf, 12, 64);
 * requestTxChecksum(buf, 0, 64);
 * console.assert(completeChecksum(buf, 0, 64) && udpChecksumValid(buf, 12 + 14, 12 + 34));
 * ```
 */
export function completeChecksum(bytes: Uint8Array, hdrAt: number, len: number): boolean {
  if ((bytes[hdrAt + NET_HDR_FLAGS] & NET_HDR_F_NEEDS_CSUM) === 0) return false;
  const start = netHdrCsumStart(bytes, hdrAt);
  const field = start + netHdrCsumOffset(bytes, hdrAt);
  if (field + 2 > len) return false;
  const frame = hdrAt + NET_HDR_SIZE;
  // The field's pseudo-header sum is part of the summed bytes, as on a device.
  const sum = onesSum(bytes, frame + start, len - start);
  write16(bytes, frame + field, ~fold(sum) & 0xffff);
  bytes[hdrAt + NET_HDR_FLAGS] &= ~NET_HDR_F_NEEDS_CSUM;
  return true;
}

/** A one's complement sum folded to 16 bits, not inverted. */
function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}
