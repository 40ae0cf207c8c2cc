/**
 * The ARP and ICMP echo answers of `lib/packet/responder.ts` (what examples/ping.ts sends back)
 * and the one-line summaries of `lib/packet/describe.ts`,
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
import { answerArp, answerIcmpEcho } from "../lib/packet/responder.ts";
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
