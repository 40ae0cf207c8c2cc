/**
 * One frame of every kind the packet library builds, with what a dissector must report for it:
 * shared by the unit tests and the tshark comparison.
 *
 * @module
 */

import { ArpOp, writeArp } from "../lib/packet/arp.ts";
import { EtherType, parseMac, writeEthernet } from "../lib/packet/ethernet.ts";
import { IcmpType, writeIcmpEcho } from "../lib/packet/icmp.ts";
import { IpProtocol, parseIpv4, writeIpv4 } from "../lib/packet/ipv4.ts";
import { parseIpv6, writeIpv6 } from "../lib/packet/ipv6.ts";
import { TcpFlag, writeTcp } from "../lib/packet/tcp.ts";
import { PacketTemplate } from "../lib/packet/template.ts";
import { writeUdp } from "../lib/packet/udp.ts";
import { writeVlanTag } from "../lib/packet/vlan.ts";

/** A built frame and the tshark fields expected for it. */
export interface Sample {
  name: string;
  frame: Uint8Array;
  /** Has an IPv4 header (header checksum to check). */
  ipv4: boolean;
  /** Has a checksummed L4 header. */
  l4: boolean;
  /** tshark field name -> expected value. */
  fields: Record<string, string>;
}

const DST = parseMac("52:54:00:12:34:56");
const SRC = parseMac("02:00:00:00:00:01");
const A4 = parseIpv4("10.1.2.3"), B4 = parseIpv4("192.0.2.77");
const A6 = parseIpv6("2001:db8::1"), B6 = parseIpv6("2001:db8:1::abcd");

/** Builds the sample frames (a fresh set each call). */
export function buildSamples(): Sample[] {
  const out: Sample[] = [];
  const eth = { "eth.dst": "52:54:00:12:34:56", "eth.src": "02:00:00:00:00:01" };
  const v4 = { "ip.src": "10.1.2.3", "ip.dst": "192.0.2.77" };
  const v6 = { "ipv6.src": "2001:db8::1", "ipv6.dst": "2001:db8:1::abcd" };

  // UDP over IPv4, with payload.
  {
    const f = new Uint8Array(100);
    for (let i = 42; i < 100; i++) f[i] = i * 7;
    writeEthernet(f, 0, DST, SRC, EtherType.IPV4);
    writeIpv4(f, 14, IpProtocol.UDP, 86, A4, B4);
    writeUdp(f, 14, 34, 5000, 53, 66);
    out.push({
      name: "udp4",
      frame: f,
      ipv4: true,
      l4: true,
      fields: { ...eth, ...v4, "udp.srcport": "5000", "udp.dstport": "53" },
    });
  }
  // TCP over IPv4 in a VLAN.
  {
    const f = new Uint8Array(80);
    writeEthernet(f, 0, DST, SRC, EtherType.VLAN);
    writeVlanTag(f, 0, 123, EtherType.IPV4, 5);
    for (let i = 58; i < 80; i++) f[i] = i;
    writeIpv4(f, 18, IpProtocol.TCP, 62, A4, B4);
    writeTcp(f, 18, 38, 40000, 80, 0x12345678, 0x9abcdef0, TcpFlag.ACK | TcpFlag.PSH, 512, 42);
    out.push({
      name: "tcp4-vlan",
      frame: f,
      ipv4: true,
      l4: true,
      fields: {
        ...eth,
        ...v4,
        "vlan.id": "123",
        "vlan.priority": "5",
        "tcp.srcport": "40000",
        "tcp.dstport": "80",
        "tcp.flags": "0x0018",
      },
    });
  }
  // UDP over IPv6.
  {
    const f = new Uint8Array(90);
    writeEthernet(f, 0, DST, SRC, EtherType.IPV6);
    for (let i = 62; i < 90; i++) f[i] = 255 - i;
    writeIpv6(f, 14, IpProtocol.UDP, 36, A6, B6);
    writeUdp(f, 14, 54, 1234, 4321, 36);
    out.push({
      name: "udp6",
      frame: f,
      ipv4: false,
      l4: true,
      fields: { ...eth, ...v6, "udp.srcport": "1234", "udp.dstport": "4321" },
    });
  }
  // TCP over IPv6 (SYN).
  {
    const f = new Uint8Array(74);
    writeEthernet(f, 0, DST, SRC, EtherType.IPV6);
    writeIpv6(f, 14, IpProtocol.TCP, 20, A6, B6);
    writeTcp(f, 14, 54, 33000, 443, 1, 0, TcpFlag.SYN, 64240, 20);
    out.push({
      name: "tcp6",
      frame: f,
      ipv4: false,
      l4: true,
      fields: {
        ...eth,
        ...v6,
        "tcp.srcport": "33000",
        "tcp.dstport": "443",
        "tcp.flags": "0x0002",
      },
    });
  }
  // ICMP echo request over IPv4.
  {
    const f = new Uint8Array(98);
    writeEthernet(f, 0, DST, SRC, EtherType.IPV4);
    for (let i = 42; i < 98; i++) f[i] = i;
    writeIpv4(f, 14, IpProtocol.ICMP, 84, A4, B4);
    writeIcmpEcho(f, 14, 34, IcmpType.ECHO_REQUEST, 0x4242, 7, 64);
    out.push({
      name: "icmp4",
      frame: f,
      ipv4: true,
      l4: true,
      fields: { ...eth, ...v4, "icmp.type": "8", "icmp.ident": "16962", "icmp.seq": "7" },
    });
  }
  // ICMPv6 echo reply.
  {
    const f = new Uint8Array(70);
    writeEthernet(f, 0, DST, SRC, EtherType.IPV6);
    for (let i = 62; i < 70; i++) f[i] = i;
    writeIpv6(f, 14, IpProtocol.ICMPV6, 16, A6, B6);
    writeIcmpEcho(f, 14, 54, IcmpType.V6_ECHO_REPLY, 99, 3, 16);
    out.push({
      name: "icmp6",
      frame: f,
      ipv4: false,
      l4: true,
      fields: { ...eth, ...v6, "icmpv6.type": "129", "icmpv6.echo.identifier": "0x0063" },
    });
  }
  // ARP request.
  {
    const f = new Uint8Array(60);
    writeEthernet(f, 0, parseMac("ff:ff:ff:ff:ff:ff"), SRC, EtherType.ARP);
    writeArp(f, 14, ArpOp.REQUEST, SRC, A4, new Uint8Array(6), B4);
    out.push({
      name: "arp",
      frame: f,
      ipv4: false,
      l4: false,
      fields: {
        "arp.opcode": "1",
        "arp.src.proto_ipv4": "10.1.2.3",
        "arp.dst.proto_ipv4": "192.0.2.77",
        "arp.src.hw_mac": "02:00:00:00:00:01",
      },
    });
  }
  // Templates: IPv4/UDP in VLAN and IPv6/TCP, patched.
  {
    const t = new PacketTemplate({ vlan: 7, srcMac: SRC, dstMac: DST, srcIp: A4, dstIp: B4 });
    const f = new Uint8Array(300);
    t.write(f, 0, 300);
    t.patch16(f, 0, t.fieldOffset("src-port"), 7777);
    t.patch32(f, 0, t.fieldOffset("dst-ip"), parseIpv4("192.0.2.200"));
    t.setSize(f, 0, 128);
    out.push({
      name: "template-udp4-vlan",
      frame: f.slice(0, 128),
      ipv4: true,
      l4: true,
      fields: {
        ...eth,
        "ip.src": "10.1.2.3",
        "ip.dst": "192.0.2.200",
        "vlan.id": "7",
        "udp.srcport": "7777",
        "udp.length": "90",
      },
    });
  }
  {
    const t = new PacketTemplate({
      ipv6: true,
      transport: "tcp",
      srcMac: SRC,
      dstMac: DST,
      srcIp6: A6,
      dstIp6: B6,
    });
    const f = new Uint8Array(2036);
    t.write(f, 0, 1514);
    t.patch16(f, 0, t.fieldOffset("dst-port"), 8080);
    t.patch32(f, 0, t.fieldOffset("src-ip"), 0xabcd0001);
    out.push({
      name: "template-tcp6",
      frame: f.slice(0, 1514),
      ipv4: false,
      l4: true,
      fields: {
        ...eth,
        "ipv6.src": "2001:db8::abcd:1",
        "tcp.dstport": "8080",
        "ipv6.plen": "1460",
      },
    });
  }
  return out;
}
