/**
 * {@linkcode VirtioNet} against a device that breaks the ring rules (tests/hostile_backend.ts
 * writes used entries by hand). For every fault the driver must stop the port (status FAILED
 * sent: virtio 1.2 §2.1.2), throw a {@linkcode DeviceFailedError} naming the rule, and have every
 * buffer back in the pool — including those the failing dequeue had already taken.
 *
 * ```
 *   VirtioNet ──vhost-user──► HostileBackend (worker): used id 100 of 64, id twice, len 5000, ...
 *   rxBurst ─► DeviceFailedError; backend status & FAILED; pool.available == pool.count
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceFailedError, VirtioNet } from "../lib/driver/virtio_net.ts";
import { featureMask } from "../lib/virtio/features.ts";
import { DeviceStatus } from "../lib/virtio/status.ts";
import { HostileBackend, type UsedEntry } from "./hostile_backend.ts";

const SIZE = 64;
/** Packed used descriptor flags for the first lap (wrap counter 1): AVAIL = USED = 1. */
const USED = 0x8080;
/** Bounded wait for the driver to see what the worker wrote (it is visible at once; generous). */
const SEE_MS = 10_000;

interface Fault {
  name: string;
  packed: boolean;
  inOrder?: boolean;
  /** Used entries written into receiveq 0 (vring 0), where all SIZE buffers are in flight. */
  entries: UsedEntry[];
  /** Split: used.idx to publish instead of the one past the entries. */
  idx?: number;
  rule: RegExp;
}

const FAULTS: Fault[] = [
  {
    name: "used id out of range",
    packed: true,
    entries: [{ slot: 0, id: 100, len: 100, flags: USED }],
    rule: /id 100 is out of range \(queue size 64\)/,
  },
  {
    name: "used id not in flight (returned twice)",
    packed: true,
    entries: [{ slot: 0, id: 5, len: 100, flags: USED }, { slot: 1, id: 5, len: 100, flags: USED }],
    rule: /id 5 is not in flight/,
  },
  {
    name: "used len larger than the buffer",
    packed: true,
    entries: [{ slot: 0, id: 0, len: 100, flags: USED }, {
      slot: 1,
      id: 1,
      len: 5000,
      flags: USED,
    }],
    rule: /len 5000 exceeds the 2048 bytes the buffer holds/,
  },
  {
    name: "used len shorter than the virtio-net header",
    packed: true,
    entries: [{ slot: 0, id: 0, len: 100, flags: USED }, { slot: 1, id: 1, len: 4, flags: USED }],
    rule: /len 4 is shorter than the 12-byte virtio-net header/,
  },
  {
    name: "used descriptor with the wrong wrap polarity",
    packed: true,
    entries: [{ slot: 0, id: 0, len: 100, flags: 0x8000 }],
    rule: /wrong wrap polarity/,
  },
  {
    name: "in-order used id naming no buffer in flight",
    packed: true,
    inOrder: true,
    entries: [{ slot: 0, id: 200, len: 100, flags: USED }],
    rule: /in-order id 200 does not name a buffer in flight/,
  },
  {
    name: "used id out of range",
    packed: false,
    entries: [{ id: 100, len: 100 }],
    rule: /id 100 is out of range \(queue size 64\)/,
  },
  {
    name: "used id not in flight (returned twice)",
    packed: false,
    entries: [{ id: 5, len: 100 }, { id: 5, len: 100 }],
    rule: /id 5 is not in flight/,
  },
  {
    name: "used len larger than the buffer",
    packed: false,
    entries: [{ id: 0, len: 100 }, { id: 1, len: 5000 }],
    rule: /len 5000 exceeds the 2048 bytes the buffer holds/,
  },
  {
    name: "used len shorter than the virtio-net header",
    packed: false,
    entries: [{ id: 0, len: 100 }, { id: 1, len: 4 }],
    rule: /len 4 is shorter than the 12-byte virtio-net header/,
  },
  {
    name: "used index jump beyond the ring",
    packed: false,
    entries: [],
    idx: 200,
    rule: /used idx 200 is 200 entries past 0, but only 64 buffers are in flight/,
  },
];

async function withHostile(
  packed: boolean,
  inOrder: boolean,
  body: (dev: HostileBackend, port: VirtioNet) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "driver-hostile-" });
  const sock = `${dir}/vhost.sock`;
  const features = featureMask(
    "F_VERSION_1",
    "F_RING_PACKED",
    ...(inOrder ? ["F_IN_ORDER" as const] : []),
  );
  const dev = await HostileBackend.listen(sock, { features });
  try {
    const port = VirtioNet.open({ path: sock, packed, queueSize: SIZE, hugepages: false, inOrder });
    try {
      await body(dev, port);
    } finally {
      port.close();
    }
  } finally {
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
}

for (const f of FAULTS) {
  const ring = f.packed ? (f.inOrder ? "packed in-order" : "packed") : "split";
  Deno.test(`hostile device (${ring}): ${f.name} -> FAILED, typed error, every buffer back`, async () => {
    await withHostile(f.packed, f.inOrder ?? false, async (dev, port) => {
      const { pool } = port;
      assert.equal(pool.available, pool.count - SIZE, "the receive ring holds SIZE buffers");
      if (f.packed) await dev.packedUsed(0, f.entries);
      else await dev.splitUsed(0, f.entries, f.idx);
      const bufs = new Uint32Array(32), lens = new Uint32Array(32);
      let error: unknown = null;
      const deadline = Date.now() + SEE_MS;
      while (error === null && Date.now() < deadline) {
        try {
          pool.free(bufs, 0, port.rxBurst(bufs, lens, 32));
        } catch (e) {
          error = e;
        }
      }
      assert.ok(error instanceof DeviceFailedError, `DeviceFailedError, got ${error}`);
      assert.match(error.message, f.rule);
      assert.match(error.message, /virtqueue rx0: /, "the error names the queue");
      assert.equal(error.queue, "rx0");
      assert.equal(port.link, "down");
      assert.equal(port.failure, error);
      assert.equal(pool.available, pool.count, "every buffer is back in the pool");
      const state = await dev.state();
      const status = state.connected ? state.status : state.lastSessionStatus;
      assert.equal(
        status & DeviceStatus.FAILED,
        DeviceStatus.FAILED,
        "FAILED reached the device",
      );
      assert.equal(port.rxBurst(bufs, lens, 32), 0, "later bursts return 0");
      assert.doesNotThrow(() => port.close());
    });
  });
}

for (const packed of [true, false]) {
  const ring = packed ? "packed" : "split";
  const faults = [
    {
      name: "num_buffers 0 in a frame's first buffer",
      numBuffers: 0,
      entries: [{ id: 0, len: 100 }],
      rule: /num_buffers 0, 100 bytes \(§5\.1\.6\.4/,
    },
    {
      name: "an out-of-range id after two buffers of a three-buffer frame",
      numBuffers: 3,
      entries: [{ id: 0, len: 2048 }, { id: 1, len: 2048 }, { id: 100, len: 100 }],
      rule: /id 100 is out of range \(queue size 64\)/,
    },
  ];
  for (const f of faults) {
    Deno.test(`hostile device (${ring}, mergeable): ${f.name} -> FAILED, every buffer back`, async () => {
      const dir = await Deno.makeTempDir({ prefix: "driver-hostile-mrg-" });
      const sock = `${dir}/vhost.sock`;
      const features = featureMask("F_VERSION_1", "F_RING_PACKED", "NET_F_MRG_RXBUF");
      const dev = await HostileBackend.listen(sock, { features });
      try {
        const port = VirtioNet.open({
          path: sock,
          packed,
          queueSize: SIZE,
          hugepages: false,
          mergeable: true,
        });
        try {
          assert.ok(port.mergeable, "MRG_RXBUF negotiated");
          const { pool } = port;
          // The device's part of the header: num_buffers (le16 at byte 10) in every buffer.
          for (let b = 0; b < pool.count; b++) pool.bytes[pool.headerOffset(b) + 10] = f.numBuffers;
          const usedFlags = f.entries.map((e, slot) => ({ slot, ...e, flags: USED }));
          if (packed) await dev.packedUsed(0, usedFlags);
          else await dev.splitUsed(0, f.entries);
          const bufs = new Uint32Array(32), lens = new Uint32Array(32), segs = new Uint32Array(32);
          let error: unknown = null;
          const deadline = Date.now() + SEE_MS;
          while (error === null && Date.now() < deadline) {
            try {
              let j = 0;
              const frames = port.rxFrames(bufs, lens, segs, 32);
              for (let i = 0; i < frames; i++) j += segs[i];
              pool.free(bufs, 0, j);
            } catch (e) {
              error = e;
            }
          }
          assert.ok(error instanceof DeviceFailedError, `DeviceFailedError, got ${error}`);
          assert.match(error.message, f.rule);
          assert.equal(error.queue, "rx0");
          assert.equal(port.link, "down");
          assert.equal(pool.available, pool.count, "every buffer is back in the pool");
        } finally {
          port.close();
        }
      } finally {
        await dev.close();
        await Deno.remove(dir, { recursive: true });
      }
    });
  }
}

for (const packed of [true, false]) {
  Deno.test(`a device that stops consuming (${packed ? "packed" : "split"}) is reported stalled`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "driver-stall-" });
    const sock = `${dir}/vhost.sock`;
    const dev = await HostileBackend.listen(sock);
    try {
      const port = VirtioNet.open({
        path: sock,
        packed,
        queueSize: SIZE,
        hugepages: false,
        stallMs: 100,
      });
      const { pool } = port;
      let stallEvent = false;
      port.addEventListener("stall", () => stallEvent = true);
      const bufs = new Uint32Array(32), lens = new Uint32Array(32).fill(60);
      const deadline = Date.now() + SEE_MS;
      while (!port.stalled && Date.now() < deadline) {
        const n = pool.alloc(bufs, 0, 32);
        const sent = port.txBurst(bufs, lens, n);
        pool.free(bufs, sent, n - sent);
      }
      assert.ok(port.stalled, "stalled once the full ring saw no progress for stallMs");
      assert.ok(stallEvent, "a stall event was dispatched");
      assert.equal(port.link, "up", "stalled is not down: the device is still connected");
      assert.equal(port.stats.txPackets, SIZE, "exactly one ring's worth went out");
      assert.deepEqual(port.close(), [], "close() told the device everything");
      assert.equal(pool.available, pool.count, "the ring's buffers are back after close");
    } finally {
      await dev.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("a backend that ftruncates the driver's memory gets EPERM; the port keeps working", async () => {
  await withHostile(true, false, async (dev, port) => {
    const results = await dev.shrink(0);
    assert.ok(results.length > 0, "the backend found the memory fd");
    for (const r of results) assert.match(r, /ftruncate.*EPERM/, "F_SEAL_SHRINK refuses it");
    const { pool } = port;
    const last = pool.count - 1;
    const n = pool.alloc(new Uint32Array(pool.count), 0, pool.available);
    pool.bytes[pool.dataOffset(last) + 100] = 1; // the last page is still there: no SIGBUS
    assert.equal(pool.bytes[pool.dataOffset(last) + 100], 1);
    assert.ok(n > 0);
  });
});

for (const traffic of [false, true]) {
  Deno.test(`a backend that hangs up is noticed (${traffic ? "tx ring full" : "idle"}); latency printed`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "driver-hangup-" });
    const path = `${dir}/vhost.sock`;
    const dev = await HostileBackend.listen(path);
    const port = VirtioNet.open({ path, hugepages: false, queueSize: SIZE });
    try {
      let downAt = NaN;
      port.addEventListener(
        "linkchange",
        () => downAt = performance.timeOrigin + performance.now(),
      );
      const bufs = new Uint32Array(32), lens = new Uint32Array(32).fill(60);
      const closing = dev.close();
      const deadline = Date.now() + SEE_MS;
      // No awaits: the worker closes its socket on its own thread while this one bursts.
      while (port.link === "up" && Date.now() < deadline) {
        if (traffic) {
          const n = port.pool.alloc(bufs, 0, 32);
          const sent = port.txBurst(bufs, lens, n);
          port.pool.free(bufs, sent, n - sent);
        } else port.pool.free(bufs, 0, port.rxBurst(bufs, lens, 32));
      }
      const closedAt = await closing;
      assert.equal(port.link, "down");
      assert.match(port.downReason, /hung up|closed the connection/);
      assert.equal(port.pool.available, port.pool.count, "every buffer back");
      console.log(
        `  hang-up noticed ${(downAt - closedAt).toFixed(2)} ms after the backend closed`,
      );
    } finally {
      port.close();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
