/**
 * Driver + device loopback over one ring in one thread: per-burst cost of the ring code alone
 * (no packet copies, no syscalls). One iteration = enqueue 32, needsNotify, pop 32, pushUsed 32,
 * publishUsed, needsCall, dequeue 32.
 *
 * ```
 *   DriverQueue.enqueue ──► ring ──► DeviceQueue.pop/pushUsed/publishUsed ──► ring ──► dequeue
 * ```
 *
 * Run: `deno bench bench/ring_bench.ts`. Mpps-equivalent = 32 / (time per iteration in µs).
 *
 * @module
 */

import {
  PackedDeviceQueue,
  PackedDriverQueue,
  packedRingLayout,
} from "../lib/virtio/packed_ring.ts";
import { BufferPool } from "../lib/driver/buffer_pool.ts";
import { SharedMemory } from "../lib/driver/shared_memory.ts";
import { SplitDeviceQueue, SplitDriverQueue, splitRingLayout } from "../lib/virtio/split_ring.ts";
import {
  DescriptorChain,
  type DeviceQueue,
  type DriverQueue,
  LocalMemory,
  type RingLayout,
} from "../lib/virtio/virtqueue.ts";

const SIZE = 256;
const BURST = 32;
const BUF_SIZE = 2048;
const BASE = 0x10000000;

interface Loop {
  driver: DriverQueue;
  device: DeviceQueue;
}

function build(packed: boolean, eventIdx: boolean): Loop {
  const l: RingLayout = packed ? packedRingLayout(SIZE) : splitRingLayout(SIZE);
  const mem = new Uint8Array(l.byteLength + SIZE * BUF_SIZE);
  const addrLo = new Uint32Array(SIZE), addrHi = new Uint32Array(SIZE);
  for (let b = 0; b < SIZE; b++) addrLo[b] = BASE + l.byteLength + b * BUF_SIZE;
  const desc = mem.subarray(l.descOffset, l.descOffset + l.descSize);
  const drv = mem.subarray(l.driverOffset, l.driverOffset + l.driverSize);
  const dev = mem.subarray(l.deviceOffset, l.deviceOffset + l.deviceSize);
  const addresses = {
    desc: BASE + l.descOffset,
    driver: BASE + l.driverOffset,
    device: BASE + l.deviceOffset,
  };
  const buffers = { addrLo, addrHi };
  const memory = new LocalMemory(mem, BASE);
  if (packed) {
    return {
      driver: new PackedDriverQueue(desc, drv, dev, SIZE, "bench", {
        buffers,
        addresses,
        eventIdx,
      }),
      device: new PackedDeviceQueue(desc, drv, dev, SIZE, "bench", { memory, eventIdx }),
    };
  }
  return {
    driver: new SplitDriverQueue(desc, drv, dev, SIZE, "bench", { buffers, addresses, eventIdx }),
    device: new SplitDeviceQueue(desc, drv, dev, SIZE, "bench", { memory, eventIdx }),
  };
}

/** Returns a function that moves one burst around the loop. */
export function loopback(packed: boolean, eventIdx = false): () => void {
  const { driver, device } = build(packed, eventIdx);
  const chain = new DescriptorChain(SIZE);
  const bufs = new Uint32Array(BURST), lens = new Uint32Array(BURST).fill(60);
  for (let i = 0; i < BURST; i++) bufs[i] = i;
  const outB = new Uint32Array(BURST), outL = new Uint32Array(BURST);
  device.setNotifications(false); // poll mode, as DPDK's vhost PMD runs
  return () => {
    driver.enqueue(bufs, lens, 0, BURST, false);
    driver.needsNotify();
    while (device.pop(chain)) device.pushUsed(chain.id, 0);
    device.publishUsed();
    device.needsCall();
    if (driver.dequeue(outB, outL, BURST) !== BURST) throw new Error("loopback lost buffers");
  };
}

const packedBurst = loopback(true);
const splitBurst = loopback(false);
const packedEventBurst = loopback(true, true);
const splitEventBurst = loopback(false, true);

Deno.bench({ name: "packed ring: burst of 32 round trip", group: "ring", baseline: true }, () => {
  packedBurst();
});
Deno.bench({ name: "split ring: burst of 32 round trip", group: "ring" }, () => {
  splitBurst();
});
Deno.bench({ name: "packed ring, event index: burst of 32", group: "ring" }, () => {
  packedEventBurst();
});
Deno.bench({ name: "split ring, event index: burst of 32", group: "ring" }, () => {
  splitEventBurst();
});

const poolMemory = SharedMemory.create(SIZE * BUF_SIZE + 4096, { hugepages: false });
const pool = new BufferPool(poolMemory, SIZE, BUF_SIZE);
const poolBufs = new Uint32Array(BURST);

Deno.bench({ name: "buffer pool: alloc + free a burst of 32", group: "pool" }, () => {
  const n = pool.alloc(poolBufs, 0, BURST);
  pool.free(poolBufs, 0, n);
});
