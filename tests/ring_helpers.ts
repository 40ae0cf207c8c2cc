/**
 * What split_ring_test.ts and packed_ring_test.ts share: a driver and a device queue of one layout
 * over one local memory, and drivers that move buffers through them and check every buffer number
 * and length. Everything here goes through the {@linkcode DriverQueue} / {@linkcode DeviceQueue}
 * interfaces, so it runs the same on both layouts; what a hostile peer writes into the rings by
 * hand is layout-specific and stays in each test file.
 *
 * ```
 *   laps / pipelined ──enqueue──► DriverQueue ──ring in mem──► DeviceQueue.pop ──pushUsed──┐
 *                    ◄─dequeue──────────────────────────────────────────────────────────────┘
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  type BufferTable,
  DescriptorChain,
  type DeviceQueue,
  type DriverQueue,
  LocalMemory,
  type QueueAddresses,
  type RingLayout,
  VirtqueueError,
} from "../lib/virtio/virtqueue.ts";
import { assertEquals, assertStrictEquals, assertThrows } from "./helpers.ts";
import { ringOffset } from "../lib/driver/driver_queue.ts";
import type { SharedMemory } from "../lib/driver/shared_memory.ts";
import { PackedDeviceQueue, packedRingLayout } from "../lib/virtio/packed_ring.ts";
import { SplitDeviceQueue, splitRingLayout } from "../lib/virtio/split_ring.ts";

/** Address of `mem[0]` as the queues see it. */
export const BASE = 0x10000000;
/** Bytes per packet buffer. */
export const BUF_SIZE = 2048;
/** Room after the buffers for hand-made indirect tables. */
export const SCRATCH = 4096;
/** Descriptor flags (§2.7.5, §2.8.13), as short names for the tests. */
export {
  DESC_F_INDIRECT as INDIRECT,
  DESC_F_NEXT as NEXT,
  DESC_F_WRITE as WRITE,
} from "../lib/virtio/descriptor.ts";

/** Options of the driver queue constructors, as {@linkcode makeRing} passes them. */
export interface TestDriverOptions {
  buffers: BufferTable;
  addresses: QueueAddresses;
  eventIdx?: boolean;
  base?: number;
  inOrder?: boolean;
}

/** Options of the device queue constructors, as {@linkcode makeRing} passes them. */
export interface TestDeviceOptions {
  memory: LocalMemory;
  eventIdx?: boolean;
  base?: number;
}

/** One ring layout: how big its areas are and its two queue classes. */
export interface RingKind<D extends DriverQueue, V extends DeviceQueue> {
  layout(size: number): RingLayout;
  Driver: new (
    desc: Uint8Array,
    driver: Uint8Array,
    device: Uint8Array,
    size: number,
    name: string,
    opts: TestDriverOptions,
  ) => D;
  Device: new (
    desc: Uint8Array,
    driver: Uint8Array,
    device: Uint8Array,
    size: number,
    name: string,
    opts: TestDeviceOptions,
  ) => V;
}

/** How {@linkcode makeRing} sets a ring up. */
export interface RingOptions {
  eventIdx?: boolean;
  /** Starting position (SET_VRING_BASE). */
  base?: number;
  /** Address of `mem[0]` (default {@linkcode BASE}). */
  addr?: number;
  /** Packet buffers (default twice the ring size). */
  nbufs?: number;
  inOrder?: boolean;
}

/** A driver and a device queue over one memory: rings, then buffers, then scratch space. */
export interface TestRing<
  D extends DriverQueue = DriverQueue,
  V extends DeviceQueue = DeviceQueue,
> {
  mem: Uint8Array;
  layout: RingLayout;
  driver: D;
  device: V;
  chain: DescriptorChain;
  size: number;
  /** Byte offset of buffer 0 in `mem`. */
  bufStart: number;
  nbufs: number;
  /** Byte offset of the scratch area in `mem`. */
  scratch: number;
  base: number;
  /** Views of the descriptor ring, as a hostile driver or device would write it. */
  d32: Uint32Array;
  d16: Uint16Array;
}

/** Builds a driver queue and a device queue named `name` of `kind` over one fresh memory. */
export function makeRing<D extends DriverQueue, V extends DeviceQueue>(
  kind: RingKind<D, V>,
  size: number,
  name: string,
  opts: RingOptions,
): TestRing<D, V> {
  const base = opts.addr ?? BASE;
  const l = kind.layout(size);
  const nbufs = opts.nbufs ?? 2 * size;
  const bufStart = l.byteLength;
  const scratch = bufStart + nbufs * BUF_SIZE;
  const mem = new Uint8Array(scratch + SCRATCH);
  const addrLo = new Uint32Array(nbufs);
  const addrHi = new Uint32Array(nbufs);
  for (let b = 0; b < nbufs; b++) {
    const a = base + bufStart + b * BUF_SIZE;
    addrLo[b] = a % 0x1_0000_0000;
    addrHi[b] = Math.floor(a / 0x1_0000_0000);
  }
  const desc = mem.subarray(l.descOffset, l.descOffset + l.descSize);
  const drv = mem.subarray(l.driverOffset, l.driverOffset + l.driverSize);
  const dev = mem.subarray(l.deviceOffset, l.deviceOffset + l.deviceSize);
  const driver = new kind.Driver(desc, drv, dev, size, name, {
    buffers: { addrLo, addrHi },
    addresses: {
      desc: base + l.descOffset,
      driver: base + l.driverOffset,
      device: base + l.deviceOffset,
    },
    eventIdx: opts.eventIdx,
    base: opts.base,
    inOrder: opts.inOrder,
  });
  const device = new kind.Device(desc, drv, dev, size, name, {
    memory: new LocalMemory(mem, base),
    eventIdx: opts.eventIdx,
    base: opts.base,
  });
  return {
    mem,
    layout: l,
    driver,
    device,
    chain: new DescriptorChain(size),
    size,
    bufStart,
    nbufs,
    scratch,
    base,
    d32: new Uint32Array(mem.buffer, l.descOffset, size * 4),
    d16: new Uint16Array(mem.buffer, l.descOffset, size * 8),
  };
}

/** The buffer number a popped single-segment chain points at. */
export function bufOf(r: TestRing): number {
  assertEquals(r.chain.count, 1);
  assertEquals(r.chain.region[0], 0);
  const off = r.chain.offset[0] - r.bufStart;
  assertEquals(off % BUF_SIZE, 0);
  return off / BUF_SIZE;
}

/** Length the device reports for buffer `b` (varies so mix-ups show). */
export const usedLen = (b: number): number => 60 + (b * 37) % 1400;

/**
 * Drives `total` packets through the ring in bursts taken from `bursts`, with writable buffers;
 * the device completes every other burst in reverse order. Checks buffer numbers and lengths.
 */
export function laps(r: TestRing, total: number, bursts: number[]): void {
  const free: number[] = [];
  for (let b = r.nbufs - 1; b >= 0; b--) free.push(b);
  const bufs = new Uint32Array(r.size), lens = new Uint32Array(r.size);
  const outB = new Uint32Array(r.size), outL = new Uint32Array(r.size);
  let sent = 0;
  let round = 0;
  while (sent < total) {
    const want = Math.min(bursts[round % bursts.length], total - sent, r.size);
    for (let i = 0; i < want; i++) {
      bufs[i] = free.pop()!;
      lens[i] = BUF_SIZE;
    }
    const added = r.driver.enqueue(bufs, lens, 0, want, true);
    assertEquals(added, want);
    const popped: number[] = [];
    while (r.device.pop(r.chain)) {
      assertEquals(r.chain.writable[0], 1);
      assertEquals(r.chain.len[0], BUF_SIZE);
      popped.push(r.chain.id, bufOf(r));
    }
    assertEquals(popped.length, 2 * want);
    const order: number[] = [];
    for (let i = 0; i < want; i++) order.push(round % 2 === 0 ? i : want - 1 - i);
    for (const i of order) r.device.pushUsed(popped[2 * i], usedLen(popped[2 * i + 1]));
    r.device.publishUsed();
    const n = r.driver.dequeue(outB, outL, r.size);
    assertEquals(n, want);
    for (let k = 0; k < n; k++) {
      const expected = popped[2 * order[k] + 1];
      assertStrictEquals(outB[k], expected);
      assertStrictEquals(outL[k], usedLen(expected));
      free.push(outB[k]);
    }
    assertEquals(r.driver.numFree, r.size);
    assertEquals(r.driver.base, r.device.base);
    sent += want;
    round++;
  }
}

/**
 * Keeps the ring busy with the device lagging: each round the driver adds what fits, the device
 * takes a few chains and completes a few of those it holds (newest first every third round), the
 * driver takes back a few. Checks every buffer number and length in completion order.
 */
export function pipelined(r: TestRing, total: number): void {
  const free: number[] = [];
  for (let b = r.nbufs - 1; b >= 0; b--) free.push(b);
  const held: number[] = []; // [id, buf] pairs the device popped
  const expected: number[] = []; // bufs in used order
  const bufs = new Uint32Array(r.size), lens = new Uint32Array(r.size);
  const outB = new Uint32Array(r.size), outL = new Uint32Array(r.size);
  let enqueued = 0, done = 0, round = 0;
  while (done < total) {
    const want = Math.min(1 + (round * 7) % 40, r.driver.numFree, total - enqueued);
    for (let i = 0; i < want; i++) {
      bufs[i] = free.pop()!;
      lens[i] = BUF_SIZE;
    }
    assertEquals(r.driver.enqueue(bufs, lens, 0, want, true), want);
    enqueued += want;
    for (let p = 1 + (round * 5) % 23; p > 0 && r.device.pop(r.chain); p--) {
      held.push(r.chain.id, bufOf(r));
    }
    let c = Math.min(1 + (round * 3) % 17, held.length / 2);
    while (c-- > 0) {
      const at = round % 3 === 0 ? held.length - 2 : 0;
      const [id, buf] = held.splice(at, 2);
      r.device.pushUsed(id, usedLen(buf));
      expected.push(buf);
    }
    r.device.publishUsed();
    const n = r.driver.dequeue(outB, outL, 1 + (round * 11) % 29);
    for (let k = 0; k < n; k++) {
      const buf = expected.shift();
      assertStrictEquals(outB[k], buf);
      assertStrictEquals(outL[k], usedLen(buf!));
      free.push(outB[k]);
    }
    done += n;
    round++;
    assert(round < 100 * total, "no progress");
  }
  assertEquals(r.driver.numFree, r.size);
}

/** Buffer 2 of a ring whose memory starts at 0x7f12_3450_0000 round-trips with both halves. */
export function highAddressRoundTrip(r: TestRing): void {
  r.driver.enqueue(new Uint32Array([2]), new Uint32Array([77]), 0, 1, true);
  assertEquals(r.d32[1], 0x7f12);
  assert(r.device.pop(r.chain));
  assertEquals(bufOf(r), 2);
  r.device.pushUsed(r.chain.id, 50);
  r.device.publishUsed();
  const outB = new Uint32Array(4), outL = new Uint32Array(4);
  assertEquals(r.driver.dequeue(outB, outL, 4), 1);
  assertEquals([outB[0], outL[0]], [2, 50]);
}

/**
 * Fills a fresh ring from 8 buffers (enqueue takes `r.size` of them, then none), completes and
 * takes them back, then checks that enqueue honours its offset.
 */
export function fullRing(r: TestRing): void {
  const size = r.size;
  const bufs = new Uint32Array([0, 1, 2, 3, 4, 5, 6, 7]);
  const lens = new Uint32Array(8).fill(100);
  assertEquals(r.driver.enqueue(bufs, lens, 0, 8, true), size);
  assertEquals(r.driver.numFree, 0);
  assertEquals(r.driver.enqueue(bufs, lens, size, 8 - size, true), 0);
  let popped = 0;
  while (r.device.pop(r.chain)) {
    popped++;
    r.device.pushUsed(r.chain.id, 10);
  }
  assertEquals(popped, size);
  r.device.publishUsed();
  const outB = new Uint32Array(8), outL = new Uint32Array(8);
  assertEquals(r.driver.dequeue(outB, outL, 8), size);
  assertEquals([...outB.subarray(0, size)], Array.from({ length: size }, (_, i) => i));
  assertEquals(r.driver.enqueue(bufs, lens, 5, 3, true), 3, "offset is honoured");
  assert(r.device.pop(r.chain));
  assertEquals(bufOf(r), 5);
}

/** Completes 4 buffers of a fresh 8-entry ring out of order, reusing ids while others are out. */
export function outOfOrderCompletion(r: TestRing): void {
  const lens = new Uint32Array(4).fill(1000);
  r.driver.enqueue(new Uint32Array([10, 11, 12, 13]), lens, 0, 4, true);
  const ids: number[] = [];
  while (r.device.pop(r.chain)) ids.push(r.chain.id);
  // Complete 2, 0 now; 3, 1 later.
  r.device.pushUsed(ids[2], 200);
  r.device.pushUsed(ids[0], 100);
  r.device.publishUsed();
  const outB = new Uint32Array(8), outL = new Uint32Array(8);
  assertEquals(r.driver.dequeue(outB, outL, 8), 2);
  assertEquals([...outB.subarray(0, 2)], [12, 10]);
  assertEquals([...outL.subarray(0, 2)], [200, 100]);
  // Reuse the two freed ids while 3 and 1 are still out.
  r.driver.enqueue(new Uint32Array([6, 7]), lens, 0, 2, true);
  while (r.device.pop(r.chain)) ids.push(r.chain.id);
  assertEquals(ids.length, 6);
  for (const i of [3, 5, 1, 4]) r.device.pushUsed(ids[i], 300 + i);
  r.device.publishUsed();
  assertEquals(r.driver.dequeue(outB, outL, 8), 4);
  assertEquals([...outB.subarray(0, 4)], [13, 7, 11, 6]);
  assertEquals([...outL.subarray(0, 4)], [303, 305, 301, 304]);
  assertEquals(r.driver.numFree, 8);
}

/** Puts two writable buffers (100 bytes) of a fresh ring in flight; the device pops both. */
export function twoInFlight<R extends TestRing>(r: R): R {
  r.driver.enqueue(new Uint32Array([0, 1]), new Uint32Array([100, 100]), 0, 2, true);
  assert(r.device.pop(r.chain));
  assert(r.device.pop(r.chain));
  return r;
}

/** The driver rejects a used length beyond the 100 bytes it posted ({@linkcode twoInFlight}). */
export function rejectsUsedLenBeyondBuffer(r: TestRing): void {
  r.device.pushUsed(1, 101);
  r.device.publishUsed();
  const out = new Uint32Array(8);
  assertThrows(
    () => r.driver.dequeue(out, out, 8),
    VirtqueueError,
    "id 1 len 101 exceeds the 100 bytes the buffer holds",
  );
}

/**
 * Three writable buffers (100 bytes) of a fresh ring come back, the last one with a length
 * beyond its buffer: dequeue throws, and the buffers it took before the bad entry are in
 * `bufs` / `lens`, counted by the error's `dequeued`; the queue stays at the bad entry.
 */
export function keepsTakenOnError(r: TestRing): void {
  r.driver.enqueue(new Uint32Array([4, 5, 6]), new Uint32Array(3).fill(100), 0, 3, true);
  const ids: number[] = [];
  while (r.device.pop(r.chain)) ids.push(r.chain.id);
  assertEquals(ids.length, 3);
  r.device.pushUsed(ids[0], 10);
  r.device.pushUsed(ids[1], 20);
  r.device.pushUsed(ids[2], 101);
  r.device.publishUsed();
  const outB = new Uint32Array(8), outL = new Uint32Array(8);
  const e = dequeueError(r, outB, outL, `id ${ids[2]} len 101 exceeds the 100 bytes`);
  assertEquals(e.dequeued, 2);
  assertEquals([...outB.subarray(0, 2)], [4, 5]);
  assertEquals([...outL.subarray(0, 2)], [10, 20]);
  assertEquals(r.driver.numFree, r.size - 1, "the bad entry's buffer stays in flight");
  assertEquals(dequeueError(r, outB, outL, "len 101").dequeued, 0, "read again, nothing taken");
}

/** The {@linkcode VirtqueueError} `r.driver.dequeue` throws; its message contains `includes`. */
export function dequeueError(
  r: TestRing,
  bufs: Uint32Array,
  lens: Uint32Array,
  includes: string,
): VirtqueueError {
  let err: unknown;
  try {
    r.driver.dequeue(bufs, lens, bufs.length);
  } catch (e) {
    err = e;
  }
  assert(err instanceof VirtqueueError, `expected VirtqueueError, got ${err}`);
  assert(err.message.includes(includes), `"${err.message}" does not contain "${includes}"`);
  return err;
}

/** `setup` writes into `r` as a hostile driver would; the device's next pop throws `message`. */
export function hostilePop<R extends TestRing>(
  r: R,
  setup: (r: R, b: (n: number) => number) => void,
  message: string,
): void {
  setup(r, (n) => r.base + r.bufStart + n * BUF_SIZE);
  assertThrows(() => r.device.pop(r.chain), VirtqueueError, message);
}

/** Buffer 0, as a one-entry burst. */
export const one = new Uint32Array([0]);
/** Length 100, as a one-entry burst. */
export const len100 = new Uint32Array([100]);

/** Enqueue one buffer, let the device complete it, dequeue it. */
export function cycle(r: TestRing): void {
  r.driver.enqueue(one, len100, 0, 1, true);
  assert(r.device.pop(r.chain));
  r.device.pushUsed(r.chain.id, 1);
  r.device.publishUsed();
  const out = new Uint32Array(1);
  assertEquals(r.driver.dequeue(out, new Uint32Array(1), 1), 1);
}

/**
 * The device queue over the ring areas of `driver` (a driver queue of `size` built in `memory`
 * by `createDriverQueue`), translating through a {@linkcode LocalMemory} of the whole memory.
 */
export function deviceQueueOf(
  memory: SharedMemory,
  packed: boolean,
  size: number,
  name: string,
  driver: DriverQueue,
): { device: DeviceQueue; local: LocalMemory } {
  const at = ringOffset(memory, packed, size, driver.addresses);
  const l = packed ? packedRingLayout(size) : splitRingLayout(size);
  const area = (o: number, n: number) => new Uint8Array(memory.buffer, at + o, n);
  const local = new LocalMemory(memory.bytes, memory.addr);
  const args = [
    area(l.descOffset, l.descSize),
    area(l.driverOffset, l.driverSize),
    area(l.deviceOffset, l.deviceSize),
    size,
    name,
    { memory: local },
  ] as const;
  const device = packed ? new PackedDeviceQueue(...args) : new SplitDeviceQueue(...args);
  return { device, local };
}
