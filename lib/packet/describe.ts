/**
 * A one-line summary of a frame, as `tcpdump -e` would print it: the MACs, then ARP, IPv4 (ICMP
 * type, or the protocol and ports for UDP/TCP) or the EtherType, and the length.
 *
 * @module
 */

import { ARP_PACKET, ArpOp, arpOperation, arpSenderIp, arpTargetIp } from "./arp.ts";
import { read16 } from "./checksum.ts";
import { ETHERNET_HEADER, EtherType, etherType, formatMac } from "./ethernet.ts";
import { IcmpType } from "./icmp.ts";
import { formatIpv4, IpProtocol, IPV4_HEADER, ipv4Dst, ipv4HeaderLength, ipv4Src } from "./ipv4.ts";

/**
 * Summarizes the frame of `len` bytes at `bytes[at]` in one line (allocates the string: for
 * display, not for the data path).
 *
 * @example
 * ```ts
 * import { describeFrame } from "./describe.ts";
 * console.log(describeFrame(new Uint8Array(60).fill(0xff), 0, 60));
 * // "ff:ff:ff:ff:ff:ff > ff:ff:ff:ff:ff:ff ethertype 0xffff, 60 bytes"
 * ```
 */
export function describeFrame(bytes: Uint8Array, at: number, len: number): string {
  if (len < ETHERNET_HEADER) return `runt frame, ${len} bytes`;
  const head = `${formatMac(bytes, at + 6)} > ${formatMac(bytes, at)}`;
  const type = etherType(bytes, at);
  const p = at + ETHERNET_HEADER;
  if (type === EtherType.ARP && len >= ETHERNET_HEADER + ARP_PACKET) {
    const op = arpOperation(bytes, p);
    const what = op === ArpOp.REQUEST
      ? `who-has ${formatIpv4(arpTargetIp(bytes, p))} tell ${formatIpv4(arpSenderIp(bytes, p))}`
      : op === ArpOp.REPLY
      ? `${formatIpv4(arpSenderIp(bytes, p))} is-at ${formatMac(bytes, p + 8)}`
      : `op ${op}`;
    return `${head} ARP ${what}, ${len} bytes`;
  }
  if (type === EtherType.IPV4 && len >= ETHERNET_HEADER + IPV4_HEADER && bytes[p] >> 4 === 4) {
    const proto = bytes[p + 9], l4 = p + ipv4HeaderLength(bytes, p);
    const addrs = `${formatIpv4(ipv4Src(bytes, p))} > ${formatIpv4(ipv4Dst(bytes, p))}`;
    let what = `proto ${proto}`;
    if (proto === IpProtocol.ICMP && l4 + 2 <= at + len) {
      const t = bytes[l4];
      what = t === IcmpType.ECHO_REQUEST
        ? "ICMP echo request"
        : t === IcmpType.ECHO_REPLY
        ? "ICMP echo reply"
        : `ICMP type ${t}`;
    } else if ((proto === IpProtocol.TCP || proto === IpProtocol.UDP) && l4 + 4 <= at + len) {
      what = `${proto === IpProtocol.TCP ? "TCP" : "UDP"} ${read16(bytes, l4)} > ${
        read16(bytes, l4 + 2)
      }`;
    }
    return `${head} IPv4 ${addrs} ${what}, ${len} bytes`;
  }
  return `${head} ethertype 0x${type.toString(16).padStart(4, "0")}, ${len} bytes`;
}
