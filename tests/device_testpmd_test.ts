/**
 * DPDK's C virtio-user PMD (in `dpdk-testpmd`) against the TypeScript vhost-user device
 * ({@linkcode DeviceThread}), split and packed rings of 256, with exact counts on both sides:
 *
 * ```
 *   sink:   testpmd txonly ──net_virtio_user0──► device sink       device rxPackets == TX-packets
 *   source: testpmd rxonly ◄──net_virtio_user0── device source     RX-packets == device txPackets
 *   echo:   VirtioNet ──► net_vhost0 (port A) ─io─► net_virtio_user1 (port B) ──► device echo
 *           VirtioNet ◄── net_vhost0          ◄─io── net_virtio_user1          ◄──┘
 *           every frame back byte-identical; device counters == frames sent
 * ```
 *
 * testpmd runs on CPU 1 (harness default); the device runs on a Worker thread of this process.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread } from "../lib/device/device_thread.ts";
import { UDP_HEADERS, writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { requireTestpmd } from "./peers.ts";
import { Testpmd } from "./testpmd.ts";

const ignore = requireTestpmd(1);
/** How long testpmd txonly sends into the sink. */
const TX_MS = 1000;
/** How long the device sources into testpmd rxonly (unlimited variant). */
const SOURCE_MS = 1000;
/** Frames the device sources in the counted variant. */
const SOURCE_COUNT = 1_000_000;
/** Frames sent around the echo loop, and the most in flight at once. */
const ECHO_FRAMES = 10_000;
const ECHO_WINDOW = 64;
/** Frame sizes cycled through in the echo loop. */
const ECHO_SIZES = [60, 64, 100, 128, 256, 511, 1024, 1514];
/** A loop with no progress for this long fails. */
const STALL_MS = 5000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(5);
  }
}

function virtioUser(name: string, sock: string, packed: boolean): string {
  return `${name},path=${sock},queues=1,packed_vq=${packed ? 1 : 0},queue_size=256`;
}

const LAYOUTS = [false, true];
const layoutName = (packed: boolean) => (packed ? "packed" : "split");

// --- 1. testpmd txonly -> device sink ------------------------------------------------------------

for (const packed of LAYOUTS) {
  Deno.test({
    name: `testpmd txonly (virtio-user ${layoutName(packed)}) -> device sink: every frame counted`,
    ignore,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "device-testpmd-" });
      const sock = `${dir}/device.sock`;
      const device = await DeviceThread.start({ path: sock, mode: "sink" });
      try {
        await using tp = await Testpmd.start({
          vdev: virtioUser("net_virtio_user0", sock, packed),
          forwardMode: "txonly",
        });
        await tp.startForwarding();
        await sleep(TX_MS);
        const sent = await tp.stopForwarding();
        assert.ok(sent.txPackets > 0, "testpmd sent frames");
        // Every frame testpmd's PMD accepted is in the ring; the device takes them all.
        await waitFor(
          "the device to take every frame",
          () => device.stats.fromDriverPackets >= sent.txPackets,
        );
        await tp.stop();
        const { stats, errors } = await device.stop();
        console.log(
          `  ${layoutName(packed)}: ${sent.txPackets} frames in ${TX_MS} ms ` +
            `(${
              (sent.txPackets / TX_MS / 1e3).toFixed(2)
            } Mpps offered, TX-dropped ${sent.txDropped})`,
        );
        assert.deepEqual(errors, [], "DPDK's frontend broke no rule");
        assert.equal(
          stats.fromDriverPackets,
          sent.txPackets,
          "device rxPackets == testpmd TX-packets",
        );
        assert.equal(stats.fromDriverBytes, 64 * sent.txPackets, "64-byte frames, header excluded");
        assert.equal(stats.toDriverPackets, 0);
      } finally {
        await device.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

// --- 2. device source -> testpmd rxonly ----------------------------------------------------------

/**
 * The device writes only into receive buffers testpmd's PMD posted, from DRIVER_OK on (before
 * forwarding starts). `--no-flush-rx` keeps testpmd from discarding those at `start`, so every
 * frame the device wrote is received while forwarding. Once the device has stopped writing,
 * testpmd drains its ring; only then is forwarding stopped: RX-packets equals what the device sent.
 */
for (const packed of LAYOUTS) {
  for (const counted of [true, false]) {
    const limit = counted ? `count ${SOURCE_COUNT}` : `unlimited, paused after ${SOURCE_MS} ms`;
    Deno.test({
      name: `device source (${limit}) -> testpmd rxonly (virtio-user ${
        layoutName(packed)
      }): every frame received`,
      ignore,
      async fn() {
        const dir = await Deno.makeTempDir({ prefix: "device-testpmd-" });
        const sock = `${dir}/device.sock`;
        const device = await DeviceThread.start({
          path: sock,
          mode: "source",
          count: counted ? SOURCE_COUNT : undefined,
          paused: true,
        });
        try {
          await using tp = await Testpmd.start({
            vdev: virtioUser("net_virtio_user0", sock, packed),
            forwardMode: "rxonly",
            extraArgs: ["--no-flush-rx"],
          });
          device.resume(); // DPDK's port start discards (uncounted) what its rx rings already hold: send after it.
          await tp.startForwarding();
          const t0 = performance.now();
          let sent: number;
          if (counted) {
            await waitFor(
              "the device to send its count",
              () => device.stats.toDriverPackets >= SOURCE_COUNT,
              30000,
            );
            sent = (await device.pause()).toDriverPackets;
            assert.equal(sent, SOURCE_COUNT, "never more than the count");
          } else {
            await sleep(SOURCE_MS);
            sent = (await device.pause()).toDriverPackets; // the counters no longer change
          }
          const ms = performance.now() - t0;
          // testpmd drains its receive ring; then nothing more can arrive.
          await waitFor("testpmd to receive every frame", async () => {
            return (await tp.stats()).rxPackets >= sent;
          });
          const got = await tp.stopForwarding();
          const port = await tp.stats();
          console.log(
            `  ${layoutName(packed)} ${limit}: ${sent} frames (${
              (sent / ms / 1e3).toFixed(2)
            } Mpps)`,
          );
          assert.equal(got.rxPackets, sent, "testpmd RX-packets == device txPackets");
          assert.equal(port.rxPackets, sent, "port RX-packets: nothing received before start");
          assert.equal(port.rxBytes, 64 * sent);
          await tp.stop();
          const { stats, errors } = await device.stop();
          assert.deepEqual(errors, []);
          assert.equal(stats.toDriverPackets, sent, "nothing sent after pause");
          assert.equal(stats.toDriverBytes, 64 * sent);
        } finally {
          await device.stop();
          await Deno.remove(dir, { recursive: true });
        }
      },
    });
  }
}

// --- 3. VirtioNet -> testpmd io (vhost port <-> virtio-user port) -> device echo -----------------

/** Writes frame `seq` (size from {@linkcode ECHO_SIZES}): a UDP frame whose payload is the
 * sequence number followed by a pattern derived from it. Returns its length. */
function writeEchoFrame(bytes: Uint8Array, at: number, seq: number): number {
  const size = ECHO_SIZES[seq % ECHO_SIZES.length];
  writeUdpFrame(bytes, at, size, { srcPort: 1000 + (seq & 0xfff) });
  const p = at + UDP_HEADERS;
  bytes[p] = seq >>> 24;
  bytes[p + 1] = (seq >>> 16) & 0xff;
  bytes[p + 2] = (seq >>> 8) & 0xff;
  bytes[p + 3] = seq & 0xff;
  for (let i = p + 4; i < at + size; i++) bytes[i] = (seq * 31 + i - at) & 0xff;
  return size;
}

for (const packed of LAYOUTS) {
  Deno.test({
    name: `VirtioNet -> testpmd io -> device echo (virtio-user ${
      layoutName(packed)
    }) -> back: ${ECHO_FRAMES} frames byte-identical`,
    ignore: requireTestpmd(1, 512),
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "device-testpmd-" });
      const sockA = `${dir}/vhost.sock`; // testpmd net_vhost0 listens; VirtioNet connects
      const sockB = `${dir}/device.sock`; // the device listens; testpmd net_virtio_user1 connects
      const device = await DeviceThread.start({ path: sockB, mode: "echo" });
      try {
        await using tp = await Testpmd.start({
          vdev: virtioUser("net_virtio_user1", sockB, packed),
          extraEalArgs: ["--vdev", `net_vhost0,iface=${sockA},queues=1`],
          removeFiles: [sockA],
          forwardMode: "io",
          memMb: 512,
        });
        await tp.waitForSocket(sockA);
        const port = VirtioNet.open({ path: sockA, packed, queueSize: 256, hugepages: "auto" });
        try {
          await tp.waitForLinkUp(10000, 0);
          await tp.waitForLinkUp(10000, 1);
          await tp.startForwarding();
          const t0 = performance.now();
          echoLoop(port, tp);
          const ms = performance.now() - t0;
          console.log(
            `  ${layoutName(packed)}: ${ECHO_FRAMES} frames round trip in ${ms.toFixed(0)} ms`,
          );
          assert.equal(port.txDrain(STALL_MS), 0);
        } finally {
          port.close();
        }
        const fwd = await tp.stopForwarding();
        assert.equal(fwd.rxPackets, 2 * ECHO_FRAMES, "testpmd forwarded each frame both ways");
        assert.equal(fwd.txPackets, 2 * ECHO_FRAMES);
        await tp.stop();
        const { stats, errors } = await device.stop();
        assert.deepEqual(errors, []);
        assert.equal(stats.fromDriverPackets, ECHO_FRAMES, "device took every frame");
        assert.equal(stats.toDriverPackets, ECHO_FRAMES, "device echoed every frame");
        assert.equal(stats.toDriverDropped, 0);
        let bytes = 0;
        for (let s = 0; s < ECHO_FRAMES; s++) bytes += ECHO_SIZES[s % ECHO_SIZES.length];
        assert.equal(stats.fromDriverBytes, bytes);
        assert.equal(stats.toDriverBytes, bytes);
      } finally {
        await device.stop();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/**
 * Sends {@linkcode ECHO_FRAMES} frames with at most {@linkcode ECHO_WINDOW} in flight (so no
 * ring on the way overflows) and checks each one that comes back against a fresh copy.
 */
function echoLoop(port: VirtioNet, tp: Testpmd): void {
  const { pool } = port;
  const BURST = 16;
  const bufs = new Uint32Array(BURST), lens = new Uint32Array(BURST);
  const rxBufs = new Uint32Array(64), rxLens = new Uint32Array(64);
  const expected = new Uint8Array(2048);
  const seen = new Uint8Array(ECHO_FRAMES);
  let sent = 0, received = 0;
  let progress = performance.now();
  while (received < ECHO_FRAMES) {
    const room = Math.min(BURST, ECHO_WINDOW - (sent - received), ECHO_FRAMES - sent);
    if (room > 0) {
      const k = pool.alloc(bufs, 0, room);
      for (let i = 0; i < k; i++) {
        lens[i] = writeEchoFrame(pool.bytes, pool.dataOffset(bufs[i]), sent + i);
      }
      const s = port.txBurst(bufs, lens, k);
      if (s < k) pool.free(bufs, s, k - s);
      sent += s;
    }
    const got = port.rxBurst(rxBufs, rxLens, rxBufs.length);
    for (let j = 0; j < got; j++) {
      const at = pool.dataOffset(rxBufs[j]);
      const b = pool.bytes;
      const p = at + UDP_HEADERS;
      const seq = ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
      assert.ok(seq < sent, `frame with sequence ${seq} was never sent`);
      assert.equal(seen[seq], 0, `frame ${seq} came back twice`);
      seen[seq] = 1;
      const len = writeEchoFrame(expected, 0, seq);
      assert.equal(rxLens[j], len, `frame ${seq}: length`);
      for (let i = 0; i < len; i++) {
        if (b[at + i] !== expected[i]) {
          assert.fail(
            `frame ${seq} (${len} bytes): byte ${i} is ${b[at + i]}, sent ${expected[i]}`,
          );
        }
      }
    }
    pool.free(rxBufs, 0, got);
    received += got;
    if (got > 0) progress = performance.now();
    else if (performance.now() - progress > STALL_MS) {
      throw new Error(
        `echo loop stalled: sent ${sent}, received ${received} (a frame was dropped?)\n${
          tp.tail(10)
        }`,
      );
    }
  }
}
