/**
 * The per-frame offload helpers on their own (lib/driver/offload.ts, lib/virtio/net_hdr.ts):
 * requesting a checksum and finishing it again gives back exactly the checksum lib/packet
 * computes in full, for TCP and UDP over IPv4, IPv6 and a VLAN tag; TSO requests carry the
 * header length and GSO type; what is not TCP/UDP is left alone.
 *
 * @module
 */

import assert from "node:assert/strict";
import { completeChecksum, requestTxChecksum, requestTxTso } from "../lib/driver/offload.ts";
import {
  NET_HDR_F_NEEDS_CSUM,
  NET_HDR_GSO_TCPV4,
  NET_HDR_GSO_TCPV6,
  NET_HDR_SIZE,
  netHdrCsumOffset,
  netHdrCsumStart,
  netHdrFlags,
  netHdrGsoSize,
  netHdrGsoType,
  netHdrHdrLen,
} from "../lib/virtio/net_hdr.ts";
import { tapOffloadFlags } from "../lib/vhost_net/frontend.ts";
import { featureMask } from "../lib/virtio/features.ts";
import { EtherType, writeEthernet } from "../lib/packet/ethernet.ts";
import { IpProtocol, writeIpv4 } from "../lib/packet/ipv4.ts";
import { parseIpv6, writeIpv6 } from "../lib/packet/ipv6.ts";
import { TcpFlag, writeTcp } from "../lib/packet/tcp.ts";
import { writeUdp } from "../lib/packet/udp.ts";
import { writeVlanTag } from "../lib/packet/vlan.ts";
import { read16 } from "../lib/packet/checksum.ts";

const MAC = Uint8Array.of(2, 0, 0, 0, 0, 1);

interface Case {
  name: string;
  v6: boolean;
  tcp: boolean;
  vlan: boolean;
  payload: number;
}

const CASES: Case[] = [];
for (const v6 of [false, true]) {
  for (const tcp of [false, true]) {
    for (const vlan of [false, true]) {
      for (const payload of [0, 1, 999]) {
        const name = `${tcp ? "TCP" : "UDP"}/IPv${v6 ? 6 : 4}${vlan ? " VLAN" : ""} ${payload} B`;
        CASES.push({ name, v6, tcp, vlan, payload });
      }
    }
  }
}

/** A frame behind a 12-byte header at 0, full checksums; returns [length, L4 offset in frame]. */
function build(b: Uint8Array, c: Case): [number, number] {
  const f = NET_HDR_SIZE;
  let l3 = f + 14;
  if (c.vlan) {
    writeEthernet(b, f, MAC, MAC, EtherType.VLAN);
    writeVlanTag(b, f, 7, c.v6 ? EtherType.IPV6 : EtherType.IPV4);
    l3 += 4;
  } else writeEthernet(b, f, MAC, MAC, c.v6 ? EtherType.IPV6 : EtherType.IPV4);
  const l4 = l3 + (c.v6 ? 40 : 20), l4Len = (c.tcp ? 20 : 8) + c.payload;
  const proto = c.tcp ? IpProtocol.TCP : IpProtocol.UDP;
  if (c.v6) writeIpv6(b, l3, proto, l4Len, parseIpv6("fd00::1"), parseIpv6("fd00::2"));
  else writeIpv4(b, l3, proto, 20 + l4Len, 0x0a000001, 0x0a000002);
  for (let k = 0; k < c.payload; k++) b[l4 + (c.tcp ? 20 : 8) + k] = (k * 37 + 11) & 255;
  if (c.tcp) writeTcp(b, l3, l4, 1, 2, 3, 4, TcpFlag.ACK, 5, l4Len);
  else writeUdp(b, l3, l4, 1, 2, l4Len);
  return [l4 + l4Len - f, l4 - f];
}

for (const c of CASES) {
  Deno.test(`offload helpers, ${c.name}: requestTxChecksum then completeChecksum restores the full checksum`, () => {
    const b = new Uint8Array(2048);
    const [len, l4] = build(b, c);
    const field = NET_HDR_SIZE + l4 + (c.tcp ? 16 : 6);
    const full = read16(b, field);
    assert.equal(requestTxChecksum(b, 0, len), l4);
    assert.equal(netHdrFlags(b, 0), NET_HDR_F_NEEDS_CSUM);
    assert.equal(netHdrCsumStart(b, 0), l4);
    assert.equal(netHdrCsumOffset(b, 0), c.tcp ? 16 : 6);
    assert.notEqual(read16(b, field), full, "the field holds the pseudo-header sum only");
    assert.equal(completeChecksum(b, 0, len), true);
    assert.equal(read16(b, field), full);
    assert.equal(netHdrFlags(b, 0), 0);
    assert.equal(completeChecksum(b, 0, len), false, "nothing left to finish");
  });
}

Deno.test("offload helpers: requestTxTso sets gso_type by IP version, gso_size and hdr_len; UDP is refused and left unrequested", () => {
  const b = new Uint8Array(4096);
  for (const v6 of [false, true]) {
    b.fill(0);
    const [len] = build(b, { name: "", v6, tcp: true, vlan: false, payload: 3000 });
    const hdrLen = 14 + (v6 ? 40 : 20) + 20;
    assert.equal(requestTxTso(b, 0, len, 1448), hdrLen);
    assert.equal(netHdrGsoType(b, 0), v6 ? NET_HDR_GSO_TCPV6 : NET_HDR_GSO_TCPV4);
    assert.equal(netHdrGsoSize(b, 0), 1448);
    assert.equal(netHdrHdrLen(b, 0), hdrLen);
    assert.equal(netHdrFlags(b, 0), NET_HDR_F_NEEDS_CSUM);
  }
  b.fill(0);
  const [len] = build(b, { name: "", v6: false, tcp: false, vlan: false, payload: 100 });
  assert.equal(requestTxTso(b, 0, len, 1448), -1);
  assert.deepEqual([...b.subarray(0, NET_HDR_SIZE)], new Array(NET_HDR_SIZE).fill(0));
});

Deno.test("offload helpers: frames that are not TCP/UDP over IP, or truncated, are left alone", () => {
  const b = new Uint8Array(256);
  writeEthernet(b, NET_HDR_SIZE, MAC, MAC, EtherType.ARP);
  assert.equal(requestTxChecksum(b, 0, 60), -1);
  const [len] = build(b, { name: "", v6: false, tcp: true, vlan: false, payload: 50 });
  assert.equal(requestTxChecksum(b, 0, len - 1), -1, "IP total length past the frame");
  assert.deepEqual([...b.subarray(0, NET_HDR_SIZE)], new Array(NET_HDR_SIZE).fill(0));
  // A device's NEEDS_CSUM whose field lies past the frame is not followed.
  b[0] = NET_HDR_F_NEEDS_CSUM;
  b[6] = 200;
  assert.equal(completeChecksum(b, 0, len), false);
});

Deno.test("vhost-net: TUNSETOFFLOAD follows GUEST_CSUM / GUEST_TSO4 / GUEST_TSO6 (TSO only with CSUM)", () => {
  assert.equal(tapOffloadFlags(0n), 0);
  assert.equal(tapOffloadFlags(featureMask("NET_F_CSUM", "NET_F_HOST_TSO4")), 0, "tx bits: none");
  assert.equal(tapOffloadFlags(featureMask("NET_F_GUEST_CSUM")), 1);
  assert.equal(tapOffloadFlags(featureMask("NET_F_GUEST_TSO4")), 0);
  assert.equal(
    tapOffloadFlags(featureMask("NET_F_GUEST_CSUM", "NET_F_GUEST_TSO4", "NET_F_GUEST_TSO6")),
    1 | 2 | 4,
  );
});
