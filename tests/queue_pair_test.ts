/**
 * QueuePair's data path over real rings in one process, a device side written by hand: the
 * buffer ownership rules of the port (submit / deliver / reclaim / takeForPort), txCompleted, and
 * a device that breaks a rule (a used length shorter than the header, num_buffers 0): the pair
 * throws {@linkcode VirtqueueError} with the buffers the failing call took already back in the
 * pool, and `takeInFlight` returns the rest.
 *
 * ```
 *   QueuePair ──txBurst──► tx ring ──► device (this test) ──pushUsed──► reclaimTx
 *             ◄─rxBurst/rxFrames── rx ring ◄── used entries written here ◄──┘
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { closeQuietly } from "../ffi/fd.ts";
import { eventfd } from "../ffi/eventfd.ts";
import { BufferError, BufferPool } from "../lib/driver/buffer_pool.ts";
import { createDriverQueue, ringOffset } from "../lib/driver/driver_queue.ts";
import { QUEUE_STATS_BYTES, QueuePair } from "../lib/driver/queue_pair.ts";
import { SharedMemory } from "../lib/driver/shared_memory.ts";
import { NET_HDR_NUM_BUFFERS, NET_HDR_SIZE } from "../lib/virtio/net_hdr.ts";
import { PackedDeviceQueue, packedRingLayout } from "../lib/virtio/packed_ring.ts";
import { SplitDeviceQueue, splitRingLayout } from "../lib/virtio/split_ring.ts";
import {
  DescriptorChain,
  type DeviceQueue,
  type DriverQueue,
  LocalMemory,
  VirtqueueError,
} from "../lib/virtio/virtqueue.ts";

const SIZE = 16;
const BUFFERS = 64;

interface Rig {
  memory: SharedMemory;
  pool: BufferPool;
  pair: QueuePair;
  rx: DeviceQueue;
  tx: DeviceQueue;
  local: LocalMemory;
  chain: DescriptorChain;
  fds: number[];
}

function deviceSide(memory: SharedMemory, packed: boolean, q: DriverQueue): DeviceQueue {
  const at = ringOffset(memory, packed, SIZE, q.addresses);
  const l = packed ? packedRingLayout(SIZE) : splitRingLayout(SIZE);
  const area = (o: number, n: number) => new Uint8Array(memory.buffer, at + o, n);
  const args = [
    area(l.descOffset, l.descSize),
    area(l.driverOffset, l.driverSize),
    area(l.deviceOffset, l.deviceSize),
    SIZE,
    q.name,
    { memory: new LocalMemory(memory.bytes, memory.addr) },
  ] as const;
  return packed ? new PackedDeviceQueue(...args) : new SplitDeviceQueue(...args);
}

function rig(packed: boolean, mergeable: boolean): Rig {
  const memory = SharedMemory.create(1 << 20, { hugepages: false });
  const pool = new BufferPool(memory, BUFFERS, 2048);
  const rx = createDriverQueue(memory, packed, SIZE, "rx0", pool, false, packed);
  const tx = createDriverQueue(memory, packed, SIZE, "tx0", pool, false, packed);
  const fds = [eventfd(), eventfd()];
  const pair = new QueuePair({
    index: 0,
    rx,
    tx,
    pool,
    rxKickFd: fds[0],
    txKickFd: fds[1],
    rxCallFd: -1,
    source: { counters: new Float64Array(QUEUE_STATS_BYTES / 8) },
    mergeable,
  });
  pair.refill(false); // every receive slot posted, as the port does before DRIVER_OK
  return {
    memory,
    pool,
    pair,
    rx: deviceSide(memory, packed, rx),
    tx: deviceSide(memory, packed, tx),
    local: new LocalMemory(memory.bytes, memory.addr),
    chain: new DescriptorChain(SIZE),
    fds,
  };
}

function done(r: Rig): void {
  r.pair.close();
  for (const fd of r.fds) closeQuietly(fd);
  r.memory.close();
}

/** The device fills the next receive buffer: `len` bytes used, num_buffers set when >= 0. */
function use(r: Rig, len: number, numBuffers = 1): void {
  assert.ok(r.rx.pop(r.chain));
  const at = r.chain.offset[0] + NET_HDR_NUM_BUFFERS;
  const bytes = r.local.bytes(r.chain.region[0]);
  if (numBuffers >= 0) {
    bytes[at] = numBuffers & 0xff;
    bytes[at + 1] = numBuffers >> 8;
  }
  r.rx.pushUsed(r.chain.id, len);
}

for (const packed of [true, false]) {
  const rings = packed ? "packed (in order)" : "split";

  Deno.test(`queue pair ${rings}: ownership checked both ways, txCompleted counted`, () => {
    const r = rig(packed, false);
    try {
      assert.equal(r.pool.available, BUFFERS - SIZE, "the receive ring holds SIZE buffers");
      const bufs = new Uint32Array(SIZE), lens = new Uint32Array(SIZE).fill(60);
      assert.equal(r.pool.alloc(bufs, 0, 4), 4);
      assert.equal(r.pair.txBurst(bufs, lens, 4), 4);
      assert.throws(() => r.pair.txBurst(bufs, lens, 4), BufferError, "sent twice");
      assert.throws(() => r.pool.free(bufs, 0, 4), BufferError, "the port's until used");
      for (let i = 0; i < 4; i++) {
        assert.ok(r.tx.pop(r.chain));
        r.tx.pushUsed(r.chain.id, 0);
      }
      r.tx.publishUsed();
      assert.equal(r.pair.txDrain(1000), 0);
      assert.equal(r.pair.stats.txCompleted, 4);
      assert.equal(r.pair.stats.txPackets, 4);
      assert.equal(r.pool.available, BUFFERS - SIZE, "sent buffers back in the pool");

      use(r, NET_HDR_SIZE + 60);
      use(r, NET_HDR_SIZE + 70);
      r.rx.publishUsed();
      assert.equal(r.pair.rxBurst(bufs, lens, SIZE), 2);
      assert.deepEqual([...lens.subarray(0, 2)], [60, 70]);
      assert.equal(r.pair.stats.rxBytes, 130);
      r.pool.free(bufs, 0, 2); // delivered: the caller's
    } finally {
      done(r);
    }
  });

  Deno.test(`queue pair ${rings}: a used len shorter than the header gives every buffer back`, () => {
    const r = rig(packed, false);
    try {
      const bufs = new Uint32Array(SIZE), lens = new Uint32Array(SIZE);
      use(r, NET_HDR_SIZE + 60);
      use(r, NET_HDR_SIZE + 60);
      use(r, NET_HDR_SIZE - 7);
      r.rx.publishUsed();
      assert.throws(
        () => r.pair.rxBurst(bufs, lens, SIZE),
        (e: unknown) =>
          e instanceof VirtqueueError && e.dequeued === 3 &&
          /shorter than the 12-byte/.test(e.message),
      );
      assert.equal(r.pair.faultQueue, "rx0");
      assert.equal(r.pool.available, BUFFERS - SIZE + 3, "the 3 taken are back, not the caller's");
      assert.throws(() => r.pool.free(bufs, 0, 1), BufferError, "not handed to the caller");
      r.pair.takeInFlight();
      assert.equal(r.pool.available, BUFFERS, "every buffer back");
    } finally {
      done(r);
    }
  });

  Deno.test(`queue pair ${rings} mergeable: num_buffers 0 gives a carried frame's buffers back`, () => {
    const r = rig(packed, true);
    try {
      const bufs = new Uint32Array(SIZE),
        lens = new Uint32Array(SIZE),
        segs = new Uint32Array(SIZE);
      use(r, 2048, 3); // a frame of three, two of them used now
      use(r, 2048, -1);
      r.rx.publishUsed();
      assert.equal(r.pair.rxFrames(bufs, lens, segs, SIZE), 0, "the frame is carried");
      use(r, 500, -1);
      use(r, 64, 0); // num_buffers 0 breaks §5.1.6.4
      r.rx.publishUsed();
      assert.throws(
        () => r.pair.rxFrames(bufs, lens, segs, SIZE),
        (e: unknown) => e instanceof VirtqueueError && /num_buffers 0/.test(e.message),
      );
      assert.equal(r.pool.available, BUFFERS - SIZE + 4, "carried 2, taken 2: all back");
      r.pair.takeInFlight();
      assert.equal(r.pool.available, BUFFERS);
    } finally {
      done(r);
    }
  });
}
