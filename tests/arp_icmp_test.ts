/**
 * The ARP and ICMP echo answers of `lib/packet/arp_icmp.ts` (what examples/ping.ts sends back),
 * on frames built byte by byte from RFC 826 and RFC 792, checksums verified independently.
 *
 * ```
 *   who-has 10.0.0.2 ──answerArp──► is-at our MAC, addressed to the asker
 *   echo request     ──answerIcmpEcho──► echo reply, addresses swapped, checksums valid
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  answerArp,
  answerIcmpEcho,
  describeFrame,
  formatIpv4,
  parseIpv4,
} from "../lib/packet/arp_icmp.ts";
import { assertThrows } from "./helpers.ts";

const US = Uint8Array.of(0x02, 0, 0, 0, 0, 2);
const THEM = Uint8Array.of(0x52, 0x54, 0, 0x12, 0x34, 0x56);
const OUR_IP = parseIpv4("10.0.0.2"), THEIR_IP = parseIpv4("10.0.0.1");

function ip4(b: Uint8Array, at: number, ip: number) {
  new DataView(b.buffer).setUint32(at, ip);
}

function arpRequest(target: number): Uint8Array {
  const f = new Uint8Array(42);
  f.fill(0xff, 0, 6);
  f.set(THEM, 6);
  f.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1], 12);
  f.set(THEM, 22);
  ip4(f, 28, THEIR_IP);
  ip4(f, 38, target);
  return f;
}

/** RFC 1071 sum over 16-bit words: 0xffff when a region with its checksum in it is intact. */
function onesSum(b: Uint8Array, at: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) s += (b[at + i] << 8) | (b[at + i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function echoRequest(payload: number): Uint8Array {
  const f = new Uint8Array(14 + 20 + 8 + payload);
  f.set(US, 0);
  f.set(THEM, 6);
  f.set([0x08, 0x00, 0x45, 0], 12);
  new DataView(f.buffer).setUint16(16, 20 + 8 + payload);
  f.set([0, 1, 0x40, 0, 64, 1], 18); // id 1, DF, TTL 64, ICMP
  ip4(f, 26, THEIR_IP);
  ip4(f, 30, OUR_IP);
  let s = 0xffff - onesSum(f, 14, 20);
  f[24] = s >> 8;
  f[25] = s & 255;
  f.set([8, 0, 0, 0, 0x12, 0x34, 0, 7], 34);
  for (let i = 0; i < payload; i++) f[42 + i] = i;
  s = 0xffff - onesSum(f, 34, 8 + payload);
  f[36] = s >> 8;
  f[37] = s & 255;
  return f;
}

Deno.test("arp: a who-has for our address becomes is-at our MAC, sent to the asker", () => {
  const f = arpRequest(OUR_IP);
  assert.equal(answerArp(f, 0, f.length, US, OUR_IP), true);
  const want = new Uint8Array(42);
  want.set(THEM, 0);
  want.set(US, 6);
  want.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2], 12);
  want.set(US, 22);
  ip4(want, 28, OUR_IP);
  want.set(THEM, 32);
  ip4(want, 38, THEIR_IP);
  assert.deepEqual(f, want);
  const other = arpRequest(parseIpv4("10.0.0.3"));
  assert.equal(answerArp(other, 0, other.length, US, OUR_IP), false);
  assert.deepEqual(other, arpRequest(parseIpv4("10.0.0.3")), "left untouched");
});

Deno.test("icmp: an echo request becomes an echo reply with valid checksums", () => {
  for (const payload of [0, 1, 56, 1472]) {
    const f = echoRequest(payload);
    const request = f.slice();
    assert.equal(answerIcmpEcho(f, 0, f.length, US, OUR_IP), true);
    assert.deepEqual(f.subarray(0, 6), THEM);
    assert.deepEqual(f.subarray(6, 12), US);
    assert.deepEqual(f.subarray(26, 30), request.subarray(30, 34));
    assert.deepEqual(f.subarray(30, 34), request.subarray(26, 30));
    assert.equal(f[34], 0, "type 0, echo reply");
    assert.deepEqual(f.subarray(38), request.subarray(38), "id, sequence and data echoed");
    assert.equal(onesSum(f, 14, 20), 0xffff, "IPv4 header checksum");
    assert.equal(onesSum(f, 34, 8 + payload), 0xffff, `ICMP checksum (${payload} B payload)`);
  }
  const notOurs = echoRequest(8);
  ip4(notOurs, 30, parseIpv4("10.0.0.9"));
  assert.equal(answerIcmpEcho(notOurs, 0, notOurs.length, US, OUR_IP), false);
});

Deno.test("describeFrame and address text", () => {
  const arp = arpRequest(OUR_IP);
  assert.equal(
    describeFrame(arp, 0, 42),
    "52:54:00:12:34:56 > ff:ff:ff:ff:ff:ff ARP who-has 10.0.0.2 tell 10.0.0.1, 42 bytes",
  );
  const echo = echoRequest(56);
  assert.equal(
    describeFrame(echo, 0, echo.length),
    "52:54:00:12:34:56 > 02:00:00:00:00:02 IPv4 10.0.0.1 > 10.0.0.2 ICMP echo request, 98 bytes",
  );
  assert.equal(formatIpv4(parseIpv4("192.168.0.255")), "192.168.0.255");
  assertThrows(() => parseIpv4("10.0.0"), TypeError, "bad IPv4 address");
});
