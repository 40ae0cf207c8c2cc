/**
 * ARP requests (RFC 826) and ICMP echo requests (RFC 792) built byte by byte, and the RFC 1071
 * sum to check checksums with: the requests the ping tests send and the yardstick for replies.
 *
 * ```
 *   arpRequest(us, ourIp, target)              → 42-byte who-has, broadcast
 *   echoRequest(dst, src, srcIp, dstIp, ...)   → IPv4 + ICMP echo, checksums filled in
 *   assertEchoReply(reply, request)            → the answer RFC 792 asks for, or a throw
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";

/** Writes `ip` (host order) big-endian at `b[at]`. */
export function putIpv4(b: Uint8Array, at: number, ip: number): void {
  new DataView(b.buffer, b.byteOffset).setUint32(at, ip);
}

/** The RFC 1071 sum over 16-bit words: 0xffff when a region with its checksum in it is intact. */
export function onesSum(b: Uint8Array, at: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) s += (b[at + i] << 8) | (i + 1 < len ? b[at + i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** A broadcast ARP who-has `target` from `mac` / `ip` (42 bytes, no padding). */
export function arpRequest(mac: Uint8Array, ip: number, target: number): Uint8Array {
  const f = new Uint8Array(42);
  f.fill(0xff, 0, 6);
  f.set(mac, 6);
  f.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1], 12);
  f.set(mac, 22);
  putIpv4(f, 28, ip);
  putIpv4(f, 38, target);
  return f;
}

/**
 * An IPv4 ICMP echo request `src`/`srcIp` → `dst`/`dstIp` with identifier `id`, sequence `seq`
 * and `payload` bytes 0, 1, 2, ...; both checksums filled in.
 */
export function echoRequest(
  dst: Uint8Array,
  src: Uint8Array,
  srcIp: number,
  dstIp: number,
  id: number,
  seq: number,
  payload: number,
): Uint8Array {
  const f = new Uint8Array(14 + 20 + 8 + payload);
  const v = new DataView(f.buffer);
  f.set(dst, 0);
  f.set(src, 6);
  f.set([0x08, 0x00, 0x45, 0], 12);
  v.setUint16(16, 20 + 8 + payload);
  f.set([0, 1, 0x40, 0, 64, 1], 18); // IP id 1, DF, TTL 64, protocol ICMP
  putIpv4(f, 26, srcIp);
  putIpv4(f, 30, dstIp);
  v.setUint16(24, 0xffff - onesSum(f, 14, 20));
  f[34] = 8; // echo request, code 0
  v.setUint16(38, id);
  v.setUint16(40, seq);
  for (let i = 0; i < payload; i++) f[42 + i] = i & 255;
  v.setUint16(36, 0xffff - onesSum(f, 34, 8 + payload));
  return f;
}

/**
 * Asserts that `reply` answers echo `request` (RFC 792): MACs and IPv4 addresses swapped, type 0,
 * identifier, sequence and data unchanged, both checksums valid.
 */
export function assertEchoReply(reply: Uint8Array, request: Uint8Array): void {
  assert.equal(reply.length, request.length);
  assert.deepEqual(reply.subarray(0, 6), request.subarray(6, 12), "to the requester's MAC");
  assert.deepEqual(reply.subarray(6, 12), request.subarray(0, 6), "from the asked MAC");
  assert.deepEqual(reply.subarray(26, 30), request.subarray(30, 34), "from the asked address");
  assert.deepEqual(reply.subarray(30, 34), request.subarray(26, 30), "to the requester");
  assert.equal(reply[34], 0, "type 0, echo reply");
  assert.deepEqual(reply.subarray(38), request.subarray(38), "id, sequence and data echoed");
  assert.equal(onesSum(reply, 14, 20), 0xffff, "IPv4 header checksum");
  assert.equal(onesSum(reply, 34, reply.length - 34), 0xffff, "ICMP checksum");
}
