/**
 * The project's driver against the project's device over a real vhost-user socket: VirtioNet in
 * the test's thread, VhostUserDevice on a worker (DeviceThread), packed and split rings, queue
 * sizes 256 and 1024. Counters must agree exactly on both sides.
 *
 * ```
 *   VirtioNet (main thread) ──txBurst──► transmitq ──► DeviceThread: sink | echo ──┐
 *                           ◄─rxBurst─── receiveq  ◄── DeviceThread: source | echo ◄┘
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceThread } from "../lib/device/device_thread.ts";
import { UDP_HEADERS, writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";

const N = 100_000;
/** Not a multiple of the 32-frame burst, so a device overshooting its count would show. */
const SOURCE_N = 99_997;
const FRAME = 64;
const TIMEOUT_MS = 30_000;
const LAYOUTS = [
  { packed: true, queueSize: 256 },
  { packed: true, queueSize: 1024 },
  { packed: false, queueSize: 256 },
  { packed: false, queueSize: 1024 },
];

function label(packed: boolean, queueSize: number): string {
  return `${packed ? "packed" : "split"} q${queueSize}`;
}

/** Sends exactly `n` copies of a UDP frame, then waits until the device used them all. */
function sendExactly(port: VirtioNet, n: number): void {
  const { pool, stats } = port;
  for (let b = 0; b < pool.count; b++) writeUdpFrame(pool.bytes, pool.dataOffset(b), FRAME);
  const bufs = new Uint32Array(32), lens = new Uint32Array(32).fill(FRAME);
  const target = stats.txPackets + n;
  const deadline = performance.now() + TIMEOUT_MS;
  while (stats.txPackets < target) {
    const k = pool.alloc(bufs, 0, Math.min(32, target - stats.txPackets));
    const sent = port.txBurst(bufs, lens, k);
    if (sent < k) pool.free(bufs, sent, k - sent);
    if (performance.now() > deadline) throw new Error(`sent ${stats.txPackets} of ${target}`);
  }
  assert.equal(port.txDrain(TIMEOUT_MS), 0, "frames left in the transmitq after draining");
}

for (const { packed, queueSize } of LAYOUTS) {
  const open = (path: string) => VirtioNet.open({ path, packed, queueSize });

  Deno.test(`device loopback ${label(packed, queueSize)}: sink takes exactly what was sent`, async () => {
    const device = await DeviceThread.start({ mode: "sink" });
    try {
      const port = open(device.path);
      try {
        sendExactly(port, N);
      } finally {
        port.close();
      }
      const { stats, errors } = await device.stop();
      assert.deepEqual(errors, []);
      assert.equal(port.stats.txPackets, N);
      assert.equal(stats.fromDriverPackets, port.stats.txPackets);
      assert.equal(stats.fromDriverBytes, port.stats.txBytes);
      assert.equal(stats.fromDriverBytes, N * FRAME);
      assert.equal(stats.toDriverPackets, 0);
    } finally {
      await device.stop();
    }
  });

  Deno.test(`device loopback ${label(packed, queueSize)}: source sends exactly count frames`, async () => {
    const device = await DeviceThread.start({ mode: "source", count: SOURCE_N, frameSize: FRAME });
    try {
      const expected = new Uint8Array(FRAME);
      writeUdpFrame(expected, 0, FRAME);
      const port = open(device.path);
      let bad = 0;
      try {
        const { pool, stats } = port;
        const bufs = new Uint32Array(64), lens = new Uint32Array(64);
        const deadline = performance.now() + TIMEOUT_MS;
        while (stats.rxPackets < SOURCE_N && performance.now() < deadline) {
          const got = port.rxBurst(bufs, lens, 64);
          for (let i = 0; i < got; i++) {
            const at = pool.dataOffset(bufs[i]);
            if (lens[i] !== FRAME) bad++;
            else {
              for (let k = 0; k < FRAME; k++) {
                if (pool.bytes[at + k] !== expected[k]) {
                  bad++;
                  break;
                }
              }
            }
          }
          pool.free(bufs, 0, got);
        }
        assert.equal(
          stats.rxPackets,
          SOURCE_N,
          "frames received: exactly count, within the timeout",
        );
        // The device stops at exactly its count: nothing more arrives.
        const { stats: device1 } = await device.done();
        const until = performance.now() + 50;
        while (performance.now() < until) pool.free(bufs, 0, port.rxBurst(bufs, lens, 64));
        assert.equal(stats.rxPackets, SOURCE_N);
        assert.equal(device1.toDriverPackets, SOURCE_N);
      } finally {
        port.close();
      }
      const { stats, errors } = await device.stop();
      assert.deepEqual(errors, []);
      assert.equal(bad, 0, "frames differing from the generated UDP frame");
      assert.equal(stats.toDriverPackets, SOURCE_N);
      assert.equal(stats.toDriverPackets, port.stats.rxPackets);
      assert.equal(stats.toDriverBytes, port.stats.rxBytes);
    } finally {
      await device.stop();
    }
  });

  Deno.test(`device loopback ${label(packed, queueSize)}: echo with macSwap returns each frame`, async () => {
    const device = await DeviceThread.start({ mode: "echo", macSwap: true });
    try {
      const port = open(device.path);
      const dst = Uint8Array.of(0x02, 0, 0, 0, 0, 0x02);
      const template = new Uint8Array(FRAME);
      writeUdpFrame(template, 0, FRAME, { srcMac: port.mac, dstMac: dst });
      const expected = template.slice();
      expected.set(port.mac, 0);
      expected.set(dst, 6);
      const total = N / 2;
      // Keep fewer frames in flight than the receive ring holds, so echo never finds it empty.
      const window = queueSize / 2;
      let bad = 0;
      try {
        const { pool, stats } = port;
        const bufs = new Uint32Array(32), lens = new Uint32Array(32).fill(FRAME);
        const rbufs = new Uint32Array(64), rlens = new Uint32Array(64);
        const view = new DataView(pool.bytes.buffer, pool.bytes.byteOffset);
        const deadline = performance.now() + TIMEOUT_MS;
        while (stats.rxPackets < total && performance.now() < deadline) {
          const room = Math.min(
            32,
            total - stats.txPackets,
            window - (stats.txPackets - stats.rxPackets),
          );
          if (room > 0) {
            const k = pool.alloc(bufs, 0, room);
            for (let i = 0; i < k; i++) {
              const at = pool.dataOffset(bufs[i]);
              pool.bytes.set(template, at);
              view.setUint32(at + UDP_HEADERS, stats.txPackets + i); // sequence number
            }
            const sent = port.txBurst(bufs, lens, k);
            if (sent < k) pool.free(bufs, sent, k - sent);
          }
          const got = port.rxBurst(rbufs, rlens, 64);
          for (let i = 0; i < got; i++) {
            const at = pool.dataOffset(rbufs[i]);
            const seq = stats.rxPackets - got + i;
            expected[UDP_HEADERS] = seq >>> 24;
            expected[UDP_HEADERS + 1] = (seq >>> 16) & 0xff;
            expected[UDP_HEADERS + 2] = (seq >>> 8) & 0xff;
            expected[UDP_HEADERS + 3] = seq & 0xff;
            if (rlens[i] !== FRAME) bad++;
            else {
              for (let k = 0; k < FRAME; k++) {
                if (pool.bytes[at + k] !== expected[k]) {
                  bad++;
                  break;
                }
              }
            }
          }
          pool.free(rbufs, 0, got);
        }
        assert.equal(stats.rxPackets, total, "echoed frames received before the timeout");
        assert.equal(port.txDrain(TIMEOUT_MS), 0);
      } finally {
        port.close();
      }
      const { stats, errors } = await device.stop();
      assert.deepEqual(errors, []);
      assert.equal(bad, 0, "echoed frames not byte-identical (MACs swapped, in order)");
      assert.equal(stats.toDriverDropped, 0);
      assert.equal(stats.fromDriverPackets, port.stats.txPackets);
      assert.equal(stats.toDriverPackets, port.stats.rxPackets);
      assert.equal(stats.fromDriverBytes, port.stats.txBytes);
      assert.equal(stats.toDriverBytes, port.stats.rxBytes);
    } finally {
      await device.stop();
    }
  });
}

for (const packed of [true, false]) {
  Deno.test(`device loopback ${packed ? "packed" : "split"}: a second frontend after the first closed`, async () => {
    const device = await DeviceThread.start({ mode: "sink" });
    try {
      const first = VirtioNet.open({ path: device.path, packed });
      try {
        sendExactly(first, 10_000);
      } finally {
        first.close();
      }
      const second = VirtioNet.open({ path: device.path, packed });
      try {
        sendExactly(second, 20_000);
      } finally {
        second.close();
      }
      const { stats, errors } = await device.stop();
      assert.deepEqual(errors, []);
      assert.equal(stats.fromDriverPackets, 30_000);
      assert.equal(stats.fromDriverBytes, first.stats.txBytes + second.stats.txBytes);
    } finally {
      await device.stop();
    }
  });
}

Deno.test("device thread: live counters and a start failure", async () => {
  const device = await DeviceThread.start({ mode: "sink" });
  try {
    const port = VirtioNet.open({ path: device.path });
    try {
      sendExactly(port, 5000);
      // The worker publishes its counters about every millisecond.
      const deadline = performance.now() + 5000;
      while (device.stats.fromDriverPackets < 5000 && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 2));
      }
      assert.equal(device.stats.fromDriverPackets, 5000);
    } finally {
      port.close();
    }
  } finally {
    await device.stop();
  }
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      DeviceThread.start({ path: `${dir}/nobody.sock`, connect: true }),
      /did not start: .*connect/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("device loopback: a data path error ends only that session", async () => {
  // 3000-byte frames do not fit the first driver's 2048-byte receive buffers: VirtqueueError.
  const device = await DeviceThread.start({ mode: "source", frameSize: 3000 });
  try {
    const first = VirtioNet.open({ path: device.path });
    const bufs = new Uint32Array(64), lens = new Uint32Array(64);
    try {
      const until = performance.now() + 200;
      while (performance.now() < until) {
        first.pool.free(bufs, 0, first.rxBurst(bufs, lens, 64));
        await new Promise((r) => setTimeout(r, 5)); // give the worker's session end a moment
      }
      assert.equal(first.stats.rxPackets, 0);
    } finally {
      try {
        first.close();
      } catch { /* the device already ended this session: the close messages may fail */ }
    }
    const second = VirtioNet.open({ path: device.path, bufferSize: 4096 });
    try {
      const deadline = performance.now() + TIMEOUT_MS;
      while (second.stats.rxPackets < 1000 && performance.now() < deadline) {
        const got = second.rxBurst(bufs, lens, 64);
        for (let i = 0; i < got; i++) assert.equal(lens[i], 3000);
        second.pool.free(bufs, 0, got);
      }
      assert.ok(second.stats.rxPackets >= 1000);
    } finally {
      second.close();
    }
    const { errors } = await device.stop();
    assert.equal(errors.length, 1, errors.join("\n"));
    assert.match(errors[0], /VirtqueueError: virtqueue receiveq: receive buffer \d+ holds 2048/);
  } finally {
    await device.stop();
  }
});

Deno.test("device thread: ends by itself at disconnect or after its duration", async () => {
  const once = await DeviceThread.start({ mode: "sink", untilDisconnect: true });
  try {
    const port = VirtioNet.open({ path: once.path });
    try {
      sendExactly(port, 1000);
    } finally {
      port.close();
    }
    const { stats, errors } = await once.done();
    assert.deepEqual(errors, []);
    assert.equal(stats.fromDriverPackets, 1000);
  } finally {
    await once.stop();
  }

  const timed = await DeviceThread.start({ mode: "source", durationMs: 100 });
  try {
    const port = VirtioNet.open({ path: timed.path });
    try {
      const { stats } = await timed.done(); // 100 ms after the queues started
      // The device sends nothing more but still answers, so the port drains and closes cleanly.
      const bufs = new Uint32Array(64), lens = new Uint32Array(64);
      const deadline = performance.now() + TIMEOUT_MS;
      while (port.stats.rxPackets < stats.toDriverPackets && performance.now() < deadline) {
        port.pool.free(bufs, 0, port.rxBurst(bufs, lens, 64));
      }
      assert.ok(stats.toDriverPackets > 0);
      assert.equal(port.stats.rxPackets, stats.toDriverPackets);
    } finally {
      port.close();
    }
    assert.deepEqual((await timed.stop()).errors, []);
  } finally {
    await timed.stop();
  }
});

for (const packed of [true, false]) {
  Deno.test(`user hook on the device thread sees every frame's payload (${packed ? "packed" : "split"})`, async () => {
    const frames = 20_000;
    const device = await DeviceThread.start({
      mode: "sink",
      hook: new URL("./fixtures/payload_hook.ts", import.meta.url).href,
    });
    let sentBytes = 0;
    try {
      const port = VirtioNet.open({ path: device.path, packed, queueSize: 256 });
      try {
        const { pool } = port;
        const bufs = new Uint32Array(32), lens = new Uint32Array(32);
        let seq = 0;
        const deadline = performance.now() + TIMEOUT_MS;
        while (seq < frames && performance.now() < deadline) {
          const k = pool.alloc(bufs, 0, Math.min(32, frames - seq));
          for (let i = 0; i < k; i++) {
            const len = 60 + ((seq + i) * 7) % 1455; // 60..1514
            const at = pool.dataOffset(bufs[i]);
            writeUdpFrame(pool.bytes, at, len);
            new DataView(pool.bytes.buffer).setUint32(at + UDP_HEADERS, seq + i, true);
            for (let b = UDP_HEADERS + 4; b < len; b++) pool.bytes[at + b] = (seq + i + b) & 0xff;
            lens[i] = len;
          }
          const sent = port.txBurst(bufs, lens, k);
          for (let i = 0; i < sent; i++) sentBytes += lens[i];
          pool.free(bufs, sent, k - sent);
          seq += sent;
        }
        assert.equal(seq, frames);
        assert.equal(port.txDrain(5000), 0);
      } finally {
        port.close();
      }
    } finally {
      const result = await device.stop();
      assert.deepEqual(result.errors, []);
      assert.deepEqual(result.hookResult, {
        frames,
        bytes: sentBytes,
        mismatched: 0,
        first: "",
      });
      assert.equal(result.stats.fromDriverPackets, frames);
      assert.equal(result.stats.fromDriverBytes, sentBytes);
    }
  });
}
