/**
 * The TypeScript driver ({@linkcode VirtioNet}) against DPDK's vhost PMD in `dpdk-testpmd`, with
 * exact counts on both sides, for packed and split rings of 256 and 1024 descriptors:
 *
 * ```
 *   TX:         VirtioNet.txBurst ──transmitq──► net_vhost0 (rxonly)   RX-packets == N
 *   RX:         VirtioNet.rxBurst ◄──receiveq── net_vhost0 (txonly)    TX-packets == received
 *   round trip: VirtioNet ──► net_vhost0 (io, port 0 → port 0) ──► VirtioNet, bytes compared
 * ```
 *
 * testpmd runs on CPU 1 (harness default); the driver runs in this process. The receiving side
 * always starts before the sending side sends (testpmd discards what was queued before `start`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { openFds } from "./helpers.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { UDP_HEADERS, writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { requireTestpmd } from "./peers.ts";
import type { ForwardMode, ForwardStats, Testpmd } from "./testpmd.ts";
import { withTestpmdPort } from "./vhost_port.ts";

const ignore = requireTestpmd(1);

/** Frames per exact TX run. */
const TX_FRAMES = 200_000;
/** How long the driver receives from testpmd txonly before testpmd is stopped. */
const RX_MS = 250;
/** ...and until the receive ring has been filled this many times over. */
const RX_LAPS = 8;
/** Frames per round trip. */
const ROUND_TRIP_FRAMES = 20_000;
/** A loop that makes no progress for this long fails (the peer stopped taking or giving). */
const STALL_MS = 5000;
const BURST = 32;

interface Ring {
  packed: boolean;
  queueSize: number;
}

const RINGS: Ring[] = [];
for (const packed of [true, false]) {
  for (const queueSize of [256, 1024]) RINGS.push({ packed, queueSize });
}

function ringName(r: Ring): string {
  return `${r.packed ? "packed" : "split"} ${r.queueSize}`;
}

/**
 * Starts testpmd with a vhost port in `forwardMode`, connects a {@linkcode VirtioNet} to it,
 * waits for link up and runs `body`; then closes the port, stops testpmd and removes the socket
 * directory, whatever happened.
 */
async function withVhost(
  ring: Ring,
  forwardMode: ForwardMode,
  body: (tp: Testpmd, port: VirtioNet) => Promise<void>,
  txpkts?: number,
): Promise<void> {
  const fdsBefore = openFds();
  await withTestpmdPort(
    { forwardMode, txpkts },
    { packed: ring.packed, queueSize: ring.queueSize, hugepages: "auto" },
    async (tp, port) => {
      assert.equal(port.packed, ring.packed, "ring layout negotiated as asked");
      await body(tp, port);
    },
  );
  assert.equal(
    openFds(),
    fdsBefore,
    "the port closed every fd it opened (eventfds, memfd, socket)",
  );
}

function stalled(what: string, tp: Testpmd, detail: string): Error {
  return new Error(`${what} made no progress for ${STALL_MS} ms (${detail})\n${tp.tail(20)}`);
}

// --- 1. TX exact --------------------------------------------------------------------------------

/** Sends exactly `n` frames of `size` bytes and waits until the device has taken them all. */
function sendExact(tp: Testpmd, port: VirtioNet, n: number, size: number): void {
  const { pool } = port;
  for (let b = 0; b < pool.count; b++) {
    writeUdpFrame(pool.bytes, pool.dataOffset(b), size, { srcMac: port.mac });
  }
  const bufs = new Uint32Array(BURST);
  const lens = new Uint32Array(BURST).fill(size);
  let sent = 0;
  let progress = performance.now();
  while (sent < n) {
    const want = Math.min(BURST, n - sent);
    const k = pool.alloc(bufs, 0, want);
    const s = port.txBurst(bufs, lens, k);
    if (s < k) pool.free(bufs, s, k - s);
    sent += s;
    if (s > 0) progress = performance.now();
    else if (performance.now() - progress > STALL_MS) {
      throw stalled("txBurst", tp, `sent ${sent} of ${n}`);
    }
  }
  assert.equal(port.txDrain(STALL_MS), 0, "every frame taken by the vhost PMD");
}

const TX_CASES: { ring: Ring; size: number }[] = [
  ...RINGS.map((ring) => ({ ring, size: 64 })),
  { ring: { packed: true, queueSize: 1024 }, size: 1514 },
  { ring: { packed: false, queueSize: 256 }, size: 1514 },
];

for (const { ring, size } of TX_CASES) {
  Deno.test({
    name: `VirtioNet -> testpmd rxonly (${
      ringName(ring)
    }): exactly ${TX_FRAMES} ${size}-byte frames`,
    ignore,
    async fn() {
      await withVhost(ring, "rxonly", async (tp, port) => {
        await tp.startForwarding();
        const t0 = performance.now();
        sendExact(tp, port, TX_FRAMES, size);
        const ms = performance.now() - t0;
        const got = await tp.stopForwarding();
        console.log(
          `  ${ringName(ring)} TX ${size} B: ${(TX_FRAMES / ms / 1e3).toFixed(2)} Mpps, ` +
            `kicks ${port.stats.kicks}`,
        );
        assert.equal(got.rxPackets, TX_FRAMES, "testpmd RX-packets");
        assert.equal(got.rxDropped, 0, "testpmd RX-dropped");
        assert.equal(port.stats.txPackets, TX_FRAMES);
        assert.equal(port.stats.txBytes, size * TX_FRAMES);
        const portStats = await tp.stats();
        assert.equal(portStats.rxPackets, TX_FRAMES, "port RX-packets since link up");
        assert.equal(portStats.rxBytes, size * TX_FRAMES, "port RX-bytes: frames sent whole");
        assert.equal(portStats.rxErrors, 0);
      });
    },
  });
}

// --- 2. RX exact, with the right length -----------------------------------------------------------

/** Checks the Ethernet/IPv4/UDP headers testpmd txonly writes; returns an error or "". */
function checkTxonlyFrame(bytes: Uint8Array, at: number, size: number): string {
  const etherType = bytes[at + 12] << 8 | bytes[at + 13];
  if (etherType !== 0x0800) return `EtherType 0x${etherType.toString(16)}, expected 0x0800`;
  if (bytes[at + 14] !== 0x45) return `IPv4 version/IHL 0x${bytes[at + 14].toString(16)}`;
  if (bytes[at + 23] !== 17) return `IPv4 protocol ${bytes[at + 23]}, expected 17 (UDP)`;
  const ipLen = bytes[at + 16] << 8 | bytes[at + 17];
  if (ipLen !== size - 14) return `IPv4 total length ${ipLen}, expected ${size - 14}`;
  const udpLen = bytes[at + 38] << 8 | bytes[at + 39];
  if (udpLen !== size - 34) return `UDP length ${udpLen}, expected ${size - 34}`;
  return "";
}

const RX_CASES: { ring: Ring; size: number }[] = [
  ...RINGS.map((ring) => ({ ring, size: 64 })),
  { ring: { packed: true, queueSize: 256 }, size: 1024 },
  { ring: { packed: false, queueSize: 1024 }, size: 1024 },
];

for (const { ring, size } of RX_CASES) {
  Deno.test({
    name: `testpmd txonly -> VirtioNet (${ringName(ring)}): received == TX-packets, ${size} B each`,
    ignore,
    async fn() {
      await withVhost(ring, "txonly", async (tp, port) => {
        const { pool } = port;
        const bufs = new Uint32Array(BURST);
        const lens = new Uint32Array(BURST);
        let received = 0;
        let wrongLength = 0;
        let firstWrong = -1;
        let parsed = 0;
        let badHeader = "";
        const receive = (): number => {
          const n = port.rxBurst(bufs, lens, BURST);
          for (let i = 0; i < n; i++) {
            if (lens[i] !== size) {
              if (wrongLength++ === 0) firstWrong = lens[i];
            } else if ((received + i) % 1024 === 0 && badHeader === "") {
              badHeader = checkTxonlyFrame(pool.bytes, pool.dataOffset(bufs[i]), size);
              parsed++;
            }
          }
          pool.free(bufs, 0, n);
          received += n;
          return n;
        };

        // The receiving side (this driver, rings filled at open) is ready before testpmd sends.
        await tp.startForwarding();
        const t0 = performance.now();
        // At least RX_MS, and at least RX_LAPS trips around the ring (a loaded machine may
        // share testpmd's CPU), but never longer than STALL_MS.
        let elapsed = 0;
        while (elapsed < RX_MS || (received < RX_LAPS * ring.queueSize && elapsed < STALL_MS)) {
          receive();
          elapsed = performance.now() - t0;
        }
        const during = received;
        // While testpmd stops, nobody drains the ring: frames without a buffer are TX-dropped.
        const sent: ForwardStats = await tp.stopForwarding();
        // After `stop` returns the forwarding lcore has finished: what it enqueued is all there.
        while (receive() > 0) { /* drain */ }
        await new Promise((r) => setTimeout(r, 20));
        while (receive() > 0) { /* nothing more may come */ }

        console.log(
          `  ${ringName(ring)} RX ${size} B: ${(during / elapsed / 1e3).toFixed(2)} Mpps; ` +
            `testpmd TX-packets ${sent.txPackets}, TX-dropped ${sent.txDropped}, ` +
            `drained after stop ${received - during}`,
        );
        assert.ok(during >= RX_LAPS * ring.queueSize, `received ${during} frames in ${elapsed} ms`);
        assert.equal(sent.txTotal, sent.txPackets + sent.txDropped);
        assert.equal(received, sent.txPackets, "frames received == testpmd TX-packets");
        assert.ok(received - during <= ring.queueSize, "at most one ring left after stop");
        assert.equal(
          wrongLength,
          0,
          `frames with a length other than ${size} (first: ${firstWrong})`,
        );
        assert.equal(badHeader, "", "txonly UDP/IPv4 headers parse");
        assert.ok(parsed > 0, "some headers were checked");
        assert.equal(port.stats.rxPackets, received);
        assert.equal(port.stats.rxBytes, received * size);
        assert.equal(port.stats.rxNoBuffers, 0, "the pool never ran dry");
        const portStats = await tp.stats();
        assert.equal(portStats.txPackets, sent.txPackets, "port TX-packets since link up");
        assert.equal(portStats.txBytes, sent.txPackets * size);
      }, size);
    },
  });
}

// --- 3. Round trip, byte-identical ---------------------------------------------------------------

const MIN_SIZE = 60;
const MAX_SIZE = 1514;

/** Frame size of sequence number `seq`: 60 and 1514 first, then spread over 60..1514. */
function sizeOf(seq: number): number {
  if (seq === 0) return MIN_SIZE;
  if (seq === 1) return MAX_SIZE;
  return MIN_SIZE + (seq * 7919) % (MAX_SIZE - MIN_SIZE + 1);
}

/** Writes frame `seq`: UDP/IPv4 headers, then seq (u32 big-endian) and bytes derived from it. */
function writeSeqFrame(bytes: Uint8Array, at: number, seq: number, srcMac: Uint8Array): number {
  const size = sizeOf(seq);
  writeUdpFrame(bytes, at, size, { srcMac, srcPort: seq & 0xffff });
  let p = at + UDP_HEADERS;
  bytes[p++] = seq >>> 24;
  bytes[p++] = seq >>> 16;
  bytes[p++] = seq >>> 8;
  bytes[p++] = seq;
  let x = (seq * 2654435761) >>> 0;
  for (const end = at + size; p < end; p++) {
    x = (x * 1103515245 + 12345) >>> 0; // LCG seeded by seq: every frame's payload differs
    bytes[p] = x >>> 24;
  }
  return size;
}

for (const ring of RINGS) {
  Deno.test({
    name: `VirtioNet -> testpmd io -> VirtioNet (${ringName(ring)}): ` +
      `${ROUND_TRIP_FRAMES} frames of 60..1514 B back byte-identical`,
    ignore,
    async fn() {
      await withVhost(ring, "io", async (tp, port) => {
        const { pool } = port;
        const txBufs = new Uint32Array(BURST);
        const txLens = new Uint32Array(BURST);
        const rxBufs = new Uint32Array(BURST);
        const rxLens = new Uint32Array(BURST);
        const expected = new Uint8Array(MAX_SIZE);
        // In flight stays below half the receive ring, so testpmd always finds a buffer.
        const window = ring.queueSize >> 1;
        let sent = 0;
        let received = 0;
        let sentBytes = 0;
        let progress = performance.now();

        await tp.startForwarding();
        const t0 = performance.now();
        while (received < ROUND_TRIP_FRAMES) {
          const room = Math.min(BURST, ROUND_TRIP_FRAMES - sent, window - (sent - received));
          if (room > 0) {
            const k = pool.alloc(txBufs, 0, room);
            for (let i = 0; i < k; i++) {
              txLens[i] = writeSeqFrame(pool.bytes, pool.dataOffset(txBufs[i]), sent + i, port.mac);
            }
            const s = port.txBurst(txBufs, txLens, k);
            if (s < k) pool.free(txBufs, s, k - s);
            for (let i = 0; i < s; i++) sentBytes += txLens[i];
            sent += s;
          }
          const n = port.rxBurst(rxBufs, rxLens, BURST);
          for (let i = 0; i < n; i++) {
            const at = pool.dataOffset(rxBufs[i]);
            const seq = received;
            const b = pool.bytes;
            const got = (b[at + 42] << 24 | b[at + 43] << 16 | b[at + 44] << 8 | b[at + 45]) >>> 0;
            // One queue, one forwarding lcore: frames come back in the order they were sent.
            if (got !== seq) assert.fail(`frame ${seq}: came back carrying sequence number ${got}`);
            const size = writeSeqFrame(expected, 0, seq, port.mac);
            if (rxLens[i] !== size) {
              assert.fail(`frame ${seq}: ${rxLens[i]} bytes came back, ${size} were sent`);
            }
            for (let j = 0; j < size; j++) {
              if (b[at + j] !== expected[j]) {
                assert.fail(
                  `frame ${seq} (${size} B) byte ${j}: got 0x${b[at + j].toString(16)}, ` +
                    `sent 0x${expected[j].toString(16)}`,
                );
              }
            }
            received++;
          }
          pool.free(rxBufs, 0, n);
          if (n > 0) progress = performance.now();
          else if (performance.now() - progress > STALL_MS) {
            throw stalled("round trip", tp, `sent ${sent}, received ${received}`);
          }
        }
        const ms = performance.now() - t0;
        assert.equal(port.txDrain(STALL_MS), 0);
        const counts = await tp.stopForwarding();
        console.log(
          `  ${ringName(ring)} round trip: ${ROUND_TRIP_FRAMES} frames, ${sentBytes} B in ` +
            `${ms.toFixed(0)} ms (${(ROUND_TRIP_FRAMES / ms).toFixed(0)} kpps)`,
        );
        assert.equal(counts.rxPackets, ROUND_TRIP_FRAMES, "testpmd RX-packets");
        assert.equal(counts.txPackets, ROUND_TRIP_FRAMES, "testpmd TX-packets");
        assert.equal(counts.txDropped, 0, "testpmd TX-dropped");
        assert.equal(counts.rxDropped, 0, "testpmd RX-dropped");
        assert.equal(port.rxBurst(rxBufs, rxLens, BURST), 0, "nothing extra came back");
        assert.equal(port.stats.txPackets, ROUND_TRIP_FRAMES);
        assert.equal(port.stats.rxPackets, ROUND_TRIP_FRAMES);
        assert.equal(port.stats.txBytes, sentBytes);
        assert.equal(port.stats.rxBytes, sentBytes);
      });
    },
  });
}
