/**
 * The virtio-net header that precedes every frame (virtio 1.2 §5.1.6). With VIRTIO_F_VERSION_1 it
 * is 12 bytes, little-endian:
 *
 * ```
 *   0 flags u8 | 1 gso_type u8 | 2 hdr_len u16 | 4 gso_size u16 | 6 csum_start u16 |
 *   8 csum_offset u16 | 10 num_buffers u16
 * ```
 *
 * Offloads travel in it. Sending (§5.1.6.2): NEEDS_CSUM asks the device to finish the checksum
 * that starts at `csum_start` and is stored at `csum_start + csum_offset` (the field already
 * holds the pseudo-header sum), needs VIRTIO_NET_F_CSUM; `gso_type` TCPV4 / TCPV6 with `gso_size`
 * (the MSS) and `hdr_len` (Ethernet + IP + TCP header bytes) asks it to segment, needs HOST_TSO4 /
 * HOST_TSO6 and NEEDS_CSUM. Receiving (§5.1.6.4), with VIRTIO_NET_F_GUEST_CSUM: NEEDS_CSUM says
 * the checksum is partial (as above, the data itself is known good), DATA_VALID that the device
 * verified it; with GUEST_TSO4 / GUEST_TSO6 a frame may be a whole TCP segment larger than the
 * MTU (`gso_type`, `gso_size` say how it would be cut).
 *
 * The functions here read and write a header in place at a byte offset (`pool.headerOffset(b)`):
 * no object per frame.
 *
 * @module
 */

/** Size of `struct virtio_net_hdr` with VIRTIO_F_VERSION_1 (§5.1.6). */
export const NET_HDR_SIZE = 12;

/** Byte offset of `flags` inside the header (§5.1.6). */
export const NET_HDR_FLAGS = 0;
/** Byte offset of `gso_type` (§5.1.6). */
export const NET_HDR_GSO_TYPE = 1;
/** Byte offset of `hdr_len` (le16, §5.1.6). */
export const NET_HDR_HDR_LEN = 2;
/** Byte offset of `gso_size` (le16, §5.1.6). */
export const NET_HDR_GSO_SIZE = 4;
/** Byte offset of `csum_start` (le16, §5.1.6). */
export const NET_HDR_CSUM_START = 6;
/** Byte offset of `csum_offset` (le16, §5.1.6). */
export const NET_HDR_CSUM_OFFSET = 8;
/** Byte offset of `num_buffers` inside the header (§5.1.6). */
export const NET_HDR_NUM_BUFFERS = 10;

/** `flags`: VIRTIO_NET_HDR_F_NEEDS_CSUM, the checksum is partial (§5.1.6). */
export const NET_HDR_F_NEEDS_CSUM = 1;
/** `flags`: VIRTIO_NET_HDR_F_DATA_VALID, receive only: the device checked it (§5.1.6.4). */
export const NET_HDR_F_DATA_VALID = 2;
/** `flags`: VIRTIO_NET_HDR_F_RSC_INFO, receive only (VIRTIO_NET_F_RSC_EXT, §5.1.6.4). */
export const NET_HDR_F_RSC_INFO = 4;

/** `gso_type`: VIRTIO_NET_HDR_GSO_NONE (§5.1.6). */
export const NET_HDR_GSO_NONE = 0;
/** `gso_type`: VIRTIO_NET_HDR_GSO_TCPV4 (§5.1.6). */
export const NET_HDR_GSO_TCPV4 = 1;
/** `gso_type`: VIRTIO_NET_HDR_GSO_UDP (§5.1.6). */
export const NET_HDR_GSO_UDP = 3;
/** `gso_type`: VIRTIO_NET_HDR_GSO_TCPV6 (§5.1.6). */
export const NET_HDR_GSO_TCPV6 = 4;
/** `gso_type` bit: VIRTIO_NET_HDR_GSO_ECN, the segment had CWR set (§5.1.6). */
export const NET_HDR_GSO_ECN = 0x80;

function le16(bytes: Uint8Array, at: number): number {
  return bytes[at] | bytes[at + 1] << 8;
}

function setLe16(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value;
  bytes[at + 1] = value >> 8;
}

/**
 * Writes a checksum request into the header at `bytes[at]` (§5.1.6.2): NEEDS_CSUM, the checksum
 * covers the frame from `csumStart` and is stored at `csumStart + csumOffset` (both relative to
 * the frame's first byte). The L4 checksum field must already hold the pseudo-header sum (see
 * `requestTxChecksum` in lib/driver/offload.ts, which does both). Leaves the GSO fields.
 *
 * @example
 * ```ts
 * import { netHdrCsumStart, NET_HDR_SIZE, setNetHdrChecksum } from "./net_hdr.ts";
 * const hdr = new Uint8Array(NET_HDR_SIZE);
 * setNetHdrChecksum(hdr, 0, 34, 16); // TCP over IPv4: checksum at 34 + 16
 * console.assert(netHdrCsumStart(hdr, 0) === 34 && hdr[0] === 1);
 * ```
 */
export function setNetHdrChecksum(
  bytes: Uint8Array,
  at: number,
  csumStart: number,
  csumOffset: number,
): void {
  bytes[at + NET_HDR_FLAGS] = NET_HDR_F_NEEDS_CSUM;
  setLe16(bytes, at + NET_HDR_CSUM_START, csumStart);
  setLe16(bytes, at + NET_HDR_CSUM_OFFSET, csumOffset);
}

/**
 * Writes a segmentation request into the header at `bytes[at]` (§5.1.6.2): `gsoType`
 * (TCPV4 / TCPV6, optionally | ECN), `gsoSize` payload bytes per segment (the MSS) and `hdrLen`
 * (bytes of Ethernet + IP + TCP header, repeated in front of each segment). The device needs
 * NEEDS_CSUM too ({@linkcode setNetHdrChecksum}).
 *
 * @example
 * ```ts
 * import { NET_HDR_GSO_TCPV4, NET_HDR_SIZE, netHdrGsoSize, setNetHdrGso } from "./net_hdr.ts";
 * const hdr = new Uint8Array(NET_HDR_SIZE);
 * setNetHdrGso(hdr, 0, NET_HDR_GSO_TCPV4, 1448, 66);
 * console.assert(netHdrGsoSize(hdr, 0) === 1448);
 * ```
 */
export function setNetHdrGso(
  bytes: Uint8Array,
  at: number,
  gsoType: number,
  gsoSize: number,
  hdrLen: number,
): void {
  bytes[at + NET_HDR_GSO_TYPE] = gsoType;
  setLe16(bytes, at + NET_HDR_HDR_LEN, hdrLen);
  setLe16(bytes, at + NET_HDR_GSO_SIZE, gsoSize);
}

/**
 * Makes a received header fit to send again (§5.1.6.2: the driver sets neither DATA_VALID nor
 * RSC_INFO, and num_buffers is the device's): keeps NEEDS_CSUM and the GSO fields (a frame
 * forwarded unchanged stays correctly described), clears the rest. One read, two writes.
 *
 * @example
 * ```ts
 * import { NET_HDR_F_DATA_VALID, NET_HDR_SIZE, sanitizeTxNetHdr } from "./net_hdr.ts";
 * const hdr = new Uint8Array(NET_HDR_SIZE);
 * hdr[0] = NET_HDR_F_DATA_VALID;
 * hdr[10] = 1;
 * sanitizeTxNetHdr(hdr, 0);
 * console.assert(hdr[0] === 0 && hdr[10] === 0);
 * ```
 */
export function sanitizeTxNetHdr(bytes: Uint8Array, at: number): void {
  bytes[at + NET_HDR_FLAGS] &= NET_HDR_F_NEEDS_CSUM;
  bytes[at + NET_HDR_NUM_BUFFERS] = 0;
  bytes[at + NET_HDR_NUM_BUFFERS + 1] = 0;
}

/**
 * `flags` of the header at `bytes[at]` (NEEDS_CSUM 1, DATA_VALID 2, RSC_INFO 4).
 *
 * @example
 * ```ts
 * import { NET_HDR_F_DATA_VALID, netHdrFlags } from "./net_hdr.ts";
 * console.assert(netHdrFlags(Uint8Array.of(2), 0) === NET_HDR_F_DATA_VALID);
 * ```
 */
export function netHdrFlags(bytes: Uint8Array, at: number): number {
  return bytes[at + NET_HDR_FLAGS];
}

/**
 * `gso_type` of the header at `bytes[at]` (NONE 0, TCPV4 1, UDP 3, TCPV6 4, | ECN 0x80).
 *
 * @example
 * ```ts
 * import { netHdrGsoType } from "./net_hdr.ts";
 * console.assert(netHdrGsoType(Uint8Array.of(0, 4), 0) === 4);
 * ```
 */
export function netHdrGsoType(bytes: Uint8Array, at: number): number {
  return bytes[at + NET_HDR_GSO_TYPE];
}

/**
 * `hdr_len` of the header at `bytes[at]`.
 *
 * @example
 * ```ts
 * import { netHdrHdrLen } from "./net_hdr.ts";
 * console.assert(netHdrHdrLen(Uint8Array.of(0, 0, 66, 0), 0) === 66);
 * ```
 */
export function netHdrHdrLen(bytes: Uint8Array, at: number): number {
  return le16(bytes, at + NET_HDR_HDR_LEN);
}

/**
 * `gso_size` of the header at `bytes[at]`.
 *
 * @example
 * ```ts
 * import { netHdrGsoSize } from "./net_hdr.ts";
 * console.assert(netHdrGsoSize(Uint8Array.of(0, 0, 0, 0, 0xa8, 5), 0) === 1448);
 * ```
 */
export function netHdrGsoSize(bytes: Uint8Array, at: number): number {
  return le16(bytes, at + NET_HDR_GSO_SIZE);
}

/**
 * `csum_start` of the header at `bytes[at]` (meaningful with NEEDS_CSUM).
 *
 * @example
 * ```ts
 * import { netHdrCsumStart } from "./net_hdr.ts";
 * console.assert(netHdrCsumStart(Uint8Array.of(0, 0, 0, 0, 0, 0, 34, 0), 0) === 34);
 * ```
 */
export function netHdrCsumStart(bytes: Uint8Array, at: number): number {
  return le16(bytes, at + NET_HDR_CSUM_START);
}

/**
 * `csum_offset` of the header at `bytes[at]` (meaningful with NEEDS_CSUM).
 *
 * @example
 * ```ts
 * import { netHdrCsumOffset } from "./net_hdr.ts";
 * console.assert(netHdrCsumOffset(Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 16, 0), 0) === 16);
 * ```
 */
export function netHdrCsumOffset(bytes: Uint8Array, at: number): number {
  return le16(bytes, at + NET_HDR_CSUM_OFFSET);
}
