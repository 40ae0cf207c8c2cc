/**
 * MergeableReceiver (VIRTIO_NET_F_MRG_RXBUF, virtio 1.2 §5.1.6.4) over real rings in one
 * process: a device side written by hand returns frames spread over several receive buffers,
 * also with a frame's last buffers published later, and breaks the rules.
 *
 * ```
 *   driver: createDriverQueue + BufferPool ──receive buffers──► device queue (this test)
 *   rxFrames ◄── used: [hdr nb=3][data][data] (published in two steps) ◄──┘
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { BufferPool } from "../lib/driver/buffer_pool.ts";
import { createDriverQueue } from "../lib/driver/driver_queue.ts";
import { MergeableReceiver } from "../lib/driver/mergeable.ts";
import { SharedMemory } from "../lib/driver/shared_memory.ts";
import { NET_HDR_NUM_BUFFERS, NET_HDR_SIZE } from "../lib/virtio/net_hdr.ts";
import {
  DescriptorChain,
  type DeviceQueue,
  type DriverQueue,
  LocalMemory,
  VirtqueueError,
} from "../lib/virtio/virtqueue.ts";
import { deviceQueueOf } from "./ring_helpers.ts";

const SIZE = 16;

interface Rig {
  memory: SharedMemory;
  pool: BufferPool;
  rx: DriverQueue;
  device: DeviceQueue;
  local: LocalMemory;
  chain: DescriptorChain;
}

function rig(packed: boolean): Rig {
  const memory = SharedMemory.create(1 << 20, { hugepages: false });
  const pool = new BufferPool(memory, 64, 2048);
  const rx = createDriverQueue(memory, packed, SIZE, "rx0", pool, false, packed);
  const { device, local } = deviceQueueOf(memory, packed, SIZE, "rx0", rx);
  // Post every slot, as the port's refill does.
  const bufs = new Uint32Array(SIZE), lens = new Uint32Array(SIZE).fill(pool.bufferSize);
  assert.equal(pool.alloc(bufs, 0, SIZE), SIZE);
  assert.equal(rx.enqueue(bufs, lens, 0, SIZE, true), SIZE);
  return { memory, pool, rx, device, local, chain: new DescriptorChain(SIZE) };
}

/** The device side: takes the next receive buffer, writes `numBuffers` if first, returns it used. */
function use(r: Rig, len: number, numBuffers: number): number {
  assert.ok(r.device.pop(r.chain));
  const bytes = r.local.bytes(r.chain.region[0]);
  const at = r.chain.offset[0];
  if (numBuffers >= 0) {
    bytes[at + NET_HDR_NUM_BUFFERS] = numBuffers & 0xff;
    bytes[at + NET_HDR_NUM_BUFFERS + 1] = numBuffers >> 8;
  }
  bytes[at + len - 1] = len & 0xff; // last byte written: tells the pieces apart
  r.device.pushUsed(r.chain.id, len);
  return r.chain.id;
}

for (const packed of [true, false]) {
  const name = packed ? "packed (in order)" : "split";

  Deno.test(`mergeable ${name}: frames over several buffers, a tail published later`, () => {
    const r = rig(packed);
    try {
      const m = new MergeableReceiver(SIZE, "rx0");
      const bufs = new Uint32Array(SIZE),
        lens = new Uint32Array(SIZE),
        segs = new Uint32Array(SIZE);
      // Frame A: one buffer. Frame B: three, of which two are published first.
      use(r, NET_HDR_SIZE + 100, 1);
      use(r, 2048, 3);
      use(r, 2048, -1);
      r.device.publishUsed();
      assert.equal(m.receive(r.rx, r.pool, bufs, lens, segs, SIZE), 1, "only frame A is whole");
      assert.deepEqual([segs[0], lens[0], m.buffers, m.bytes], [1, 100, 1, 100]);
      r.pool.free(bufs, 0, 1);
      assert.equal(m.receive(r.rx, r.pool, bufs, lens, segs, SIZE), 0, "B still incomplete");
      assert.equal(m.buffers, 0);
      use(r, 500, -1);
      r.device.publishUsed();
      assert.equal(m.receive(r.rx, r.pool, bufs, lens, segs, SIZE), 1, "B complete");
      assert.deepEqual([segs[0], ...lens.subarray(0, 3)], [3, 2048 - NET_HDR_SIZE, 2048, 500]);
      assert.equal(m.bytes, 2048 - NET_HDR_SIZE + 2048 + 500);
      // Each piece is the buffer the device wrote: its last byte marks its length.
      const last = (b: number, len: number) => r.pool.bytes[r.pool.headerOffset(b) + len - 1];
      assert.equal(last(bufs[1], 2048), 2048 & 0xff);
      assert.equal(last(bufs[2], 500), 500 & 0xff);
      r.pool.free(bufs, 0, 3);
    } finally {
      r.memory.close();
    }
  });

  Deno.test(`mergeable ${name}: num_buffers 0 and a frame longer than the arrays are refused`, () => {
    let r = rig(packed);
    try {
      const m = new MergeableReceiver(SIZE, "rx0");
      const bufs = new Uint32Array(SIZE),
        lens = new Uint32Array(SIZE),
        segs = new Uint32Array(SIZE);
      use(r, 64, 0);
      r.device.publishUsed();
      assert.throws(
        () => m.receive(r.rx, r.pool, bufs, lens, segs, SIZE),
        (e: unknown) => e instanceof VirtqueueError && /num_buffers 0.*§5\.1\.6\.4/.test(e.message),
      );
    } finally {
      r.memory.close();
    }
    r = rig(packed);
    try {
      const m = new MergeableReceiver(SIZE, "rx0");
      const bufs = new Uint32Array(4), lens = new Uint32Array(4), segs = new Uint32Array(4);
      use(r, 2048, 5);
      for (let i = 0; i < 4; i++) use(r, 2048, -1);
      r.device.publishUsed();
      assert.equal(m.receive(r.rx, r.pool, bufs, lens, segs, 4), 0, "4 of 5 carried");
      assert.throws(
        () => m.receive(r.rx, r.pool, bufs, lens, segs, 4),
        /more than 4 receive buffers/,
      );
    } finally {
      r.memory.close();
    }
  });
}
