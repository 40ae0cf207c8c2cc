/**
 * The ARP and ICMP echo answers of `lib/packet/responder.ts` (what examples/ping.ts sends back)
 * and the one-line summaries of `lib/packet/describe.ts`,
 * on frames built byte by byte from RFC 826 and RFC 792, checksums verified independently.
 *
 * ```
 *   who-has 10.0.0.2 ──answerArp──► is-at our MAC, addressed to the asker
 *   echo request     ──answerIcmpEcho──► echo reply, addresses swapped, checksums valid
 *   NS for fd02::2   ──answerNeighborSolicitation──► solicited NA with our MAC (RFC 4861 §4.4)
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { answerArp, answerIcmpEcho, answerNeighborSolicitation } from "../lib/packet/responder.ts";
import { parseIpv6 } from "../lib/packet/ipv6.ts";
import { describeFrame } from "../lib/packet/describe.ts";
import { formatIpv4, parseIpv4 } from "../lib/packet/ipv4.ts";
import { assertThrows } from "./helpers.ts";
import { arpRequest as who, assertEchoReply, echoRequest, putIpv4 } from "./arp_icmp_frames.ts";

const US = Uint8Array.of(0x02, 0, 0, 0, 0, 2);
const THEM = Uint8Array.of(0x52, 0x54, 0, 0x12, 0x34, 0x56);
const OUR_IP = parseIpv4("10.0.0.2"), THEIR_IP = parseIpv4("10.0.0.1");

const ip4 = putIpv4;
const arpRequest = (target: number) => who(THEM, THEIR_IP, target);
const echoTo = (payload: number) => echoRequest(US, THEM, THEIR_IP, OUR_IP, 0x1234, 7, payload);

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
    const f = echoTo(payload);
    const request = f.slice();
    assert.equal(answerIcmpEcho(f, 0, f.length, US, OUR_IP), true);
    assertEchoReply(f, request);
  }
  const notOurs = echoTo(8);
  ip4(notOurs, 30, parseIpv4("10.0.0.9"));
  assert.equal(answerIcmpEcho(notOurs, 0, notOurs.length, US, OUR_IP), false);
});

/** The RFC 1071 sum of the ICMPv6 message at `f[62..]` with its IPv6 pseudo-header (RFC 8200 §8.1). */
function icmpv6Sum(f: Uint8Array): number {
  let sum = 58 + (f.length - 54);
  for (let i = 22; i < 54; i += 2) sum += f[i] << 8 | f[i + 1];
  for (let i = 54; i < f.length; i += 2) sum += f[i] << 8 | f[i + 1];
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** An Ethernet/IPv6 frame: `icmp` behind a header from `src` to `dst`, hop limit 255. */
function ipv6Frame(dmac: Uint8Array, smac: Uint8Array, src: string, dst: string, icmp: number[]) {
  const f = new Uint8Array(54 + icmp.length);
  f.set(dmac, 0);
  f.set(smac, 6);
  f.set([0x86, 0xdd, 0x60, 0, 0, 0, 0, icmp.length, 58, 255], 12);
  f.set(parseIpv6(src), 22);
  f.set(parseIpv6(dst), 38);
  f.set(icmp, 54);
  const sum = 0xffff - icmpv6Sum(f);
  f[56] = sum >> 8;
  f[57] = sum & 255;
  return f;
}

Deno.test("ndp: a neighbor solicitation for our address becomes the solicited advertisement", () => {
  const target = [...parseIpv6("fd02::2")];
  const solicitation = () =>
    ipv6Frame(Uint8Array.of(0x33, 0x33, 0xff, 0, 0, 2), THEM, "fd02::1", "ff02::1:ff00:2", [
      ...[135, 0, 0, 0, 0, 0, 0, 0, ...target, 1, 1, ...THEM],
    ]);
  const ns = solicitation();
  assert.equal(icmpv6Sum(ns), 0xffff, "the solicitation's checksum verifies");
  assert.equal(answerNeighborSolicitation(ns, 0, ns.length, US, parseIpv6("fd02::2")), true);
  const want = ipv6Frame(THEM, US, "fd02::2", "fd02::1", [
    ...[136, 0, 0, 0, 0x60, 0, 0, 0, ...target, 2, 1, ...US],
  ]);
  assert.deepEqual(ns, want);
  const other = solicitation();
  assert.equal(answerNeighborSolicitation(other, 0, other.length, US, parseIpv6("fd02::3")), false);
  assert.deepEqual(other, solicitation(), "a solicitation for another address is left untouched");
  assert.equal(answerNeighborSolicitation(want, 0, want.length, US, parseIpv6("fd02::2")), false);
});

Deno.test("describeFrame and address text", () => {
  const arp = arpRequest(OUR_IP);
  assert.equal(
    describeFrame(arp, 0, 42),
    "52:54:00:12:34:56 > ff:ff:ff:ff:ff:ff ARP who-has 10.0.0.2 tell 10.0.0.1, 42 bytes",
  );
  const echo = echoTo(56);
  assert.equal(
    describeFrame(echo, 0, echo.length),
    "52:54:00:12:34:56 > 02:00:00:00:00:02 IPv4 10.0.0.1 > 10.0.0.2 ICMP echo request, 98 bytes",
  );
  assert.equal(formatIpv4(parseIpv4("192.168.0.255")), "192.168.0.255");
  assertThrows(() => parseIpv4("10.0.0"), TypeError, "bad IPv4 address");
});
