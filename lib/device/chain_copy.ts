/**
 * Copies between descriptor chains and byte arrays, segment by segment (virtio 1.2 §2.7.4,
 * §2.8.6: a buffer may be scattered over several descriptors): shared by the device's echo,
 * source and forwarding paths. No allocation.
 *
 * @module
 */

import {
  type AddressTranslator,
  type DescriptorChain,
  VirtqueueError,
} from "../virtio/virtqueue.ts";

/**
 * Bytes the device may read from a transmitq chain; throws for a device-writable segment
 * (§5.1.6.2).
 *
 * @example
 * ```ts ignore
 * const frameLen = readableLength(txChain) - NET_HDR_SIZE;
 * ```
 */
export function readableLength(chain: DescriptorChain): number {
  let total = 0;
  for (let s = 0; s < chain.count; s++) {
    if (chain.writable[s] === 1) {
      throw new VirtqueueError(
        "transmitq",
        `chain ${chain.id}: segment ${s} is device-writable in a transmit queue (§5.1.6.2)`,
      );
    }
    total += chain.len[s];
  }
  return total;
}

/**
 * Bytes the device may write into a receiveq chain; throws for a device-readable segment
 * (§5.1.6.3).
 *
 * @example
 * ```ts ignore
 * if (writableLength(rxChain) < NET_HDR_SIZE + frameLen) throw new Error("too small");
 * ```
 */
export function writableLength(chain: DescriptorChain): number {
  let total = 0;
  for (let s = 0; s < chain.count; s++) {
    if (chain.writable[s] === 0) {
      throw new VirtqueueError(
        "receiveq",
        `chain ${chain.id}: segment ${s} is device-readable in a receive queue (§5.1.6.3)`,
      );
    }
    total += chain.len[s];
  }
  return total;
}

/**
 * Copies `src[from .. from+len)` into the chain's segments starting `skip` bytes in.
 *
 * @example
 * ```ts ignore
 * scatter(memory, header, 0, NET_HDR_SIZE, rxChain, 0);
 * ```
 */
export function scatter(
  mem: AddressTranslator,
  src: Uint8Array,
  from: number,
  len: number,
  to: DescriptorChain,
  skip: number,
): void {
  let s = 0;
  while (s < to.count && skip >= to.len[s]) skip -= to.len[s++];
  while (len > 0 && s < to.count) {
    const room = to.len[s] - skip;
    const n = room < len ? room : len;
    const bytes = mem.bytes(to.region[s]);
    const at = to.offset[s] + skip;
    for (let k = 0; k < n; k++) bytes[at + k] = src[from + k];
    from += n;
    len -= n;
    skip = 0;
    s++;
  }
}

/**
 * Copies `len` bytes from chain `from` in `fromMem` (skipping `fromSkip`) to chain `to` in
 * `toMem` (at `toSkip`); the two may be one memory (echo) or two frontends' (forwarding).
 *
 * @example
 * ```ts ignore
 * gatherScatter(memoryA, txChain, NET_HDR_SIZE, memoryB, rxChain, NET_HDR_SIZE, frameLen);
 * ```
 */
export function gatherScatter(
  fromMem: AddressTranslator,
  from: DescriptorChain,
  fromSkip: number,
  toMem: AddressTranslator,
  to: DescriptorChain,
  toSkip: number,
  len: number,
): void {
  let s = 0;
  while (s < from.count && fromSkip >= from.len[s]) fromSkip -= from.len[s++];
  while (len > 0 && s < from.count) {
    const avail = from.len[s] - fromSkip;
    const n = avail < len ? avail : len;
    const bytes = fromMem.bytes(from.region[s]);
    scatter(toMem, bytes, from.offset[s] + fromSkip, n, to, toSkip);
    toSkip += n;
    len -= n;
    fromSkip = 0;
    s++;
  }
}
