/**
 * The device's echo with VIRTIO_NET_F_MRG_RXBUF (virtio 1.2 §5.1.6.3.2, §5.1.6.4) over real
 * rings in one process: the driver's queues, buffer pools and MergeableReceiver on one side,
 * {@linkcode NetDevicePath} in echo mode on the other. A 9000-byte frame comes back spread over
 * five 2048-byte receive buffers, num_buffers 5, byte-identical; when the buffers run out
 * mid-frame nothing is published until the driver posts more. And the relay under it (echo and
 * forwarding): a sender gone mid-frame leaves the receive chains it had filled with the device,
 * which fills them with the next frames instead of handing back a short one.
 *
 * ```
 *   tx (10240 B buffers): [hdr][9000 B] ──► NetDevicePath echo ──► rx: [hdr nb=5][2036][2048]…
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { NetDevicePath } from "../lib/device/net_device.ts";
import { Relay, relayStats } from "../lib/device/relay.ts";
import { BufferPool } from "../lib/driver/buffer_pool.ts";
import { createDriverQueue } from "../lib/driver/driver_queue.ts";
import { MergeableReceiver } from "../lib/driver/mergeable.ts";
import { SharedMemory } from "../lib/driver/shared_memory.ts";
import { UDP_HEADERS, writeUdpFrame } from "../lib/packet/udp_frame.ts";
import { NET_HDR_SIZE } from "../lib/virtio/net_hdr.ts";
import type { DriverQueue } from "../lib/virtio/virtqueue.ts";
import { deviceQueueOf } from "./ring_helpers.ts";

const SIZE = 16;
const JUMBO = 9000;

function queues(memory: SharedMemory, packed: boolean, name: string, pool: BufferPool) {
  const driver = createDriverQueue(memory, packed, SIZE, name, pool, false, packed);
  const { device, local } = deviceQueueOf(memory, packed, SIZE, name, driver);
  return { driver, device, local };
}

function post(q: DriverQueue, pool: BufferPool, n: number): void {
  const bufs = new Uint32Array(n), lens = new Uint32Array(n).fill(pool.bufferSize);
  assert.equal(pool.alloc(bufs, 0, n), n);
  assert.equal(q.enqueue(bufs, lens, 0, n, true), n);
}

for (const packed of [true, false]) {
  for (const macSwap of [false, true]) {
    Deno.test(`echo MRG_RXBUF ${packed ? "packed" : "split"}${macSwap ? ", mac swap" : ""}: 9000 B back over five 2048 B buffers`, () => {
      using memory = SharedMemory.create(4 << 20, { hugepages: false });
      const rxPool = new BufferPool(memory, 2 * SIZE, 2048);
      const txPool = new BufferPool(memory, 4, 10240);
      const rx = queues(memory, packed, "rx0", rxPool);
      const tx = queues(memory, packed, "tx0", txPool);
      const path = new NetDevicePath(rx.local, { mode: "echo", macSwap });
      path.mergeable = true;
      path.attach({ rx: rx.device, tx: tx.device, rxCall: -1, txCall: -1 });

      // The frame: a UDP frame with a pattern after the headers.
      const frame = new Uint8Array(JUMBO);
      writeUdpFrame(frame, 0, JUMBO);
      for (let i = UDP_HEADERS; i < JUMBO; i++) frame[i] = (i * 13) & 0xff;
      const expected = frame.slice();
      if (macSwap) {
        expected.set(frame.subarray(6, 12), 0);
        expected.set(frame.subarray(0, 6), 6);
      }
      const b = txPool.allocOne();
      txPool.bytes.fill(0, txPool.headerOffset(b), txPool.dataOffset(b));
      txPool.bytes.set(frame, txPool.dataOffset(b));
      assert.equal(
        tx.driver.enqueue(Uint32Array.of(b), Uint32Array.of(NET_HDR_SIZE + JUMBO), 0, 1, false),
        1,
      );

      // Three buffers posted: the frame needs five; nothing may be seen yet, the chain is held.
      post(rx.driver, rxPool, 3);
      path.poll();
      const m = new MergeableReceiver(SIZE, "rx0");
      const bufs = new Uint32Array(SIZE),
        lens = new Uint32Array(SIZE),
        segs = new Uint32Array(SIZE);
      assert.equal(rx.driver.hasUsed(), false, "nothing published mid-frame");
      assert.equal(
        tx.driver.hasUsed(),
        false,
        "the transmit chain is held until the frame is whole",
      );
      assert.equal(path.stats.fromDriverPackets, 0);

      post(rx.driver, rxPool, 4);
      path.poll();
      assert.equal(m.receive(rx.driver, rxPool, bufs, lens, segs, SIZE), 1, "one frame");
      assert.equal(segs[0], 5, "in five buffers (num_buffers 5)");
      let at = 0;
      for (let i = 0; i < segs[0]; i++) {
        const from = i === 0 ? rxPool.dataOffset(bufs[i]) : rxPool.headerOffset(bufs[i]);
        const piece = rxPool.bytes.subarray(from, from + lens[i]);
        const differs = piece.findIndex((v, k) => v !== expected[at + k]);
        assert.equal(differs, -1, `piece ${i}: byte ${at + differs} differs`);
        at += lens[i];
      }
      assert.equal(at, JUMBO);
      assert.deepEqual([...lens.subarray(0, 5)], [2036, 2048, 2048, 2048, 820]);
      const done = new Uint32Array(1), doneLen = new Uint32Array(1);
      assert.equal(tx.driver.dequeue(done, doneLen, 1), 1, "transmit chain returned");
      assert.equal(done[0], b);
      assert.deepEqual(
        [path.stats.fromDriverPackets, path.stats.toDriverPackets, path.stats.toDriverBytes],
        [1, 1, JUMBO],
      );
      assert.equal(path.stats.toDriverDropped, 0);
    });
  }
}

for (const packed of [true, false]) {
  Deno.test(`relay ${packed ? "packed" : "split"}: a sender gone mid-frame leaves its receive chains as spares, no short frame`, () => {
    using memory = SharedMemory.create(4 << 20, { hugepages: false });
    const rxPool = new BufferPool(memory, 2 * SIZE, 2048);
    const txPool = new BufferPool(memory, 4, 10240);
    const rx = queues(memory, packed, "rx0", rxPool); // B's receiveq
    const tx = queues(memory, packed, "tx0", txPool); // A's transmitq
    const a = { rx: rx.device, tx: tx.device, rxCall: -1, txCall: -1 };
    const b = a; // the relay only reads a.tx and writes b.rx
    const send = (len: number, seed: number): Uint8Array => {
      const frame = new Uint8Array(len);
      writeUdpFrame(frame, 0, len);
      for (let i = UDP_HEADERS; i < len; i++) frame[i] = (i * seed) & 0xff;
      const buf = txPool.allocOne();
      txPool.bytes.fill(0, txPool.headerOffset(buf), txPool.dataOffset(buf));
      txPool.bytes.set(frame, txPool.dataOffset(buf));
      assert.equal(
        tx.driver.enqueue(Uint32Array.of(buf), Uint32Array.of(NET_HDR_SIZE + len), 0, 1, false),
        1,
      );
      return frame;
    };
    const stats = relayStats();
    const first = new Relay();
    send(JUMBO, 13);
    post(rx.driver, rxPool, 3);
    assert.equal(first.burst(tx.local, a, rx.local, b, true, 32, stats, false), 0);
    // A goes away with the frame in three of B's buffers: lost, counted, B sees nothing.
    first.abandon(null, rx.local, b, true, stats);
    assert.equal(rx.driver.hasUsed(), false, "no short frame handed to B");
    assert.deepEqual([stats.taken, stats.dropped, stats.packets], [1, 1, 0]);

    // The relay rebuilt for the next sender keeps B's three chains and fills them first.
    const next = new Relay();
    next.adoptSpares(first);
    const f1 = send(3000, 7), f2 = send(100, 5);
    assert.equal(next.burst(tx.local, a, rx.local, b, true, 32, stats, false), 2);
    const m = new MergeableReceiver(SIZE, "rx0");
    const bufs = new Uint32Array(SIZE), lens = new Uint32Array(SIZE), segs = new Uint32Array(SIZE);
    assert.equal(m.receive(rx.driver, rxPool, bufs, lens, segs, SIZE), 2, "two whole frames");
    assert.deepEqual([...segs.subarray(0, 2)], [2, 1]);
    assert.deepEqual([...lens.subarray(0, 3)], [2036, 964, 100]);
    const got = (i: number) => {
      const from = i === 0 || i === 2 ? rxPool.dataOffset(bufs[i]) : rxPool.headerOffset(bufs[i]);
      return rxPool.bytes.slice(from, from + lens[i]);
    };
    assert.deepEqual(new Uint8Array([...got(0), ...got(1)]), f1);
    assert.deepEqual(got(2), f2);
    assert.deepEqual([stats.taken, stats.packets, stats.bytes], [3, 2, 3100]);
  });
}
