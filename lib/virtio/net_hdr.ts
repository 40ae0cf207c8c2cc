/**
 * The virtio-net header that precedes every frame (virtio 1.2 §5.1.6). With VIRTIO_F_VERSION_1 it
 * is 12 bytes: flags u8, gso_type u8, hdr_len u16, gso_size u16, csum_start u16, csum_offset u16,
 * num_buffers u16.
 *
 * @module
 */

/** Size of `struct virtio_net_hdr` with VIRTIO_F_VERSION_1 (§5.1.6). */
export const NET_HDR_SIZE = 12;

/** Byte offset of `num_buffers` inside the header (§5.1.6). */
export const NET_HDR_NUM_BUFFERS = 10;

/** `flags`: VIRTIO_NET_HDR_F_NEEDS_CSUM (§5.1.6). */
export const NET_HDR_F_NEEDS_CSUM = 1;

/** `gso_type`: VIRTIO_NET_HDR_GSO_NONE (§5.1.6). */
export const NET_HDR_GSO_NONE = 0;
