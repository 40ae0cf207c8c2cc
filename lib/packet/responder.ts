/**
 * Answers ARP who-has (RFC 826), IPv6 neighbor solicitations (RFC 4861) and ICMP echo requests
 * (RFC 792) in place: the reply is written over the request in its own buffer, so answering
 * allocates nothing.
 *
 * ```
 *   rx buffer: ARP who-has IP  ──answerArp──►       same buffer: ARP is-at MAC  ──► tx
 *   rx buffer: NS for IPv6     ──answerNeighborSolicitation──► same buffer: NA, MAC ──► tx
 *   rx buffer: ICMP echo → IP  ──answerIcmpEcho──►  same buffer: ICMP echo reply ──► tx
 * ```
 *
 * @module
 */

import { ARP_PACKET, ArpOp, arpOperation, arpTargetIp } from "./arp.ts";
import { read16, write16, write32 } from "./checksum.ts";
import { ETHERNET_HEADER, EtherType, etherType } from "./ethernet.ts";
import { ICMP_ECHO_HEADER, IcmpType, toEchoReply } from "./icmp.ts";
import { IpProtocol, IPV4_HEADER, ipv4Dst, ipv4HeaderLength, ipv4Src } from "./ipv4.ts";
import { IPV6_HEADER } from "./ipv6.ts";
import { upperLayerChecksum } from "./pseudo_header.ts";

/** A neighbor solicitation or advertisement with one link-layer address option (RFC 4861 §4). */
const ND_MESSAGE = 8 + 16 + 8;

/**
 * When the frame of `len` bytes at `bytes[at]` is an ARP request (Ethernet/IPv4) for `ip`,
 * rewrites it into the reply "`ip` is at `mac`" and returns true; else leaves it and returns
 * false. The reply has the request's length.
 *
 * @example
 * ```ts
 * import { answerArp } from "./responder.ts";
 * import { ArpOp, writeArp } from "./arp.ts";
 * import { EtherType, writeEthernet } from "./ethernet.ts";
 * const mac = new Uint8Array([2, 0, 0, 0, 0, 1]), peer = new Uint8Array([2, 0, 0, 0, 0, 2]);
 * const b = new Uint8Array(60);
 * writeEthernet(b, 0, new Uint8Array(6).fill(0xff), peer, EtherType.ARP);
 * writeArp(b, 14, ArpOp.REQUEST, peer, 0x0a000001, new Uint8Array(6), 0x0a000002);
 * console.assert(answerArp(b, 0, 60, mac, 0x0a000002) && b[14 + 7] === ArpOp.REPLY);
 * ```
 */
export function answerArp(
  bytes: Uint8Array,
  at: number,
  len: number,
  mac: Uint8Array,
  ip: number,
): boolean {
  if (len < ETHERNET_HEADER + ARP_PACKET || etherType(bytes, at) !== EtherType.ARP) return false;
  const a = at + ETHERNET_HEADER;
  // htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4, a request for our address.
  if (read16(bytes, a) !== 1 || read16(bytes, a + 2) !== EtherType.IPV4) return false;
  if (bytes[a + 4] !== 6 || bytes[a + 5] !== 4) return false;
  if (arpOperation(bytes, a) !== ArpOp.REQUEST || arpTargetIp(bytes, a) !== ip) return false;
  // Target (hardware, protocol) := the sender's; sender := us; operation: reply.
  bytes.copyWithin(a + 18, a + 8, a + 18);
  bytes.set(mac, a + 8);
  write32(bytes, a + 14, ip);
  bytes[a + 7] = ArpOp.REPLY;
  bytes.copyWithin(at, a + 18, a + 24); // Ethernet destination: the requester
  bytes.set(mac, at + 6);
  return true;
}

/**
 * When the frame at `bytes[at]` is an IPv4 ICMP echo request to `ip` (and to `mac`), rewrites it
 * into the echo reply (addresses swapped, type 0, ICMP checksum updated) and returns true.
 *
 * @example
 * ```ts ignore
 * import { answerIcmpEcho } from "./responder.ts";
 * if (answerIcmpEcho(pool.bytes, pool.dataOffset(buf), len, port.mac, ip)) replies++;
 * ```
 */
export function answerIcmpEcho(
  bytes: Uint8Array,
  at: number,
  len: number,
  mac: Uint8Array,
  ip: number,
): boolean {
  const min = ETHERNET_HEADER + IPV4_HEADER + ICMP_ECHO_HEADER;
  if (len < min || etherType(bytes, at) !== EtherType.IPV4) return false;
  for (let i = 0; i < 6; i++) if (bytes[at + i] !== mac[i]) return false;
  const h = at + ETHERNET_HEADER;
  const ihl = ipv4HeaderLength(bytes, h);
  const total = read16(bytes, h + 2);
  if (bytes[h] >> 4 !== 4 || ihl < IPV4_HEADER || total < ihl + ICMP_ECHO_HEADER) return false;
  if (ETHERNET_HEADER + total > len) return false;
  if (bytes[h + 9] !== IpProtocol.ICMP || ipv4Dst(bytes, h) !== ip) return false;
  if ((read16(bytes, h + 6) & 0x3fff) !== 0) return false; // a fragment
  const icmp = h + ihl;
  if (bytes[icmp] !== IcmpType.ECHO_REQUEST || bytes[icmp + 1] !== 0) return false;
  // Swapping source and destination keeps the IPv4 header checksum valid (RFC 1071 §2).
  write32(bytes, h + 16, ipv4Src(bytes, h));
  write32(bytes, h + 12, ip);
  bytes.copyWithin(at, at + 6, at + 12);
  bytes.set(mac, at + 6);
  toEchoReply(bytes, icmp); // type 0, checksum updated (RFC 1624)
  return true;
}

/**
 * When the frame at `bytes[at]` is an IPv6 neighbor solicitation (RFC 4861 §4.3) for target `ip`
 * carrying the sender's link-layer address option, rewrites it into the solicited advertisement
 * (§4.4: flags solicited and override, target link-layer address `mac`) to the sender and returns
 * true. The advertisement has the solicitation's length.
 *
 * @example
 * ```ts ignore
 * import { answerNeighborSolicitation } from "./responder.ts";
 * import { parseIpv6 } from "./ipv6.ts";
 * const ip = parseIpv6("fd02::2");
 * if (answerNeighborSolicitation(pool.bytes, pool.dataOffset(buf), len, port.mac, ip)) replies++;
 * ```
 */
export function answerNeighborSolicitation(
  bytes: Uint8Array,
  at: number,
  len: number,
  mac: Uint8Array,
  ip: Uint8Array,
): boolean {
  const l3 = at + ETHERNET_HEADER, l4 = l3 + IPV6_HEADER;
  if (len < ETHERNET_HEADER + IPV6_HEADER + ND_MESSAGE) return false;
  if (etherType(bytes, at) !== EtherType.IPV6 || bytes[l3 + 6] !== IpProtocol.ICMPV6) return false;
  if (read16(bytes, l3 + 4) !== ND_MESSAGE || bytes[l3 + 7] !== 255) return false; // §7.1.1
  if (bytes[l4] !== IcmpType.NEIGHBOR_SOLICITATION || bytes[l4 + 1] !== 0) return false;
  if (bytes[l4 + 24] !== 1 || bytes[l4 + 25] !== 1) return false; // source link-layer option
  for (let k = 0; k < 16; k++) if (bytes[l4 + 8 + k] !== ip[k]) return false;
  bytes.copyWithin(at, at + 6, at + 12); // Ethernet destination: the solicitor
  bytes.set(mac, at + 6);
  bytes.copyWithin(l3 + 24, l3 + 8, l3 + 24); // IPv6 destination: the solicitation's source
  bytes.set(ip, l3 + 8);
  bytes[l4] = IcmpType.NEIGHBOR_ADVERTISEMENT;
  write32(bytes, l4 + 4, 0x60000000); // solicited | override (§4.4)
  bytes[l4 + 24] = 2; // target link-layer address option (§4.6.1)
  bytes.set(mac, l4 + 26);
  write16(bytes, l4 + 2, 0);
  write16(bytes, l4 + 2, upperLayerChecksum(bytes, l3, l4, ND_MESSAGE));
  return true;
}
