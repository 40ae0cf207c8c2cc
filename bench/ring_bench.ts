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
 * The `packed ring, one step` and `split ring, one step` groups time each operation alone.
 *
 * @module
 */

import {
  PackedDeviceQueue,
  PackedDriverQueue,
  packedRingLayout,
} from "../lib/virtio/packed_ring.ts";
import { BufferPool } from "../lib/driver/buffer_pool.ts";
import { Relay, relayStats } from "../lib/device/relay.ts";
import { NET_HDR_SIZE } from "../lib/virtio/net_hdr.ts";
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
  memory: LocalMemory;
}

function build(
  packed: boolean,
  eventIdx: boolean,
  size = SIZE,
  bufSize = BUF_SIZE,
  within?: Uint8Array,
): Loop {
  const l: RingLayout = packed ? packedRingLayout(size) : splitRingLayout(size);
  const mem = within ?? new Uint8Array(l.byteLength + size * bufSize);
  const addrLo = new Uint32Array(size), addrHi = new Uint32Array(size);
  for (let b = 0; b < size; b++) addrLo[b] = BASE + l.byteLength + b * bufSize;
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
      driver: new PackedDriverQueue(desc, drv, dev, size, "bench", {
        buffers,
        addresses,
        eventIdx,
      }),
      device: new PackedDeviceQueue(desc, drv, dev, size, "bench", { memory, eventIdx }),
      memory,
    };
  }
  return {
    driver: new SplitDriverQueue(desc, drv, dev, size, "bench", { buffers, addresses, eventIdx }),
    device: new SplitDeviceQueue(desc, drv, dev, size, "bench", { memory, eventIdx }),
    memory,
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

Deno.bench({
  name: "packed ring: burst of 32 round trip",
  group: "ring, burst of 32 round trip (ns per burst)",
  baseline: true,
}, () => {
  packedBurst();
});
Deno.bench({
  name: "split ring: burst of 32 round trip",
  group: "ring, burst of 32 round trip (ns per burst)",
}, () => {
  splitBurst();
});
Deno.bench({
  name: "packed ring, event index: burst of 32",
  group: "ring, burst of 32 round trip (ns per burst)",
}, () => {
  packedEventBurst();
});
Deno.bench({
  name: "split ring, event index: burst of 32",
  group: "ring, burst of 32 round trip (ns per burst)",
}, () => {
  splitEventBurst();
});

/**
 * Per-descriptor cost of each ring operation, packed and split. An iteration fills a 4096-entry
 * ring and empties it again, in bursts of 32, but times only one step (`b.start()` /
 * `b.end()`: Deno honours them from 10 µs per iteration, hence the large ring), so a figure is
 * that step for 4096 descriptors. The steps: the driver adds buffers to the available ring
 * (enqueue, one publish per burst), the device pops the chains, the device marks them used
 * (pushUsed, one publishUsed per burst), the driver takes them back (dequeue).
 */
type Step = "enqueue" | "pop" | "pushUsed" | "dequeue";
const STEPS: readonly Step[] = ["enqueue", "pop", "pushUsed", "dequeue"];
/** Descriptors per iteration of a step benchmark. */
export const STEP_DESCRIPTORS = 4096;

function stepBench(packed: boolean, step: Step): (b: Deno.BenchContext) => void {
  const { driver, device } = build(packed, false, STEP_DESCRIPTORS, 64);
  const chain = new DescriptorChain(STEP_DESCRIPTORS);
  const bufs = new Uint32Array(STEP_DESCRIPTORS);
  const lens = new Uint32Array(STEP_DESCRIPTORS).fill(60);
  for (let i = 0; i < STEP_DESCRIPTORS; i++) bufs[i] = i;
  const ids = new Uint16Array(STEP_DESCRIPTORS);
  const outB = new Uint32Array(BURST), outL = new Uint32Array(BURST);
  device.setNotifications(false);
  const enqueue = () => {
    for (let at = 0; at < STEP_DESCRIPTORS; at += BURST) {
      driver.enqueue(bufs, lens, at, BURST, false);
    }
  };
  return (b) => {
    if (step === "enqueue") b.start();
    enqueue();
    if (step === "enqueue") b.end();
    if (step === "pop") b.start();
    let n = 0;
    while (device.pop(chain)) ids[n++] = chain.id;
    if (step === "pop") b.end();
    if (step === "pushUsed") b.start();
    for (let at = 0; at < n; at += BURST) {
      for (let i = at; i < at + BURST; i++) device.pushUsed(ids[i], 0);
      device.publishUsed();
    }
    if (step === "pushUsed") b.end();
    if (step === "dequeue") b.start();
    let got = 0;
    for (let k = 0; k < STEP_DESCRIPTORS / BURST; k++) got += driver.dequeue(outB, outL, BURST);
    if (step === "dequeue") b.end();
    if (n !== STEP_DESCRIPTORS || got !== n) {
      throw new Error(`loopback lost buffers (${n}, ${got})`);
    }
  };
}

for (const packed of [true, false]) {
  const ring = packed ? "packed" : "split";
  for (const step of STEPS) {
    Deno.bench({
      name: `${ring}: ${step}, ${STEP_DESCRIPTORS} descriptors in bursts of 32 ` +
        `(ns/descriptor = time / ${STEP_DESCRIPTORS})`,
      group: `${ring} ring, one step per descriptor`,
      baseline: step === "enqueue",
      fn: stepBench(packed, step),
    });
  }
}

/**
 * What one acquire load or release store costs: the descriptors' flags words of a 4096-entry
 * packed ring read (written) with `Atomics.load` (`Atomics.store`) against plain element
 * accesses. V8 compiles every `Atomics` operation to a call into a builtin, where C's acquire
 * load and release store are a plain `mov` on x86: a packed ring's pop and (without IN_ORDER)
 * dequeue pay one such load per descriptor (each descriptor's flags say whether it is ready,
 * §2.8.1), a split ring one per burst (the index).
 */
const FLAGS = STEP_DESCRIPTORS;
const flagsMemory = SharedMemory.create(16 * FLAGS, { hugepages: false });
const flags16 = new Uint16Array(flagsMemory.bytes.buffer, flagsMemory.bytes.byteOffset, 8 * FLAGS);
let flagsSum = 0;
const access = {
  "Atomics.load": () => {
    let s = 0;
    for (let i = 0; i < FLAGS; i++) s += Atomics.load(flags16, (i << 3) + 7);
    flagsSum += s;
  },
  "plain load": () => {
    let s = 0;
    for (let i = 0; i < FLAGS; i++) s += flags16[(i << 3) + 7];
    flagsSum += s;
  },
  "Atomics.store": () => {
    for (let i = 0; i < FLAGS; i++) Atomics.store(flags16, (i << 3) + 7, i);
  },
  "plain store": () => {
    for (let i = 0; i < FLAGS; i++) flags16[(i << 3) + 7] = i;
  },
};
for (const [name, fn] of Object.entries(access)) {
  Deno.bench({
    name: `${name} of ${FLAGS} descriptors' flags (ns/access = time / ${FLAGS})`,
    group: "flags access, acquire/release vs plain (ns per access)",
    baseline: name === "plain load",
    fn,
  });
}

/**
 * The forwarder's per-frame work alone (`Relay.burst`, as `device.ts --mode forward` runs it):
 * pop a chain from port A's transmitq, pop one from port B's receiveq, write a fresh header and
 * copy the frame from A's memory into B's, push both used, one publish per ring and burst. One
 * thread, so no cache line moves between cores: set against the matrix's forwarding row this
 * separates the instructions from the cost of sharing the rings and buffers with another core.
 * An iteration relays a 4096-entry ring in bursts of 32 and times only the relay. `arena`: the
 * two ports' memories are two halves of one buffer, as `ForwardDevice` maps them (a frame is one
 * `copyWithin`); else two buffers (a loop over words).
 */
function relayBench(
  packed: boolean,
  frame: number,
  arena: boolean,
): (b: Deno.BenchContext) => void {
  const n = STEP_DESCRIPTORS;
  const half = (packed ? packedRingLayout(n) : splitRingLayout(n)).byteLength + n * BUF_SIZE;
  const one = arena ? new Uint8Array(2 * half) : undefined;
  const a = build(packed, false, n, BUF_SIZE, one?.subarray(0, half));
  const z = build(packed, false, n, BUF_SIZE, one?.subarray(half));
  const src = { rx: a.device, tx: a.device, rxCall: -1, txCall: -1 };
  const dst = { rx: z.device, tx: z.device, rxCall: -1, txCall: -1 };
  const bufs = new Uint32Array(n), txLens = new Uint32Array(n).fill(NET_HDR_SIZE + frame);
  const rxLens = new Uint32Array(n).fill(BUF_SIZE);
  for (let i = 0; i < n; i++) bufs[i] = i;
  const outB = new Uint32Array(BURST), outL = new Uint32Array(BURST);
  const relay = new Relay(), stats = relayStats();
  a.device.setNotifications(false);
  z.device.setNotifications(false);
  return (b) => {
    for (let at = 0; at < n; at += BURST) {
      a.driver.enqueue(bufs, txLens, at, BURST, false);
      z.driver.enqueue(bufs, rxLens, at, BURST, true);
    }
    let moved = 0;
    b.start();
    for (let k = 0; k < n / BURST; k++) {
      moved += relay.burst(a.memory, src, z.memory, dst, false, BURST, stats, false);
    }
    b.end();
    let got = 0;
    for (let k = 0; k < n / BURST; k++) {
      got += a.driver.dequeue(outB, outL, BURST);
      z.driver.dequeue(outB, outL, BURST);
    }
    if (moved !== n || got !== n) throw new Error(`relay lost frames (${moved}, ${got})`);
  };
}

for (const frame of [64, 1518]) {
  for (const packed of [true, false]) {
    for (const arena of [true, false]) {
      Deno.bench({
        name: `relay ${packed ? "packed" : "split"}, ${frame} B, ` +
          `${arena ? "one arena" : "two buffers"}: ${STEP_DESCRIPTORS} frames in bursts of 32 ` +
          `(ns/frame = time / ${STEP_DESCRIPTORS})`,
        group: "forwarding, one thread (ns per frame)",
        baseline: packed && frame === 64 && arena,
        fn: relayBench(packed, frame, arena),
      });
    }
  }
}

const poolMemory = SharedMemory.create(SIZE * BUF_SIZE + 4096, { hugepages: false });
const pool = new BufferPool(poolMemory, SIZE, BUF_SIZE);
const poolBufs = new Uint32Array(BURST);

Deno.bench({
  name: "buffer pool: alloc + free a burst of 32",
  group: "buffer pool (ns per burst of 32)",
}, () => {
  const n = pool.alloc(poolBufs, 0, BURST);
  pool.free(poolBufs, 0, n);
});
