/**
 * Checksum and TSO offloads through vhost-net and the kernel's network stack (inside the test
 * VM). Port A sends on tap vno0; the kernel routes 10.1.0.0/24 → 10.2.0.0/24 and fd01::/64 →
 * fd02::/64 (forwarding on) out of tap vno1, where port B receives (and answers the kernel's ARP
 * for 10.2.0.2 and neighbor solicitation for fd02::2). The VM boots with IPv6 off on every
 * interface; the taps here turn it on for themselves.
 *
 * ```
 *   port A ──64 KB TCP, NEEDS_CSUM + GSO_TCPV4/6──► vno0 ─forward─► vno1 ──► port B
 *     B without offloads: the kernel cuts and checksums → 45 MSS-sized frames, checksums valid
 *       (IPv4: MSS 1448; IPv6: MSS 1440, its own TCP checksum over the IPv6 pseudo-header)
 *     B with rxChecksum + rxTso4/6 + mergeable (TUNSETOFFLOAD CSUM|TSO4|TSO6): one 64 KB frame,
 *       gso_type TCPV4/TCPV6, NEEDS_CSUM, finished by completeChecksum
 *   port A ──UDP to 10.1.0.1:9 / [fd01::1]:9, checksum field = pseudo-header sum──► vno0
 *     with NEEDS_CSUM: Udp(6) NoPorts +N (checksum accepted); without: InCsumErrors +N
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { VirtioNet, type VirtioNetOptions } from "../../lib/driver/virtio_net.ts";
import { completeChecksum, requestTxChecksum, requestTxTso } from "../../lib/driver/offload.ts";
import {
  NET_HDR_F_DATA_VALID,
  NET_HDR_F_NEEDS_CSUM,
  NET_HDR_GSO_TCPV4,
  NET_HDR_GSO_TCPV6,
  NET_HDR_SIZE,
  netHdrFlags,
  netHdrGsoSize,
  netHdrGsoType,
} from "../../lib/virtio/net_hdr.ts";
import { EtherType, parseMac, writeEthernet } from "../../lib/packet/ethernet.ts";
import { parseIpv6, writeIpv6 } from "../../lib/packet/ipv6.ts";
import { IpProtocol, parseIpv4, writeIpv4 } from "../../lib/packet/ipv4.ts";
import { TcpFlag, writeTcp } from "../../lib/packet/tcp.ts";
import { udpChecksumValid, writeUdp } from "../../lib/packet/udp.ts";
import {
  FrameFlag,
  parseFrame,
  VIEW_L4,
  VIEW_PAYLOAD,
  VIEW_SIZE,
} from "../../lib/packet/frame_view.ts";
import { read32 } from "../../lib/packet/checksum.ts";
import { answerArp, answerNeighborSolicitation } from "../../lib/packet/responder.ts";
import { persistentTap, pollUntil, removeTap, report, sh } from "./guest.ts";

const TAP_A = "vno0", TAP_B = "vno1";
const IP_A = parseIpv4("10.1.0.2"), IP_B = parseIpv4("10.2.0.2"), IP_TAP_A = parseIpv4("10.1.0.1");
const IP6_A = parseIpv6("fd01::2"), IP6_B = parseIpv6("fd02::2");
const SEGMENTS = 45;
const SEQ = 1000;

/** One 64 KB TCP segment's shape: MSS such that a segment fills a 1500-byte MTU. */
interface Flow {
  v6: boolean;
  mss: number;
  /** Ethernet + IP + TCP header bytes. */
  headers: number;
  payload: number;
  frame: number;
}

function flow(v6: boolean): Flow {
  const mss = v6 ? 1440 : 1448, headers = 14 + (v6 ? 40 : 20) + 20, payload = mss * SEGMENTS;
  return { v6, mss, headers, payload, frame: headers + payload };
}

const FLOWS = [flow(false), flow(true)];

/** Payload byte `i` of the big segment. */
function payloadByte(i: number): number {
  return (i * 131 + (i >> 8) * 7 + 3) & 255;
}

function tapMac(name: string): Uint8Array {
  return parseMac(Deno.readTextFileSync(`/sys/class/net/${name}/address`).trim());
}

/** Port A on vno0 with the transmit offloads; buffers large enough for a 64 KB frame. */
function openA(): VirtioNet {
  return VirtioNet.open({
    path: "/dev/vhost-net",
    tap: TAP_A,
    queueSize: 64,
    buffers: 160,
    bufferSize: 65536,
    offloads: { txChecksum: true, txTso4: true, txTso6: true },
    notice: () => {},
  });
}

/** Each tap's kernel-side IPv4 and IPv6 addresses (the routes to A's and B's subnets). */
const TAP_ADDRESSES = [[TAP_A, "10.1.0.1/24", "fd01::1/64"], [TAP_B, "10.2.0.1/24", "fd02::1/64"]];

async function withTaps(body: () => Promise<void>): Promise<void> {
  Deno.writeTextFileSync("/proc/sys/net/ipv4/ip_forward", "1");
  Deno.writeTextFileSync("/proc/sys/net/ipv6/conf/all/forwarding", "1");
  for (const [tap, v4, v6] of TAP_ADDRESSES) {
    await persistentTap(tap, v4);
    // The VM boots with IPv6 off on every interface (kernel_vm_test.ts): on for these two, with
    // no duplicate address detection, so the address (and its route) is usable at once.
    Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${tap}/accept_dad`, "0");
    Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${tap}/disable_ipv6`, "0");
    await sh("ip", "addr", "add", v6, "dev", tap);
  }
  try {
    await body();
  } finally {
    removeTap(TAP_A);
    removeTap(TAP_B);
  }
}

/** Sends the 64 KB TCP segment of `f` from port A (to 10.2.0.2 / fd02::2) with a TSO request. */
async function sendBigSegment(a: VirtioNet, f: Flow): Promise<void> {
  const bufs = new Uint32Array(1), lens = Uint32Array.of(f.frame);
  assert.equal(a.pool.alloc(bufs, 0, 1), 1);
  const bytes = a.pool.bytes, at = a.pool.dataOffset(bufs[0]);
  const l3 = at + 14, l4 = at + f.headers - 20;
  writeEthernet(bytes, at, tapMac(TAP_A), a.mac, f.v6 ? EtherType.IPV6 : EtherType.IPV4);
  for (let i = 0; i < f.payload; i++) bytes[at + f.headers + i] = payloadByte(i);
  if (f.v6) writeIpv6(bytes, l3, IpProtocol.TCP, 20 + f.payload, IP6_A, IP6_B);
  else writeIpv4(bytes, l3, IpProtocol.TCP, 20 + 20 + f.payload, IP_A, IP_B);
  const flags = TcpFlag.ACK | TcpFlag.PSH;
  writeTcp(bytes, l3, l4, 40000, 5001, SEQ, 1, flags, 65535, 20 + f.payload);
  assert.equal(requestTxTso(bytes, a.pool.headerOffset(bufs[0]), f.frame, f.mss), f.headers);
  let sent = 0;
  await pollUntil(() => (sent = a.txBurst(bufs, lens, 1)) === 1);
  assert.equal(sent, 1);
}

interface Arrival {
  /** TCP frames of the flow, each with the header's flags / gso_type / gso_size. */
  frames: { len: number; flags: number; gsoType: number; gsoSize: number; checksumsOk: boolean }[];
  /** The flow's payload, placed by sequence number. */
  payload: Uint8Array;
  /** Payload bytes received (with overlaps counted twice). */
  bytes: number;
  /** ARP requests and neighbor solicitations answered. */
  arp: number;
  other: number;
}

/**
 * Receives on port B until the flow's payload arrived (bounded), answering ARP for 10.2.0.2 and
 * neighbor solicitations for fd02::2. Each frame is gathered into one buffer (mergeable frames
 * span several), a partial
 * checksum finished with completeChecksum before the checksums are verified.
 */
async function receiveFlow(b: VirtioNet, flow: Flow): Promise<Arrival> {
  const PAYLOAD = flow.payload;
  const got: Arrival = { frames: [], payload: new Uint8Array(PAYLOAD), bytes: 0, arp: 0, other: 0 };
  const bufs = new Uint32Array(256), lens = new Uint32Array(256), segs = new Uint32Array(256);
  const whole = new Uint8Array(NET_HDR_SIZE + 65536), view = new Int32Array(VIEW_SIZE);
  const reply = new Uint32Array(1), replyLen = new Uint32Array(1);
  await pollUntil(() => {
    const frames = b.rxFrames(bufs, lens, segs, 256);
    const pool = b.pool, bytes = pool.bytes;
    for (let f = 0, j = 0; f < frames; j += segs[f++]) {
      const first = bufs[j];
      const at = pool.dataOffset(first);
      if (
        segs[f] === 1 &&
        (answerArp(bytes, at, lens[j], b.mac, IP_B) ||
          answerNeighborSolicitation(bytes, at, lens[j], b.mac, IP6_B))
      ) {
        got.arp++;
        reply[0] = first;
        replyLen[0] = lens[j];
        if (b.txBurst(reply, replyLen, 1) === 1) continue;
      }
      // Gather: header, then the frame bytes of every buffer (§5.1.6.4: only the first has the
      // header; the others hold frame bytes from their start).
      whole.set(bytes.subarray(pool.headerOffset(first), pool.dataOffset(first) + lens[j]), 0);
      let len = lens[j];
      for (let k = 1; k < segs[f]; k++) {
        const at = pool.headerOffset(bufs[j + k]);
        whole.set(bytes.subarray(at, at + lens[j + k]), NET_HDR_SIZE + len);
        len += lens[j + k];
      }
      pool.free(bufs, j, segs[f]);
      const flags = netHdrFlags(whole, 0), gsoType = netHdrGsoType(whole, 0);
      const gsoSize = netHdrGsoSize(whole, 0);
      const partial = completeChecksum(whole, 0, len);
      const parsed = parseFrame(whole, NET_HDR_SIZE, len, view);
      const l4 = view[VIEW_L4];
      const v6 = (parsed & FrameFlag.IPV6) !== 0;
      if (
        (parsed & FrameFlag.TCP) === 0 || v6 !== flow.v6 ||
        (whole[l4 + 2] << 8 | whole[l4 + 3]) !== 5001
      ) {
        got.other++;
        continue;
      }
      assert.equal(partial, (flags & NET_HDR_F_NEEDS_CSUM) !== 0);
      const ok = FrameFlag.L4_CHECKSUM_OK | (flow.v6 ? 0 : FrameFlag.IP_CHECKSUM_OK);
      got.frames.push({ len, flags, gsoType, gsoSize, checksumsOk: (parsed & ok) === ok });
      const data = view[VIEW_PAYLOAD], n = NET_HDR_SIZE + len - data;
      const offset = read32(whole, l4 + 4) - SEQ;
      assert.ok(offset >= 0 && offset + n <= PAYLOAD, `segment at ${offset}, ${n} bytes`);
      got.payload.set(whole.subarray(data, data + n), offset);
      got.bytes += n;
    }
    return got.bytes >= PAYLOAD;
  }, 60_000);
  return got;
}

function assertPayload(p: Uint8Array): void {
  let wrong = -1;
  for (let i = 0; i < p.length && wrong < 0; i++) if (p[i] !== payloadByte(i)) wrong = i;
  assert.equal(wrong, -1, `payload differs at byte ${wrong}`);
}

async function bigSegmentRun(f: Flow, bOptions: Partial<VirtioNetOptions>): Promise<Arrival> {
  using a = openA();
  assert.deepEqual(
    { ...a.offloads },
    {
      txChecksum: true,
      txTso4: true,
      txTso6: true,
      rxChecksum: false,
      rxTso4: false,
      rxTso6: false,
    },
  );
  using b = VirtioNet.open({ path: "/dev/vhost-net", tap: TAP_B, notice: () => {}, ...bOptions });
  await sendBigSegment(a, f);
  const got = await receiveFlow(b, f);
  assert.equal(a.txDrain(10_000), 0, "vhost-net used the 64 KB buffer");
  assert.equal(a.stats.txBytes, f.frame);
  return got;
}

for (const f of FLOWS) {
  const tso = f.v6 ? "TSO6" : "TSO4";
  Deno.test(`vhost-net ${tso}: one ${f.frame}-byte TCP segment (gso_size ${f.mss}) leaves the kernel as ${SEGMENTS} frames with valid checksums`, async () => {
    await withTaps(async () => {
      const got = await bigSegmentRun(f, {});
      assert.equal(got.bytes, f.payload, "no byte twice");
      assert.equal(got.frames.length, SEGMENTS);
      for (const r of got.frames) {
        assert.deepEqual(r, {
          len: f.headers + f.mss,
          flags: 0,
          gsoType: 0,
          gsoSize: 0,
          checksumsOk: true,
        });
      }
      assertPayload(got.payload);
      report(
        `${tso} → port without offloads: 1 frame of ${f.frame} B sent, ${got.frames.length} ` +
          `frames of ${f.headers + f.mss} B received, ${f.v6 ? "" : "IP+"}TCP checksums valid ` +
          `in all, ${got.bytes} payload bytes identical; ${got.arp} ARP/NS answered, ` +
          `${got.other} other frames`,
      );
    });
  });

  const guest = f.v6 ? "GUEST_TSO6" : "GUEST_TSO4";
  Deno.test(`vhost-net ${guest} + GUEST_CSUM: the 64 KB segment arrives whole (gso_type ${f.v6 ? "TCPV6" : "TCPV4"}, NEEDS_CSUM) in mergeable buffers`, async () => {
    await withTaps(async () => {
      const got = await bigSegmentRun(f, {
        mergeable: true,
        offloads: { rxChecksum: true, rxTso4: true, rxTso6: true },
      });
      assert.equal(got.frames.length, 1);
      const [r] = got.frames;
      assert.equal(r.len, f.frame);
      assert.equal(r.gsoType, f.v6 ? NET_HDR_GSO_TCPV6 : NET_HDR_GSO_TCPV4);
      assert.equal(r.gsoSize, f.mss);
      assert.equal(r.flags & NET_HDR_F_NEEDS_CSUM, NET_HDR_F_NEEDS_CSUM);
      assert.ok(r.checksumsOk, "completeChecksum finished a valid TCP checksum");
      assertPayload(got.payload);
      report(
        `${guest}: 1 frame of ${r.len} B, gso_type ${r.gsoType}, gso_size ${r.gsoSize}, flags ` +
          `${r.flags} (NEEDS_CSUM${r.flags & NET_HDR_F_DATA_VALID ? "|DATA_VALID" : ""}), ` +
          `checksum finished by completeChecksum valid, ${got.bytes} payload bytes identical`,
      );
    });
  });
}

/**
 * The UDP counters NoPorts and InCsumErrors: of /proc/net/snmp ("Udp:" rows) for IPv4, of
 * /proc/net/snmp6 ("Udp6NoPorts N" lines) for IPv6.
 */
function udpCounters(v6: boolean): Record<string, number> {
  if (v6) {
    const rows = Deno.readTextFileSync("/proc/net/snmp6").split("\n").map((l) => l.split(/\s+/));
    const get = (k: string) => Number(rows.find((r) => r[0] === `Udp6${k}`)?.[1]);
    return { NoPorts: get("NoPorts"), InCsumErrors: get("InCsumErrors") };
  }
  const lines = Deno.readTextFileSync("/proc/net/snmp").split("\n").filter((l) =>
    l.startsWith("Udp:")
  );
  const names = lines[0].split(/\s+/).slice(1), values = lines[1].split(/\s+/).slice(1);
  return Object.fromEntries(names.map((n, i) => [n, Number(values[i])]));
}

const UDP_FRAMES = 16, UDP_LEN = 8 + 100;
const IP6_TAP_A = parseIpv6("fd01::1");

/**
 * Sends UDP_FRAMES datagrams to 10.1.0.1:9 (or [fd01::1]:9) whose checksum field holds only the
 * pseudo-header sum.
 */
async function sendUdp(a: VirtioNet, v6: boolean, needsCsum: boolean): Promise<void> {
  const l4 = 14 + (v6 ? 40 : 20);
  const bufs = new Uint32Array(UDP_FRAMES), lens = new Uint32Array(UDP_FRAMES).fill(l4 + UDP_LEN);
  assert.equal(a.pool.alloc(bufs, 0, UDP_FRAMES), UDP_FRAMES);
  const bytes = a.pool.bytes, mac = tapMac(TAP_A);
  for (let i = 0; i < UDP_FRAMES; i++) {
    const at = a.pool.dataOffset(bufs[i]), hdr = a.pool.headerOffset(bufs[i]);
    writeEthernet(bytes, at, mac, a.mac, v6 ? EtherType.IPV6 : EtherType.IPV4);
    if (v6) writeIpv6(bytes, at + 14, IpProtocol.UDP, UDP_LEN, IP6_A, IP6_TAP_A);
    else writeIpv4(bytes, at + 14, IpProtocol.UDP, 20 + UDP_LEN, IP_A, IP_TAP_A, 64, i);
    for (let k = 0; k < 100; k++) bytes[at + l4 + 8 + k] = i + k;
    writeUdp(bytes, at + 14, at + l4, 40000 + i, 9, UDP_LEN);
    assert.equal(requestTxChecksum(bytes, hdr, lens[i]), l4);
    assert.equal(udpChecksumValid(bytes, at + 14, at + l4), false, "the field is unfinished");
    if (!needsCsum) bytes[hdr] = 0; // the same bytes, but no NEEDS_CSUM
  }
  let sent = 0;
  await pollUntil(() =>
    (sent += a.txBurst(bufs.subarray(sent), lens.subarray(sent), UDP_FRAMES - sent)) === UDP_FRAMES
  );
  assert.equal(sent, UDP_FRAMES);
}

for (const v6 of [false, true]) {
  const ip = v6 ? "IPv6" : "IPv4";
  Deno.test(`vhost-net CSUM ${ip}: ${UDP_FRAMES} UDP frames with NEEDS_CSUM and an unfinished checksum pass the kernel's check; without NEEDS_CSUM the same bytes fail it`, async () => {
    await withTaps(async () => {
      using a = openA();
      const before = udpCounters(v6);
      await sendUdp(a, v6, true);
      const afterNeeds = await waitUdp(v6, before, "NoPorts");
      await sendUdp(a, v6, false);
      const afterPlain = await waitUdp(v6, afterNeeds, "InCsumErrors");
      const delta = (k: string, from: Record<string, number>, to: Record<string, number>) =>
        to[k] - from[k];
      assert.equal(delta("NoPorts", before, afterNeeds), UDP_FRAMES, "checked, no socket on 9");
      assert.equal(delta("InCsumErrors", before, afterNeeds), 0);
      assert.equal(delta("InCsumErrors", afterNeeds, afterPlain), UDP_FRAMES);
      assert.equal(delta("NoPorts", afterNeeds, afterPlain), 0);
      report(
        `CSUM ${ip}: ${UDP_FRAMES} UDP frames with NEEDS_CSUM → Udp${v6 ? "6" : ""} NoPorts +${
          delta("NoPorts", before, afterNeeds)
        }, InCsumErrors +0; the same ${UDP_FRAMES} without → InCsumErrors +${
          delta("InCsumErrors", afterNeeds, afterPlain)
        }`,
      );
    });
  });
}

/** Waits (bounded) until counter `key` moved by UDP_FRAMES from `from`; returns the counters. */
async function waitUdp(
  v6: boolean,
  from: Record<string, number>,
  key: string,
): Promise<Record<string, number>> {
  let now = from;
  await pollUntil(() => (now = udpCounters(v6))[key] - from[key] >= UDP_FRAMES);
  return now;
}
