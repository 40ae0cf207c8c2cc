/**
 * Just enough Ethernet, ARP (RFC 826) and IPv4/ICMP (RFC 791, RFC 792) to answer who-has and
 * echo requests in place, and to summarize a frame in one line. Replies are written over the
 * request in its own buffer, so answering allocates nothing.
 *
 * ```
 *   rx buffer: ARP who-has IP  ──answerArp──►       same buffer: ARP is-at MAC  ──► tx
 *   rx buffer: ICMP echo → IP  ──answerIcmpEcho──►  same buffer: ICMP echo reply ──► tx
 * ```
 *
 * @module
 */

/** EtherType of IPv4. */
export const ETHERTYPE_IPV4 = 0x0800;
/** EtherType of ARP. */
export const ETHERTYPE_ARP = 0x0806;
const ETH_HLEN = 14;
const ARP_LEN = 28;
const IPPROTO_ICMP = 1;

/**
 * Parses dotted-quad IPv4 text into a 32-bit number (host order); throws a TypeError otherwise.
 *
 * @example
 * ```ts
 * import { parseIpv4 } from "./arp_icmp.ts";
 * console.log(parseIpv4("10.0.0.2").toString(16)); // "a000002"
 * ```
 */
export function parseIpv4(text: string): number {
  const parts = text.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new TypeError(`bad IPv4 address "${text}": expected four numbers 0..255 like 10.0.0.2`);
  }
  return parts.reduce((a, p) => a * 256 + Number(p), 0);
}

/**
 * Formats a 32-bit IPv4 address (host order) as dotted quad.
 *
 * @example
 * ```ts
 * import { formatIpv4 } from "./arp_icmp.ts";
 * console.log(formatIpv4(0x0a000002)); // "10.0.0.2"
 * ```
 */
export function formatIpv4(ip: number): string {
  return [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].join(".");
}

function u16(b: Uint8Array, at: number): number {
  return (b[at] << 8) | b[at + 1];
}

function u32(b: Uint8Array, at: number): number {
  return ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
}

function put32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 255;
  b[at + 2] = (v >>> 8) & 255;
  b[at + 3] = v & 255;
}

/** The Internet checksum (RFC 1071) of `len` bytes at `at`. */
function checksum(b: Uint8Array, at: number, len: number): number {
  let sum = 0;
  for (let i = 0; i + 1 < len; i += 2) sum += (b[at + i] << 8) | b[at + i + 1];
  if (len & 1) sum += b[at + len - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * When the frame of `len` bytes at `bytes[at]` is an ARP request (Ethernet/IPv4) for `ip`,
 * rewrites it into the reply "`ip` is at `mac`" and returns true; else leaves it and returns
 * false. The reply has the request's length.
 *
 * @example
 * ```ts ignore
 * import { answerArp, parseIpv4 } from "./arp_icmp.ts";
 * if (answerArp(pool.bytes, pool.dataOffset(buf), len, port.mac, parseIpv4("10.0.0.2"))) {
 *   // transmit buf
 * }
 * ```
 */
export function answerArp(
  bytes: Uint8Array,
  at: number,
  len: number,
  mac: Uint8Array,
  ip: number,
): boolean {
  if (len < ETH_HLEN + ARP_LEN || u16(bytes, at + 12) !== ETHERTYPE_ARP) return false;
  const a = at + ETH_HLEN;
  // htype 1 (Ethernet), ptype IPv4, hlen 6, plen 4, oper 1 (request), target protocol address.
  if (u16(bytes, a) !== 1 || u16(bytes, a + 2) !== ETHERTYPE_IPV4) return false;
  if (bytes[a + 4] !== 6 || bytes[a + 5] !== 4 || u16(bytes, a + 6) !== 1) return false;
  if (u32(bytes, a + 24) !== ip) return false;
  // Target (hardware, protocol) := the sender's; sender := us; oper 2 (reply).
  bytes.copyWithin(a + 18, a + 8, a + 18);
  bytes.set(mac, a + 8);
  put32(bytes, a + 14, ip);
  bytes[a + 7] = 2;
  bytes.copyWithin(at, a + 18, a + 24); // Ethernet destination: the requester
  bytes.set(mac, at + 6);
  return true;
}

/**
 * When the frame at `bytes[at]` is an IPv4 ICMP echo request to `ip` (and to `mac`), rewrites it
 * into the echo reply (addresses swapped, type 0, ICMP checksum recomputed) and returns true.
 *
 * @example
 * ```ts ignore
 * import { answerIcmpEcho } from "./arp_icmp.ts";
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
  if (len < ETH_HLEN + 20 + 8 || u16(bytes, at + 12) !== ETHERTYPE_IPV4) return false;
  for (let i = 0; i < 6; i++) if (bytes[at + i] !== mac[i]) return false;
  const h = at + ETH_HLEN;
  const ihl = (bytes[h] & 15) * 4;
  const total = u16(bytes, h + 2);
  if (bytes[h] >> 4 !== 4 || ihl < 20 || total < ihl + 8 || ETH_HLEN + total > len) return false;
  if (bytes[h + 9] !== IPPROTO_ICMP || u32(bytes, h + 16) !== ip) return false;
  if ((u16(bytes, h + 6) & 0x3fff) !== 0) return false; // a fragment
  const icmp = h + ihl;
  if (bytes[icmp] !== 8 || bytes[icmp + 1] !== 0) return false; // echo request, code 0
  // Swapping source and destination keeps the IPv4 header checksum valid.
  put32(bytes, h + 16, u32(bytes, h + 12));
  put32(bytes, h + 12, ip);
  bytes.copyWithin(at, at + 6, at + 12);
  bytes.set(mac, at + 6);
  bytes[icmp] = 0;
  bytes[icmp + 2] = bytes[icmp + 3] = 0;
  const sum = checksum(bytes, icmp, total - ihl);
  bytes[icmp + 2] = sum >> 8;
  bytes[icmp + 3] = sum & 255;
  return true;
}

function macText(b: Uint8Array, at: number): string {
  const parts: string[] = [];
  for (let i = 0; i < 6; i++) parts.push(b[at + i].toString(16).padStart(2, "0"));
  return parts.join(":");
}

/**
 * A one-line summary of the frame at `bytes[at]`: MACs, then ARP, IPv4 (ICMP type, or the
 * protocol and ports for UDP/TCP) or the EtherType, and the length.
 *
 * @example
 * ```ts
 * import { describeFrame } from "./arp_icmp.ts";
 * console.log(describeFrame(new Uint8Array(60).fill(0xff), 0, 60));
 * // "ff:ff:ff:ff:ff:ff > ff:ff:ff:ff:ff:ff ethertype 0xffff, 60 bytes"
 * ```
 */
export function describeFrame(bytes: Uint8Array, at: number, len: number): string {
  if (len < ETH_HLEN) return `runt frame, ${len} bytes`;
  const head = `${macText(bytes, at + 6)} > ${macText(bytes, at)}`;
  const type = u16(bytes, at + 12);
  const p = at + ETH_HLEN;
  if (type === ETHERTYPE_ARP && len >= ETH_HLEN + ARP_LEN) {
    const op = u16(bytes, p + 6);
    const what = op === 1
      ? `who-has ${formatIpv4(u32(bytes, p + 24))} tell ${formatIpv4(u32(bytes, p + 14))}`
      : op === 2
      ? `${formatIpv4(u32(bytes, p + 14))} is-at ${macText(bytes, p + 8)}`
      : `op ${op}`;
    return `${head} ARP ${what}, ${len} bytes`;
  }
  if (type === ETHERTYPE_IPV4 && len >= ETH_HLEN + 20 && bytes[p] >> 4 === 4) {
    const ihl = (bytes[p] & 15) * 4, proto = bytes[p + 9], l4 = p + ihl;
    const addrs = `${formatIpv4(u32(bytes, p + 12))} > ${formatIpv4(u32(bytes, p + 16))}`;
    let what = `proto ${proto}`;
    if (proto === IPPROTO_ICMP && l4 + 2 <= at + len) {
      const t = bytes[l4];
      what = t === 8 ? "ICMP echo request" : t === 0 ? "ICMP echo reply" : `ICMP type ${t}`;
    } else if ((proto === 6 || proto === 17) && l4 + 4 <= at + len) {
      what = `${proto === 6 ? "TCP" : "UDP"} ${u16(bytes, l4)} > ${u16(bytes, l4 + 2)}`;
    }
    return `${head} IPv4 ${addrs} ${what}, ${len} bytes`;
  }
  return `${head} ethertype 0x${type.toString(16).padStart(4, "0")}, ${len} bytes`;
}
