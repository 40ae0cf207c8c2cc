/**
 * Jumbo frames and mergeable receive buffers (VIRTIO_NET_F_MRG_RXBUF, virtio 1.2 §5.1.6.3 /
 * §5.1.6.4) against DPDK's vhost PMD in dpdk-testpmd (`--max-pkt-len=9018 --mbuf-size=10240`):
 *
 * ```
 *   testpmd txonly 9000 B ──► VirtioNet (2048-byte buffers): 5 buffers a frame, num_buffers=5
 *   VirtioNet (10240-byte buffers) 9000 B ──► testpmd rxonly: exact frames and bytes
 *   VirtioNet ──► testpmd io ──► VirtioNet: 1514..9000 B frames back byte-identical
 *   TS device source 9000 B (MRG_RXBUF) ──► VirtioNet: 5 buffers a frame, reassembled and compared
 *   TS device source 9000 B (MRG_RXBUF) ──► DPDK virtio-user mrg_rxbuf=1 rxonly: exact frames, bytes
 *   VirtioNet 9000 B ──► TS device sink: exact frames and bytes
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread } from "../lib/device/device_thread.ts";
import { DEFAULT_DEVICE_FEATURES } from "../lib/vhost_user/backend.ts";
import { featureMask } from "../lib/virtio/features.ts";
import { VirtioNet, type VirtioNetOptions } from "../lib/driver/virtio_net.ts";
import { UDP_HEADERS, writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { requireTestpmd } from "./peers.ts";
import { type ForwardMode, Testpmd } from "./testpmd.ts";
import { withTestpmdPort } from "./vhost_port.ts";

const ignore = requireTestpmd(1, 512);
const JUMBO = 9000;
const STALL_MS = 5000;
const RX_MS = 250;

function withJumboVhost(
  mode: ForwardMode,
  portOptions: Partial<VirtioNetOptions>,
  body: (tp: Testpmd, port: VirtioNet) => Promise<void>,
): Promise<void> {
  return withTestpmdPort(
    {
      forwardMode: mode,
      memMb: 512,
      totalNumMbufs: 8192,
      // --txpkts after --mbuf-size: testpmd checks segment lengths against the mbuf size as it
      // parses.
      extraArgs: [
        "--max-pkt-len=9018",
        "--mbuf-size=10240",
        ...(mode === "txonly" ? [`--txpkts=${JUMBO}`] : []),
      ],
    },
    portOptions,
    body,
  );
}

for (const packed of [true, false]) {
  const rings = packed ? "packed" : "split";

  Deno.test({
    name: `jumbo ${rings}: testpmd txonly 9000 B -> MRG_RXBUF into 2048-byte buffers, whole`,
    ignore,
    async fn() {
      await withJumboVhost("txonly", { packed, mergeable: true }, async (tp, port) => {
        assert.ok(port.mergeable, "VIRTIO_NET_F_MRG_RXBUF negotiated with DPDK's vhost");
        const { pool } = port;
        const bufs = new Uint32Array(64), lens = new Uint32Array(64), segs = new Uint32Array(64);
        let frames = 0, bytes = 0, bad = "";
        const receive = () => {
          const n = port.rxFrames(bufs, lens, segs, 64);
          for (let f = 0, j = 0; f < n; j += segs[f++]) {
            let len = 0;
            for (let i = 0; i < segs[f]; i++) len += lens[j + i];
            bytes += len;
            const at = pool.dataOffset(bufs[j]);
            const ipLen = pool.bytes[at + 16] << 8 | pool.bytes[at + 17];
            if (bad === "" && (len !== JUMBO || segs[f] !== 5 || ipLen !== JUMBO - 14)) {
              bad = `frame ${frames + f}: ${len} B in ${segs[f]} buffers, IPv4 length ${ipLen}`;
            }
            pool.free(bufs, j, segs[f]);
          }
          frames += n;
          return n;
        };
        await tp.startForwarding();
        const until = performance.now() + RX_MS;
        while (performance.now() < until) receive();
        const fwd = await tp.stopForwarding();
        let idle = performance.now();
        while (performance.now() - idle < 100) if (receive() > 0) idle = performance.now();
        console.log(`  ${rings}: ${frames} jumbo frames received, ${fwd.txPackets} sent`);
        assert.equal(bad, "", "every frame 9000 B in five 2036/2048-byte pieces");
        assert.ok(fwd.txPackets > 0);
        assert.equal(frames, fwd.txPackets, "frames received == testpmd TX-packets");
        assert.equal(bytes, JUMBO * frames);
        assert.equal(port.stats.rxPackets, frames);
        assert.equal(port.stats.rxBytes, bytes);
        const stats = await tp.stats();
        assert.equal(stats.txBytes, bytes, "testpmd TX-bytes == bytes received");
      });
    },
  });

  Deno.test({
    name: `jumbo ${rings}: VirtioNet 9000 B (10240-byte buffers) -> testpmd rxonly, exact`,
    ignore,
    async fn() {
      const N = 20_000;
      await withJumboVhost("rxonly", { packed, bufferSize: 10240 }, async (tp, port) => {
        const { pool } = port;
        for (let b = 0; b < pool.count; b++) {
          writeUdpFrame(pool.bytes, pool.dataOffset(b), JUMBO, { srcMac: port.mac });
        }
        await tp.startForwarding();
        const bufs = new Uint32Array(32), lens = new Uint32Array(32).fill(JUMBO);
        let sent = 0, progress = performance.now();
        const t0 = progress;
        while (sent < N) {
          const k = pool.alloc(bufs, 0, Math.min(32, N - sent));
          const s = port.txBurst(bufs, lens, k);
          pool.free(bufs, s, k - s);
          sent += s;
          if (s > 0) progress = performance.now();
          else if (performance.now() - progress > STALL_MS) throw new Error(`stalled at ${sent}`);
        }
        assert.equal(port.txDrain(STALL_MS), 0);
        const ms = performance.now() - t0;
        const fwd = await tp.stopForwarding();
        console.log(`  ${rings} TX 9000 B: ${(N * JUMBO * 8 / ms / 1e6).toFixed(2)} Gbps`);
        assert.equal(fwd.rxPackets, N, "testpmd RX-packets");
        const stats = await tp.stats();
        assert.equal(stats.rxBytes, N * JUMBO, "testpmd RX-bytes");
        assert.equal(stats.rxErrors, 0);
      });
    },
  });

  Deno.test({
    name: `jumbo ${rings}: VirtioNet -> testpmd io -> VirtioNet, 1514..9000 B byte-identical`,
    ignore,
    async fn() {
      const N = 2000;
      const opts = { packed, bufferSize: 10240, mergeable: true };
      await withJumboVhost("io", opts, async (tp, port) => {
        const { pool } = port;
        await tp.startForwarding();
        const sizeOf = (i: number) => 1514 + (i * 997) % (JUMBO - 1514 + 1);
        const tx = new Uint32Array(1), txLen = new Uint32Array(1);
        const bufs = new Uint32Array(64), lens = new Uint32Array(64), segs = new Uint32Array(64);
        let sent = 0, got = 0, mismatch = "", progress = performance.now();
        while (got < N) {
          if (sent < N && sent - got < 64) {
            const b = pool.allocOne();
            if (b >= 0) {
              const size = sizeOf(sent);
              writeUdpFrame(pool.bytes, pool.dataOffset(b), size, { srcMac: port.mac });
              pool.bytes[pool.dataOffset(b) + UDP_HEADERS] = sent & 0xff;
              tx[0] = b;
              txLen[0] = size;
              if (port.txBurst(tx, txLen, 1) === 1) sent++;
              else pool.freeOne(b);
            }
          }
          const n = port.rxFrames(bufs, lens, segs, 64);
          for (let f = 0, j = 0; f < n; j += segs[f++]) {
            // One buffer of 10240 bytes holds any frame: check it against what was sent.
            const want = sizeOf(got + f);
            const at = pool.dataOffset(bufs[j]);
            const expected = new Uint8Array(want);
            writeUdpFrame(expected, 0, want, { srcMac: port.mac });
            expected[UDP_HEADERS] = (got + f) & 0xff;
            const same = segs[f] === 1 && lens[j] === want &&
              pool.bytes.subarray(at, at + want).every((v, k) => v === expected[k]);
            if (!same && mismatch === "") mismatch = `frame ${got + f}: ${lens[j]} B`;
            pool.free(bufs, j, segs[f]);
          }
          got += n;
          if (n > 0) progress = performance.now();
          else if (performance.now() - progress > STALL_MS) {
            throw new Error(`round trip stalled: sent ${sent}, back ${got}\n${tp.tail(10)}`);
          }
        }
        await tp.stopForwarding();
        assert.equal(mismatch, "");
        assert.equal(got, N);
        assert.equal(port.stats.rxBytes, port.stats.txBytes);
      });
    },
  });
}

for (const packed of [true, false]) {
  Deno.test(`jumbo ${packed ? "packed" : "split"}: TS device source 9000 B with MRG_RXBUF -> exact frames, bytes compared`, async () => {
    const COUNT = 3001;
    const device = await DeviceThread.start({
      mode: "source",
      frameSize: JUMBO,
      count: COUNT,
      features: DEFAULT_DEVICE_FEATURES | featureMask("NET_F_MRG_RXBUF"),
    });
    try {
      const expected = new Uint8Array(JUMBO);
      writeUdpFrame(expected, 0, JUMBO);
      const port = VirtioNet.open({ path: device.path, packed, mergeable: true });
      let frames = 0, bad = "";
      try {
        assert.ok(port.mergeable);
        const { pool } = port;
        const bufs = new Uint32Array(64), lens = new Uint32Array(64), segs = new Uint32Array(64);
        let progress = performance.now();
        while (frames < COUNT) {
          const n = port.rxFrames(bufs, lens, segs, 64);
          for (let f = 0, j = 0; f < n; j += segs[f++]) {
            // Reassemble: the first piece after the header, the others from their first byte.
            let at = 0;
            for (let i = 0; i < segs[f]; i++) {
              const b = bufs[j + i];
              const from = i === 0 ? pool.dataOffset(b) : pool.headerOffset(b);
              const piece = pool.bytes.subarray(from, from + lens[j + i]);
              if (bad === "" && !piece.every((v, k) => v === expected[at + k])) {
                bad = `frame ${frames + f}: piece ${i} differs`;
              }
              at += lens[j + i];
            }
            if (bad === "" && (at !== JUMBO || segs[f] !== 5)) {
              bad = `frame ${frames + f}: ${at} B in ${segs[f]} buffers`;
            }
            pool.free(bufs, j, segs[f]);
          }
          frames += n;
          if (n > 0) progress = performance.now();
          else if (performance.now() - progress > STALL_MS) break;
        }
      } finally {
        port.close();
      }
      const { stats, errors } = await device.stop();
      assert.deepEqual(errors, []);
      assert.equal(bad, "");
      assert.equal(frames, COUNT);
      assert.equal(stats.toDriverPackets, COUNT);
      assert.equal(stats.toDriverBytes, COUNT * JUMBO);
      assert.equal(port.stats.rxBytes, COUNT * JUMBO);
    } finally {
      await device.stop();
    }
  });
}

Deno.test("jumbo: VirtioNet 9000 B (10240-byte buffers) -> TS device sink, exact frames and bytes", async () => {
  const N = 20_000;
  const device = await DeviceThread.start({ mode: "sink" });
  try {
    const port = VirtioNet.open({ path: device.path, bufferSize: 10240 });
    try {
      const { pool } = port;
      for (let b = 0; b < pool.count; b++) writeUdpFrame(pool.bytes, pool.dataOffset(b), JUMBO);
      const bufs = new Uint32Array(32), lens = new Uint32Array(32).fill(JUMBO);
      let sent = 0;
      while (sent < N) {
        const k = pool.alloc(bufs, 0, Math.min(32, N - sent));
        const s = port.txBurst(bufs, lens, k);
        pool.free(bufs, s, k - s);
        sent += s;
      }
      assert.equal(port.txDrain(STALL_MS), 0);
    } finally {
      port.close();
    }
    const { stats, errors } = await device.stop();
    assert.deepEqual(errors, []);
    assert.equal(stats.fromDriverPackets, N);
    assert.equal(stats.fromDriverBytes, N * JUMBO);
  } finally {
    await device.stop();
  }
});

for (const packed of [true, false]) {
  Deno.test({
    name: `jumbo ${
      packed ? "packed" : "split"
    }: TS device source 9000 B -> DPDK virtio-user mrg_rxbuf=1 rxonly, exact`,
    ignore,
    async fn() {
      const COUNT = 5000;
      const dir = await Deno.makeTempDir({ prefix: "jumbo-device-" });
      const sock = `${dir}/device.sock`;
      const device = await DeviceThread.start({
        path: sock,
        mode: "source",
        frameSize: JUMBO,
        count: COUNT,
        features: DEFAULT_DEVICE_FEATURES | featureMask("NET_F_MRG_RXBUF"),
        paused: true,
      });
      try {
        await using tp = await Testpmd.start({
          vdev: `net_virtio_user0,path=${sock},queues=1,packed_vq=${
            packed ? 1 : 0
          },queue_size=256,mrg_rxbuf=1`,
          forwardMode: "rxonly",
          memMb: 512,
          // Default 2 KB mbufs: DPDK's virtio PMD chains the device's buffers into one packet.
          extraArgs: ["--no-flush-rx", "--max-pkt-len=9018", "--enable-scatter"],
        });
        device.resume(); // DPDK's port start discards (uncounted) what its rx rings already hold: send after it.
        await tp.startForwarding();
        const until = Date.now() + 30_000;
        let port = await tp.stats();
        while (port.rxPackets < COUNT && Date.now() < until) {
          await new Promise((r) => setTimeout(r, 20));
          port = await tp.stats();
        }
        const got = await tp.stopForwarding();
        await tp.stop();
        const { stats, errors } = await device.stop();
        assert.deepEqual(errors, []);
        assert.equal(stats.toDriverPackets, COUNT);
        assert.equal(got.rxPackets, COUNT, "testpmd RX-packets == frames the device sent");
        assert.equal(port.rxBytes, COUNT * JUMBO, "whole 9000-byte frames");
        assert.equal(port.rxErrors, 0);
      } finally {
        await device.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
