/**
 * Checksum offloads against DPDK's vhost PMD and testpmd's `csum` engine (DPDK 22.11, ol_flags
 * compliant mode, the PMD default): the driver sends TCP/IPv4, UDP/IPv4 and TCP/IPv6 frames with
 * NEEDS_CSUM and only the pseudo-header sum in the checksum field; testpmd receives them, checks
 * and recomputes checksums (`csum set * sw`, the default) or asks its port to
 * (`--tx-offloads=0xc`: TCP and UDP checksum "hw"), and sends them back to the driver.
 *
 * ```
 *   VirtioNet ──NEEDS_CSUM frames──► net_vhost0 ─ vhost_dequeue_offload: RX_L4_CKSUM_NONE, the
 *                                    PMD finishes it in software (rx_sw_csum) → L4_CKSUM_GOOD
 *   csum engine (sw): checksums recomputed, header flags 0 ──► VirtioNet: checksums valid
 *   csum engine (hw): TX_TCP/UDP_CKSUM ──► with GUEST_CSUM: NEEDS_CSUM header, pseudo sum in the
 *                     field (virtio_enqueue_offload), completeChecksum finishes it
 *                     without GUEST_CSUM: the PMD checksums in software (tx_sw_csum), flags 0
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import type { VirtioNet } from "../lib/driver/virtio_net.ts";
import { completeChecksum, requestTxChecksum } from "../lib/driver/offload.ts";
import {
  NET_HDR_F_NEEDS_CSUM,
  NET_HDR_SIZE,
  netHdrCsumOffset,
  netHdrCsumStart,
  netHdrFlags,
} from "../lib/virtio/net_hdr.ts";
import { EtherType, writeEthernet } from "../lib/packet/ethernet.ts";
import { IpProtocol, writeIpv4 } from "../lib/packet/ipv4.ts";
import { parseIpv6, writeIpv6 } from "../lib/packet/ipv6.ts";
import { TcpFlag, writeTcp } from "../lib/packet/tcp.ts";
import { writeUdp } from "../lib/packet/udp.ts";
import { FrameFlag, parseFrame, VIEW_PAYLOAD, VIEW_SIZE } from "../lib/packet/frame_view.ts";
import { requireTestpmd } from "./peers.ts";
import { withTestpmdPort } from "./vhost_port.ts";

const ignore = requireTestpmd(1);

/** Frames of each kind per run. */
const PER_KIND = 64;
const PAYLOAD = 200;
const KINDS = ["tcp4", "udp4", "tcp6"] as const;
type Kind = typeof KINDS[number];
const FRAMES = PER_KIND * KINDS.length;
const SRC6 = parseIpv6("fd00::1"), DST6 = parseIpv6("fd00::2");

/** Payload byte `k` of frame `i`. */
function payloadByte(i: number, k: number): number {
  return (i * 13 + k * 7 + 1) & 255;
}

/** Writes frame `i` of `kind` (full checksums) at `b[at]`; returns its length and L4 offset. */
function writeFrame(b: Uint8Array, at: number, kind: Kind, i: number, src: Uint8Array): number {
  const v6 = kind === "tcp6", tcp = kind !== "udp4";
  const l3 = at + 14, l4 = l3 + (v6 ? 40 : 20), l4Len = (tcp ? 20 : 8) + PAYLOAD;
  writeEthernet(
    b,
    at,
    Uint8Array.of(2, 0, 0, 0, 0, 0x42),
    src,
    v6 ? EtherType.IPV6 : EtherType.IPV4,
  );
  const proto = tcp ? IpProtocol.TCP : IpProtocol.UDP;
  if (v6) writeIpv6(b, l3, proto, l4Len, SRC6, DST6);
  else writeIpv4(b, l3, proto, 20 + l4Len, 0xc6120001, 0xc6120002, 64, i);
  const data = l4 + (tcp ? 20 : 8);
  for (let k = 0; k < PAYLOAD; k++) b[data + k] = payloadByte(i, k);
  if (tcp) writeTcp(b, l3, l4, 1024 + i, 5001, i * 1000, 1, TcpFlag.ACK, 512, l4Len);
  else writeUdp(b, l3, l4, 1024 + i, 5001, l4Len);
  return data + PAYLOAD - at;
}

/** Sends FRAMES frames, each with a NEEDS_CSUM request (field: pseudo-header sum only). */
function sendAll(port: VirtioNet): void {
  const bufs = new Uint32Array(FRAMES), lens = new Uint32Array(FRAMES);
  assert.equal(port.pool.alloc(bufs, 0, FRAMES), FRAMES);
  const bytes = port.pool.bytes;
  for (let i = 0; i < FRAMES; i++) {
    const b = bufs[i], kind = KINDS[i % KINDS.length];
    lens[i] = writeFrame(bytes, port.pool.dataOffset(b), kind, i, port.mac);
    const start = requestTxChecksum(bytes, port.pool.headerOffset(b), lens[i]);
    assert.equal(start, kind === "tcp6" ? 54 : 34);
  }
  let sent = 0;
  const deadline = performance.now() + 10_000;
  while (sent < FRAMES && performance.now() < deadline) {
    sent += port.txBurst(bufs.subarray(sent), lens.subarray(sent), Math.min(32, FRAMES - sent));
  }
  assert.equal(sent, FRAMES, "the vhost PMD took every frame");
}

interface Received {
  frames: number;
  /** Frames whose header had NEEDS_CSUM, with csum_start/offset as DPDK set them. */
  needsCsum: number;
  starts: Set<string>;
  /** Frames whose IP (v4) and L4 checksums verified (after completeChecksum). */
  valid: number;
  /** Frames whose L4 payload equals what was sent. */
  payloadOk: number;
}

/** Receives until FRAMES frames came back (bounded), checking each one. */
async function receiveAll(port: VirtioNet): Promise<Received> {
  const got: Received = { frames: 0, needsCsum: 0, starts: new Set(), valid: 0, payloadOk: 0 };
  const bufs = new Uint32Array(64), lens = new Uint32Array(64), view = new Int32Array(VIEW_SIZE);
  const deadline = performance.now() + 10_000;
  while (got.frames < FRAMES && performance.now() < deadline) {
    const n = port.rxBurst(bufs, lens, 64);
    if (n === 0) {
      await port.readable(50);
      continue;
    }
    const bytes = port.pool.bytes;
    for (let j = 0; j < n; j++) {
      const hdr = port.pool.headerOffset(bufs[j]), at = hdr + NET_HDR_SIZE, len = lens[j];
      if ((netHdrFlags(bytes, hdr) & NET_HDR_F_NEEDS_CSUM) !== 0) {
        got.needsCsum++;
        got.starts.add(`${netHdrCsumStart(bytes, hdr)}+${netHdrCsumOffset(bytes, hdr)}`);
        assert.ok(completeChecksum(bytes, hdr, len));
      }
      const flags = parseFrame(bytes, at, len, view);
      const v4ok = (flags & FrameFlag.IPV6) !== 0 || (flags & FrameFlag.IP_CHECKSUM_OK) !== 0;
      if (v4ok && (flags & FrameFlag.L4_CHECKSUM_OK) !== 0) got.valid++;
      // The frame's index: the TCP/UDP source port (1024 + i).
      const i = (bytes[view[3]] << 8 | bytes[view[3] + 1]) - 1024;
      let same = view[VIEW_PAYLOAD] + PAYLOAD === at + len;
      for (let k = 0; same && k < PAYLOAD; k++) {
        same = bytes[view[VIEW_PAYLOAD] + k] === payloadByte(i, k);
      }
      if (same) got.payloadOk++;
      got.frames++;
    }
    port.pool.free(bufs, 0, n);
  }
  return got;
}

Deno.test({
  name:
    `testpmd csum (sw): ${FRAMES} NEEDS_CSUM frames (TCP4, UDP4, TCP6) are taken as good, recomputed and come back with valid checksums`,
  ignore,
  async fn() {
    await withTestpmdPort(
      { forwardMode: "csum" },
      { packed: true, offloads: { txChecksum: true } },
      async (tp, port) => {
        assert.equal(port.offloads.txChecksum, true);
        assert.equal(port.offloads.rxChecksum, false);
        await tp.command("set verbose 1");
        await tp.startForwarding();
        sendAll(port);
        const got = await receiveAll(port);
        const stats = await tp.stopForwarding();
        assert.equal(stats.rxPackets, FRAMES);
        assert.equal(stats.txPackets, FRAMES);
        assert.equal(stats.badL4Csum, 0, "testpmd saw no bad L4 checksum");
        assert.equal(stats.badIpCsum, 0);
        // The vhost PMD finished our partial checksums in software (rx_sw_csum).
        const good = tp.output.match(/^rx: .*RTE_MBUF_F_RX_L4_CKSUM_GOOD/gm)?.length ?? 0;
        assert.equal(good, FRAMES, "ol_flags L4_CKSUM_GOOD on every frame");
        assert.deepEqual(got, {
          frames: FRAMES,
          needsCsum: 0,
          starts: new Set(),
          valid: FRAMES,
          payloadOk: FRAMES,
        });
        console.log(
          `csum sw: ${FRAMES} sent with NEEDS_CSUM, testpmd RX ${stats.rxPackets} (${good} ` +
            `L4_CKSUM_GOOD, Bad-l4csum ${stats.badL4Csum}), ${got.valid} back with valid ` +
            `checksums, ${got.payloadOk} payloads identical`,
        );
      },
    );
  },
});

for (const rxChecksum of [true, false]) {
  Deno.test({
    name: `testpmd csum (hw, --tx-offloads=0xc), driver ${
      rxChecksum ? "with" : "without"
    } GUEST_CSUM: ${FRAMES} frames come back ${
      rxChecksum ? "as NEEDS_CSUM, finished by completeChecksum" : "checksummed by the PMD"
    }`,
    ignore,
    async fn() {
      await withTestpmdPort(
        { forwardMode: "csum", extraArgs: ["--tx-offloads=0xc"] },
        { packed: false, offloads: { txChecksum: true, rxChecksum } },
        async (tp, port) => {
          assert.equal(port.offloads.rxChecksum, rxChecksum);
          await tp.startForwarding();
          sendAll(port);
          const got = await receiveAll(port);
          const stats = await tp.stopForwarding();
          assert.equal(stats.rxPackets, FRAMES);
          assert.equal(stats.txPackets, FRAMES);
          assert.equal(stats.badL4Csum, 0);
          assert.deepEqual(got, {
            frames: FRAMES,
            needsCsum: rxChecksum ? FRAMES : 0,
            // TCP at 16, UDP at 6 behind the IPv4 (34) or IPv6 (54) header.
            starts: rxChecksum ? new Set(["34+16", "34+6", "54+16"]) : new Set(),
            valid: FRAMES,
            payloadOk: FRAMES,
          });
          console.log(
            `csum hw, GUEST_CSUM ${rxChecksum ? "on" : "off"}: testpmd RX ${stats.rxPackets} TX ` +
              `${stats.txPackets}; ${got.needsCsum} came back NEEDS_CSUM (${[...got.starts]}), ` +
              `${got.valid} valid after completeChecksum, ${got.payloadOk} payloads identical`,
          );
        },
      );
    },
  });
}
