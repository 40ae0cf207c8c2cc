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
import { VirtioNet, type VirtioNetOptions } from "../lib/driver/virtio_net.ts";
import {
  completeChecksum,
  type Offloads,
  requestTxChecksum,
  requestTxTso,
} from "../lib/driver/offload.ts";
import { featureMask } from "../lib/virtio/features.ts";
import {
  NET_HDR_F_DATA_VALID,
  NET_HDR_F_NEEDS_CSUM,
  NET_HDR_F_RSC_INFO,
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

/** Receives until `expected` frames came back (bounded), checking each one. */
async function receiveAll(port: VirtioNet, expected = FRAMES): Promise<Received> {
  const got: Received = { frames: 0, needsCsum: 0, starts: new Set(), valid: 0, payloadOk: 0 };
  const bufs = new Uint32Array(64), lens = new Uint32Array(64), view = new Int32Array(VIEW_SIZE);
  const deadline = performance.now() + 10_000;
  while (got.frames < expected && performance.now() < deadline) {
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

Deno.test({
  name:
    "offloads negotiation against the vhost PMD: §5.1.3.1 dependencies, bits it does not offer and mergeable buffers for GUEST_TSO are refused by name",
  ignore,
  async fn() {
    await withTestpmdPort({ forwardMode: "io" }, { packed: true }, (_tp, first) => {
      const path = (first.transport as { path?: string }).path!;
      const open = (offloads: Partial<Offloads>, more: Partial<VirtioNetOptions> = {}) =>
        VirtioNet.open({ path, offloads, ...more }).close();
      first.close(); // one frontend at a time: the PMD has one device on this socket
      assert.throws(
        () => open({ txTso4: true }),
        /offloads\.txTso4 \(NET_F_HOST_TSO4, bit 11\) needs offloads\.txChecksum \(NET_F_CSUM, bit 0\): virtio 1\.2 §5\.1\.3\.1/,
      );
      assert.throws(
        () => open({ rxTso6: true, txChecksum: true }),
        /offloads\.rxTso6 \(NET_F_GUEST_TSO6, bit 8\) needs offloads\.rxChecksum \(NET_F_GUEST_CSUM, bit 1\)/,
      );
      // net_vhost without tso=1 disables HOST_TSO4/6 (rte_eth_vhost.c).
      assert.throws(
        () => open({ txChecksum: true, txTso4: true }),
        /does not offer NET_F_HOST_TSO4 \(bit 11\) that offloads\.txTso4 asks for/,
      );
      assert.throws(
        () => open({ rxChecksum: true, rxTso4: true }),
        /need mergeable: true \(NET_F_MRG_RXBUF, bit 15\) or bufferSize ≥ 65600/,
      );
      using port = VirtioNet.open({
        path,
        mergeable: true,
        offloads: { txChecksum: true, rxChecksum: true, rxTso4: true, rxTso6: true },
      });
      assert.deepEqual({ ...port.offloads }, {
        txChecksum: true,
        txTso4: false,
        txTso6: false,
        rxChecksum: true,
        rxTso4: true,
        rxTso6: true,
      });
      assert.equal(
        port.features & (featureMask("NET_F_HOST_TSO4", "NET_F_HOST_TSO6") | 1n << 10n | 1n << 14n),
        0n,
        "nothing beyond what was asked (no HOST_TSO, no GUEST_UFO 10, no HOST_UFO 14)",
      );
      return Promise.resolve();
    });
  },
});

const MSS = 1448, SEGMENTS = 45, BIG_PAYLOAD = MSS * SEGMENTS;

/** Writes a TCP segment of BIG_PAYLOAD bytes (IPv4 or IPv6) at `b[at]`; returns its length. */
function writeBigSegment(b: Uint8Array, at: number, v6: boolean, src: Uint8Array): number {
  const l3 = at + 14, l4 = l3 + (v6 ? 40 : 20), l4Len = 20 + BIG_PAYLOAD;
  writeEthernet(
    b,
    at,
    Uint8Array.of(2, 0, 0, 0, 0, 0x42),
    src,
    v6 ? EtherType.IPV6 : EtherType.IPV4,
  );
  if (v6) writeIpv6(b, l3, IpProtocol.TCP, l4Len, SRC6, DST6);
  else writeIpv4(b, l3, IpProtocol.TCP, 20 + l4Len, 0xc6120001, 0xc6120002);
  for (let k = 0; k < BIG_PAYLOAD; k++) b[l4 + 20 + k] = payloadByte(v6 ? 1 : 0, k);
  writeTcp(b, l3, l4, v6 ? 1025 : 1024, 5001, 7, 1, TcpFlag.ACK, 512, l4Len);
  return l4 + l4Len - at;
}

Deno.test({
  name:
    `testpmd csum + net_vhost tso=1: a ${BIG_PAYLOAD}-byte TCP4 and TCP6 segment with a TSO request arrive as RX_LRO mbufs and come back whole with valid checksums`,
  ignore,
  async fn() {
    await withTestpmdPort(
      { forwardMode: "csum", vdevArgs: "tso=1" },
      {
        packed: false,
        mergeable: true,
        bufferSize: 65536,
        buffers: 96,
        queueSize: 32,
        offloads: { txChecksum: true, txTso4: true, txTso6: true },
      },
      async (tp, port) => {
        assert.ok(port.offloads.txTso4 && port.offloads.txTso6);
        await tp.command("set verbose 1");
        await tp.startForwarding();
        const bufs = new Uint32Array(2), lens = new Uint32Array(2);
        assert.equal(port.pool.alloc(bufs, 0, 2), 2);
        const bytes = port.pool.bytes;
        for (let i = 0; i < 2; i++) {
          lens[i] = writeBigSegment(bytes, port.pool.dataOffset(bufs[i]), i === 1, port.mac);
          const hdrLen = requestTxTso(bytes, port.pool.headerOffset(bufs[i]), lens[i], MSS);
          assert.equal(hdrLen, i === 1 ? 74 : 54);
        }
        assert.equal(port.txBurst(bufs, lens, 2), 2);
        // Receive both back (mergeable: a frame may span buffers; here each fits one).
        const rb = new Uint32Array(64), rl = new Uint32Array(64), segs = new Uint32Array(64);
        const view = new Int32Array(VIEW_SIZE), back: string[] = [];
        const deadline = performance.now() + 10_000;
        while (back.length < 2 && performance.now() < deadline) {
          const frames = port.rxFrames(rb, rl, segs, 64);
          if (frames === 0) await port.readable(50);
          for (let f = 0, j = 0; f < frames; j += segs[f++]) {
            const hdr = port.pool.headerOffset(rb[j]), at = hdr + NET_HDR_SIZE;
            assert.equal(segs[f], 1, "a 64 KB buffer holds the frame");
            const flags = parseFrame(port.pool.bytes, at, rl[j], view);
            const v6 = (flags & FrameFlag.IPV6) !== 0;
            const data = view[VIEW_PAYLOAD];
            let same = data + BIG_PAYLOAD === at + rl[j];
            for (let k = 0; same && k < BIG_PAYLOAD; k++) {
              same = port.pool.bytes[data + k] === payloadByte(v6 ? 1 : 0, k);
            }
            const ok = (flags & FrameFlag.L4_CHECKSUM_OK) !== 0 &&
              (v6 || (flags & FrameFlag.IP_CHECKSUM_OK) !== 0);
            back.push(
              `${v6 ? "tcp6" : "tcp4"} ${rl[j]} B flags ${netHdrFlags(port.pool.bytes, hdr)} ` +
                `checksums ${ok ? "valid" : "BAD"} payload ${same ? "identical" : "DIFFERS"}`,
            );
          }
          port.pool.free(rb, 0, segs.subarray(0, frames).reduce((a, b) => a + b, 0));
        }
        const stats = await tp.stopForwarding();
        assert.equal(stats.rxPackets, 2);
        assert.equal(stats.txPackets, 2);
        // vhost_dequeue_offload turned each TSO request into RX_LRO (and the PMD finished the
        // checksum: L4_CKSUM_GOOD). The csum engine prints `rx: m->lro_segsz` after it has
        // overwritten tso_segsz with its own (0; csumonly.c), so the size is not visible there.
        const rx = [
          ...tp.output.matchAll(/^port=0, mbuf=\S+ pkt_len=(\d+), nb_segs=\d+:\nrx: (.*)$/gm),
        ]
          .map((m) =>
            `${m[1]} ${/RX_LRO/.test(m[2]) ? "LRO" : "-"} ${
              /L4_CKSUM_GOOD/.test(m[2]) ? "L4 good" : "-"
            }`
          );
        assert.deepEqual(rx, [`${lens[0]} LRO L4 good`, `${lens[1]} LRO L4 good`]);
        assert.deepEqual(back.sort(), [
          `tcp4 ${lens[0]} B flags 0 checksums valid payload identical`,
          `tcp6 ${lens[1]} B flags 0 checksums valid payload identical`,
        ]);
        console.log(`TSO vs testpmd: 2 segments sent; testpmd rx: ${rx.join(", ")}; back: ${back}`);
      },
    );
  },
});

Deno.test({
  name:
    "the header rule with txChecksum: alloc() zeroes a reused buffer's header, txBurst drops receive-only bits (DATA_VALID, RSC_INFO, num_buffers)",
  ignore,
  async fn() {
    await withTestpmdPort(
      { forwardMode: "csum" },
      { packed: true, offloads: { txChecksum: true } },
      async (tp, port) => {
        await tp.startForwarding();
        const n = 32, bufs = new Uint32Array(n), lens = new Uint32Array(n);
        const pool = port.pool, bytes = pool.bytes;
        const header = (b: number) => [...bytes.subarray(pool.headerOffset(b), pool.dataOffset(b))];
        // Round 1: checksum requests; once the device is done the buffers are back on the stack.
        assert.equal(pool.alloc(bufs, 0, n), n);
        for (let i = 0; i < n; i++) {
          lens[i] = writeFrame(bytes, pool.dataOffset(bufs[i]), "udp4", i, port.mac);
          requestTxChecksum(bytes, pool.headerOffset(bufs[i]), lens[i]);
        }
        const used = [...bufs];
        assert.equal(port.txBurst(bufs, lens, n), n);
        assert.equal(port.txDrain(5000), 0);
        // Round 2: the same buffers (the pool's free stack is LIFO), headers zeroed by alloc.
        assert.equal(pool.alloc(bufs, 0, n), n);
        assert.deepEqual([...bufs].sort(), used.sort(), "alloc handed out the reused buffers");
        const zero = new Array(NET_HDR_SIZE).fill(0);
        for (let i = 0; i < n; i++) {
          assert.deepEqual(header(bufs[i]), zero, `buffer ${bufs[i]}: no stale NEEDS_CSUM`);
          lens[i] = writeFrame(bytes, pool.dataOffset(bufs[i]), "udp4", n + i, port.mac);
          // What a received buffer sent on would carry (§5.1.6.4), for the driver to drop.
          bytes[pool.headerOffset(bufs[i])] = NET_HDR_F_DATA_VALID | NET_HDR_F_RSC_INFO;
          bytes[pool.headerOffset(bufs[i]) + 10] = 3;
        }
        assert.equal(port.txBurst(bufs, lens, n), n);
        // The header bytes the device reads (the buffers stay the port's until it is done).
        for (let i = 0; i < n; i++) assert.deepEqual(header(bufs[i]), zero);
        const got = await receiveAll(port, 2 * n);
        const stats = await tp.stopForwarding();
        assert.equal(stats.rxPackets, 2 * n);
        assert.equal(got.frames, 2 * n);
        assert.equal(got.valid, 2 * n);
        assert.equal(got.payloadOk, 2 * n);
      },
    );
  },
});
