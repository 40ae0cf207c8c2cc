/**
 * IEEE 802.1Q VLAN tags (802.1Q-2018 §9.6): a 4-byte tag between the source MAC and the
 * EtherType: TPID 0x8100, then the TCI (PCP 3 bits, DEI 1 bit, VID 12 bits).
 *
 * ```
 *   | dst MAC | src MAC | 0x8100 | PCP DEI VID | EtherType | payload ...
 *   0         6         12       14            16          18
 * ```
 *
 * @module
 */

import { read16, write16 } from "./checksum.ts";
import { ETHERNET_HEADER, EtherType } from "./ethernet.ts";

/** Bytes of one VLAN tag. */
export const VLAN_TAG = 4;

/**
 * Writes a VLAN tag at the EtherType position of the Ethernet header at `bytes[offset]` (the
 * MACs must be there already) followed by `innerType`; returns the offset of the payload.
 *
 * @example
 * ```ts
 * import { writeVlanTag, vlanId } from "./vlan.ts";
 * const f = new Uint8Array(64);
 * const l3 = writeVlanTag(f, 0, 100, 0x0800);
 * console.assert(l3 === 18 && vlanId(f, 0) === 100);
 * ```
 */
export function writeVlanTag(
  bytes: Uint8Array,
  offset: number,
  vid: number,
  innerType: number,
  pcp = 0,
): number {
  if (vid < 0 || vid > 4094) throw new RangeError(`VLAN ID ${vid} is outside 0..4094`);
  write16(bytes, offset + 12, EtherType.VLAN);
  write16(bytes, offset + 14, ((pcp & 7) << 13) | vid);
  write16(bytes, offset + 16, innerType);
  return offset + ETHERNET_HEADER + VLAN_TAG;
}

/**
 * The VLAN ID of the outer tag of the frame at `bytes[offset]`, or -1 when untagged.
 *
 * @example
 * ```ts
 * import { vlanId } from "./vlan.ts";
 * console.assert(vlanId(new Uint8Array(60), 0) === -1);
 * ```
 */
export function vlanId(bytes: Uint8Array, offset: number): number {
  const tpid = read16(bytes, offset + 12);
  if (tpid !== EtherType.VLAN && tpid !== EtherType.QINQ) return -1;
  return read16(bytes, offset + 14) & 0x0fff;
}

/**
 * Offset of the EtherType that names the payload (after any VLAN tags) of the frame at
 * `bytes[offset]`; the payload starts 2 bytes later.
 *
 * @example
 * ```ts
 * import { innerTypeOffset, writeVlanTag } from "./vlan.ts";
 * const f = new Uint8Array(64);
 * writeVlanTag(f, 0, 7, 0x86dd);
 * console.assert(innerTypeOffset(f, 0, 64) === 16);
 * ```
 */
export function innerTypeOffset(bytes: Uint8Array, offset: number, length: number): number {
  let at = offset + 12;
  const end = offset + length;
  while (at + 6 <= end) {
    const t = read16(bytes, at);
    if (t !== EtherType.VLAN && t !== EtherType.QINQ) break;
    at += VLAN_TAG;
  }
  return at;
}
