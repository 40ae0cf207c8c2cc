/**
 * AF_PACKET raw sockets (packet(7)): the kernel side of an interface, frame by frame. Tests and
 * examples use one bound to a tap to see exactly what a vhost-net backend put on it, and to
 * inject frames it must deliver. A control and test tool: each call converts a length to BigInt.
 *
 * ```
 *   packetSend(fd) ──► dev_queue_xmit(tap) ──► tap queue ──► vhost-net ──► driver rxBurst
 *   packetRecv(fd) ◄── tap receive path    ◄── tap       ◄── vhost-net ◄── driver txBurst
 * ```
 *
 * @module
 */

import { EAGAIN, EINTR } from "./errno.ts";
import { cString, errno, fail, libc } from "./libc.ts";

const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
/** ETH_P_ALL in network byte order (linux/if_ether.h). */
const ETH_P_ALL_BE = 0x0300;

/** `sll_pkttype` of a frame the interface sent (linux/if_packet.h). */
export const PACKET_OUTGOING = 4;

// struct sockaddr_ll (20 bytes): family u16, protocol u16 (BE), ifindex i32, hatype u16,
// pkttype u8, halen u8, addr[8]. One preallocated for recvfrom: no allocation per frame.
const from = new Uint8Array(20);
const fromLen = new Uint32Array(1);
const fromLenBytes = new Uint8Array(fromLen.buffer);

/**
 * The index of network interface `name` (if_nametoindex(3)); throws when there is none.
 *
 * @example
 * ```ts
 * import { interfaceIndex } from "./packet_socket.ts";
 * console.log(interfaceIndex("lo")); // 1
 * ```
 */
export function interfaceIndex(name: string): number {
  const i = libc.symbols.if_nametoindex(cString(name));
  if (i === 0) fail(`if_nametoindex(${name})`, "is the interface there (ip link)?");
  return i;
}

/**
 * Opens a non-blocking AF_PACKET raw socket for every protocol, bound to interface `ifindex`.
 * Needs CAP_NET_RAW.
 *
 * @example
 * ```ts ignore
 * import { interfaceIndex, packetSocket } from "./packet_socket.ts";
 * const fd = packetSocket(interfaceIndex("tap0"));
 * ```
 */
export function packetSocket(ifindex: number): number {
  const fd = libc.symbols.socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, ETH_P_ALL_BE);
  if (fd < 0) fail("socket(AF_PACKET, SOCK_RAW)", "needs CAP_NET_RAW (run as root)");
  const addr = new Uint8Array(20);
  const view = new DataView(addr.buffer);
  view.setUint16(0, AF_PACKET, true);
  view.setUint16(2, ETH_P_ALL_BE, true);
  view.setInt32(4, ifindex, true);
  if (libc.symbols.bind(fd, addr, addr.length) < 0) {
    const e = errno();
    libc.symbols.close(fd);
    fail(`bind(AF_PACKET, ifindex ${ifindex})`, "is the interface up?", e);
  }
  return fd;
}

/**
 * Receives one frame into `buf`; returns its length (truncated to `buf`), or -1 when none is
 * waiting. {@linkcode packetType} then tells its direction.
 *
 * @example
 * ```ts ignore
 * import { PACKET_OUTGOING, packetRecv, packetType } from "./packet_socket.ts";
 * const n = packetRecv(fd, new Uint8Array(2048));
 * if (n >= 0 && packetType() !== PACKET_OUTGOING) console.log(`received ${n} bytes`);
 * ```
 */
export function packetRecv(fd: number, buf: Uint8Array): number {
  for (;;) {
    fromLen[0] = from.length;
    const n = libc.symbols.recvfrom(fd, buf, BigInt(buf.length), 0, from, fromLenBytes);
    if (n >= 0) return n;
    const e = errno();
    if (e === EAGAIN) return -1;
    if (e !== EINTR) fail(`recvfrom(AF_PACKET fd ${fd})`, undefined, e);
  }
}

/**
 * `sll_pkttype` of the frame the last {@linkcode packetRecv} returned (PACKET_HOST 0,
 * PACKET_BROADCAST 1, PACKET_MULTICAST 2, PACKET_OTHERHOST 3, PACKET_OUTGOING 4).
 *
 * @example
 * ```ts ignore
 * import { packetType } from "./packet_socket.ts";
 * console.log(packetType());
 * ```
 */
export function packetType(): number {
  return from[10];
}

/**
 * Sends `len` bytes of `frame` (a whole Ethernet frame) out of the bound interface.
 *
 * @example
 * ```ts ignore
 * import { packetSend } from "./packet_socket.ts";
 * packetSend(fd, frame, 60);
 * ```
 */
export function packetSend(fd: number, frame: Uint8Array, len: number): void {
  for (;;) {
    const n = libc.symbols.write(fd, frame, BigInt(len));
    if (n === len) return;
    const e = errno();
    if (n >= 0) throw new Error(`write(AF_PACKET fd ${fd}): sent ${n} of ${len} bytes`);
    if (e !== EINTR) fail(`write(AF_PACKET fd ${fd})`, "is the interface up?", e);
  }
}
