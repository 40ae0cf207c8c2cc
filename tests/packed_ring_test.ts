import assert from "node:assert/strict";
import {
  PackedDeviceQueue,
  PackedDriverQueue,
  packedRingLayout,
} from "../lib/virtio/packed_ring.ts";
import { LocalMemory, VirtqueueError } from "../lib/virtio/virtqueue.ts";
import { assertEquals, assertStrictEquals, assertThrows } from "./helpers.ts";
import {
  BASE,
  BUF_SIZE,
  bufOf,
  cycle,
  dequeueError,
  fullRing,
  highAddressRoundTrip,
  hostilePop,
  INDIRECT,
  keepsTakenOnError,
  laps,
  len100,
  makeRing,
  NEXT,
  one,
  outOfOrderCompletion,
  pipelined,
  rejectsUsedLenBeyondBuffer,
  type RingKind,
  type RingOptions,
  SCRATCH,
  type TestRing,
  twoInFlight,
  WRITE,
} from "./ring_helpers.ts";

const AVAIL = 1 << 7;
const USED = 1 << 15;

const PACKED: RingKind<PackedDriverQueue, PackedDeviceQueue> = {
  layout: packedRingLayout,
  Driver: PackedDriverQueue,
  Device: PackedDeviceQueue,
};

interface Ring extends TestRing<PackedDriverQueue, PackedDeviceQueue> {
  /** Device event suppression word (off_wrap | flags << 16). */
  deviceEvent: Uint32Array;
  driverEvent: Uint32Array;
}

function ring(size: number, opts: RingOptions = {}): Ring {
  const r = makeRing(PACKED, size, "rx0", opts);
  return {
    ...r,
    deviceEvent: new Uint32Array(r.mem.buffer, r.layout.deviceOffset, 1),
    driverEvent: new Uint32Array(r.mem.buffer, r.layout.driverOffset, 1),
  };
}

Deno.test("packed layout: areas aligned, sizes per §2.8", () => {
  for (const size of [1, 3, 255, 256, 1000, 32768]) {
    const l = packedRingLayout(size);
    assertEquals(l.descOffset, 0);
    assertEquals(l.descSize, 16 * size);
    assertEquals(l.driverSize, 4);
    assertEquals(l.deviceSize, 4);
    assertEquals(l.driverOffset % 64, 0);
    assertEquals(l.deviceOffset % 64, 0);
    assert(l.driverOffset >= l.descSize);
    assert(l.deviceOffset >= l.driverOffset + 4);
    assert(l.byteLength >= l.deviceOffset + 4);
  }
  assertThrows(
    () => packedRingLayout(0),
    RangeError,
    "packed ring size 0 must be an integer from 1 to 32768",
  );
  assertThrows(() => packedRingLayout(32769), RangeError, "size 32769");
  assertThrows(() => packedRingLayout(2.5), RangeError, "size 2.5");
});

Deno.test("packed constructors reject misaligned or small areas and bad sizes", () => {
  const l = packedRingLayout(8);
  const mem = new Uint8Array(l.byteLength + 64);
  const desc = mem.subarray(0, l.descSize);
  const drv = mem.subarray(l.driverOffset, l.driverOffset + 4);
  const dev = mem.subarray(l.deviceOffset, l.deviceOffset + 4);
  const memory = new LocalMemory(mem, BASE);
  const mk = (d: Uint8Array, a: Uint8Array, b: Uint8Array, size = 8) =>
    new PackedDeviceQueue(d, a, b, size, "tx1", { memory });
  mk(desc, drv, dev);
  assertThrows(() => mk(mem.subarray(8, 8 + l.descSize), drv, dev), VirtqueueError, "16-byte");
  assertThrows(() => mk(desc.subarray(0, 100), drv, dev), VirtqueueError, "needs 128");
  assertThrows(
    () => mk(desc, mem.subarray(l.driverOffset + 2, l.driverOffset + 6), dev),
    VirtqueueError,
    "4-byte",
  );
  assertThrows(() => mk(desc, drv, dev.subarray(0, 2)), VirtqueueError, "needs 4");
  assertThrows(() => mk(desc, drv, dev, 0), VirtqueueError, "virtqueue tx1: packed ring size 0");
  assertThrows(() => mk(desc, drv, dev, 40000), VirtqueueError, "1 to 32768");
  const buffers = { addrLo: new Uint32Array(1), addrHi: new Uint32Array(1) };
  assertThrows(
    () =>
      new PackedDriverQueue(desc, drv, dev, 8, "tx1", {
        buffers,
        addresses: { desc: BASE + 8, driver: BASE + l.driverOffset, device: BASE + l.deviceOffset },
      }),
    VirtqueueError,
    "descriptor ring address 0x10000008 is not 16-byte aligned",
  );
  assertThrows(
    () => new PackedDeviceQueue(desc, drv, dev, 8, "tx1", { memory, base: 9 | 1 << 15 }),
    VirtqueueError,
    "vring base",
  );
});

Deno.test("packed round trip: exact buffers and lengths, fresh base", () => {
  const r = ring(8);
  assertEquals(r.driver.base, 1 << 15);
  assertEquals(r.device.base, 1 << 15);
  assertEquals(r.driver.numFree, 8);
  const bufs = new Uint32Array([3, 5, 11]);
  const lens = new Uint32Array([100, 1500, 64]);
  assertEquals(r.driver.enqueue(bufs, lens, 0, 3, false), 3);
  assertEquals(r.driver.numFree, 5);
  const got: number[][] = [];
  while (r.device.pop(r.chain)) {
    got.push([r.chain.id, bufOf(r), r.chain.len[0], r.chain.writable[0]]);
  }
  assertEquals(got, [[0, 3, 100, 0], [1, 5, 1500, 0], [2, 11, 64, 0]]);
  assertEquals(r.device.base, 3 | 1 << 15);
  for (const [id] of got) r.device.pushUsed(id, 0);
  const outB = new Uint32Array(8), outL = new Uint32Array(8);
  assertEquals(r.driver.dequeue(outB, outL, 8), 0, "nothing visible before publishUsed");
  r.device.publishUsed();
  assertEquals(r.driver.dequeue(outB, outL, 2), 2, "max is honoured");
  assertEquals(r.driver.dequeue(outB.subarray(2), outL.subarray(2), 8), 1);
  assertEquals([...outB.subarray(0, 3)], [3, 5, 11]);
  assertEquals([...outL.subarray(0, 3)], [0, 0, 0]);
  assertEquals(r.driver.numFree, 8);
  assertEquals(r.driver.base, 3 | 1 << 15);
});

Deno.test("packed buffer addresses above 4 GiB use both halves", () => {
  highAddressRoundTrip(ring(4, { addr: 0x7f12_3450_0000 }));
});

Deno.test("packed wrap-around: 10 laps with bursts 1, 7, 32, size", () => {
  for (const size of [32, 256]) {
    const r = ring(size);
    laps(r, 10 * size, [1, 7, 32, size]);
  }
});

Deno.test("packed odd sizes 1, 3, 255, 1000 over 10 laps", () => {
  for (const size of [1, 3, 255, 1000]) {
    const r = ring(size);
    laps(r, 10 * size, [1, 7, 32, size]);
    // 10 laps flip the wrap counter an even number of times.
    assertEquals(r.driver.base >> 15, 1);
  }
});

Deno.test("packed pipelined: device lags, partial bursts, odd sizes", () => {
  for (const size of [1, 3, 64, 255, 1000]) pipelined(ring(size), 20 * size);
});

Deno.test("packed start from a SET_VRING_BASE position mid-ring", () => {
  const r = ring(7, { base: 5 | 0 << 15 });
  assertEquals(r.device.base, 5);
  laps(r, 70, [1, 3, 7, 2]);
});

Deno.test("packed largest ring (32768) round trip", () => {
  const r = ring(32768, { nbufs: 64 });
  laps(r, 64, [32]);
});

Deno.test("packed full ring: enqueue returns fewer, numFree reaches 0", () => {
  fullRing(ring(5));
});

Deno.test("packed out-of-order completion", () => {
  outOfOrderCompletion(ring(8));
});

/** Writes a used descriptor at `slot` as a (hostile) device would, wrap counter 1. */
function writeUsed(r: Ring, slot: number, id: number, len: number): void {
  r.d32[slot * 4 + 2] = len;
  r.d16[slot * 8 + 6] = id;
  r.d16[slot * 8 + 7] = AVAIL | USED | WRITE;
}

Deno.test("packed driver rejects a used id out of range", () => {
  const r = twoInFlight(ring(8));
  writeUsed(r, 0, 999, 10);
  const out = new Uint32Array(8);
  assertThrows(
    () => r.driver.dequeue(out, out, 8),
    VirtqueueError,
    "virtqueue rx0: used descriptor 0: id 999 is out of range (queue size 8)",
  );
});

Deno.test("packed driver rejects a used id not in flight", () => {
  const r = twoInFlight(ring(8));
  writeUsed(r, 0, 5, 10);
  const out = new Uint32Array(8);
  assertThrows(() => r.driver.dequeue(out, out, 8), VirtqueueError, "id 5 is not in flight");
  // Returned twice: the second copy is caught.
  const r2 = twoInFlight(ring(8));
  writeUsed(r2, 0, 0, 10);
  writeUsed(r2, 1, 0, 10);
  assertThrows(
    () => r2.driver.dequeue(out, out, 8),
    VirtqueueError,
    "used descriptor 1: id 0 is not in flight",
  );
});

Deno.test("packed driver rejects a used len beyond the posted buffer", () => {
  rejectsUsedLenBeyondBuffer(twoInFlight(ring(8)));
});

Deno.test("packed driver: a bad used entry keeps the buffers taken before it", () => {
  keepsTakenOnError(ring(8));
  keepsTakenOnError(ring(8, { inOrder: true }));
});

/** Writes an available descriptor at `slot` as a (hostile) driver would, wrap counter 1. */
function writeAvail(
  r: Ring,
  slot: number,
  addr: number,
  len: number,
  id: number,
  flags: number,
): void {
  r.d32[slot * 4] = addr % 0x1_0000_0000;
  r.d32[slot * 4 + 1] = Math.floor(addr / 0x1_0000_0000);
  r.d32[slot * 4 + 2] = len;
  r.d16[slot * 8 + 6] = id;
  r.d16[slot * 8 + 7] = flags | AVAIL;
}

/** Writes one 16-byte descriptor of an indirect table at `mem[at]`. */
function writeTableEntry(r: Ring, at: number, addr: number, len: number, flags: number): void {
  const dv = new DataView(r.mem.buffer, at, 16);
  dv.setUint32(0, addr % 0x1_0000_0000, true);
  dv.setUint32(4, Math.floor(addr / 0x1_0000_0000), true);
  dv.setUint32(8, len, true);
  dv.setUint16(12, 0xbeef, true); // id: reserved in tables
  dv.setUint16(14, flags, true);
}

Deno.test("packed device: chain with NEXT, id in the last descriptor, used skips the chain", () => {
  const r = ring(8);
  const b = (n: number) => r.base + r.bufStart + n * BUF_SIZE;
  writeAvail(r, 1, b(1), 20, 0, NEXT);
  writeAvail(r, 2, b(2), 30, 3, WRITE);
  writeAvail(r, 0, b(0), 10, 0, NEXT); // head last
  assert(r.device.pop(r.chain));
  assertEquals(r.chain.id, 3);
  assertEquals(r.chain.count, 3);
  assertEquals([...r.chain.len.subarray(0, 3)], [10, 20, 30]);
  assertEquals([...r.chain.writable.subarray(0, 3)], [0, 0, 1]);
  assertEquals(r.chain.offset[2], r.bufStart + 2 * BUF_SIZE);
  assertEquals(r.device.base, 3 | 1 << 15);
  assert(!r.device.pop(r.chain));
  r.device.pushUsed(3, 30);
  r.device.publishUsed();
  assertEquals(r.d16[6], 3);
  assertEquals(r.d16[7], AVAIL | USED | WRITE);
  assertEquals(r.d32[2], 30);
  // The next chain starts at slot 3 and its used descriptor goes to slot 3.
  writeAvail(r, 3, b(3), 40, 1, 0);
  assert(r.device.pop(r.chain));
  r.device.pushUsed(1, 0);
  r.device.publishUsed();
  assertEquals(r.d16[3 * 8 + 6], 1);
  assertEquals(r.d16[3 * 8 + 7], AVAIL | USED);
  assertThrows(() => r.device.pushUsed(1, 0), VirtqueueError, "buffer id 1 is not in flight");
});

Deno.test("packed device: indirect table", () => {
  const r = ring(8);
  const b = (n: number) => r.base + r.bufStart + n * BUF_SIZE;
  writeTableEntry(r, r.scratch, b(4), 12, NEXT); // NEXT is ignored in packed tables
  writeTableEntry(r, r.scratch + 16, b(5), 1500, 0);
  writeTableEntry(r, r.scratch + 32, b(6), 2048, WRITE);
  writeAvail(r, 0, r.base + r.scratch, 48, 6, INDIRECT);
  assert(r.device.pop(r.chain));
  assertEquals(r.chain.id, 6);
  assertEquals(r.chain.count, 3);
  assertEquals([...r.chain.len.subarray(0, 3)], [12, 1500, 2048]);
  assertEquals([...r.chain.writable.subarray(0, 3)], [0, 0, 1]);
  assertEquals(r.chain.offset[1], r.bufStart + 5 * BUF_SIZE);
  assertEquals(r.device.base, 1 | 1 << 15, "an indirect descriptor takes one slot");
});

function hostile(setup: (r: Ring, b: (n: number) => number) => void, message: string): void {
  hostilePop(ring(8), setup, message);
}

Deno.test("packed device rejects a descriptor outside memory", () => {
  hostile(
    (r) => writeAvail(r, 0, 0x1000, 64, 0, 0),
    "virtqueue rx0: descriptor 0: address 0x1000 len 64 is outside the memory table",
  );
  hostile(
    (r, b) => writeAvail(r, 0, b(2 * 8 - 1), BUF_SIZE + SCRATCH + 1, 0, 0),
    "is outside the memory table",
  );
  hostile(
    (r) => writeAvail(r, 0, 0x5_0000_1000, 64, 0, 0),
    "descriptor 0: address 0x500001000 len 64 is outside",
  );
});

Deno.test("packed device rejects a chain longer than the queue", () => {
  hostile((r, b) => {
    for (let s = 7; s >= 0; s--) writeAvail(r, s, b(s), 10, 0, NEXT);
  }, "chain at descriptor 0 is longer than the queue size 8");
});

Deno.test("packed device rejects bad indirect descriptors", () => {
  hostile((r, b) => {
    writeTableEntry(r, r.scratch, b(0), 10, INDIRECT);
    writeAvail(r, 0, r.base + r.scratch, 16, 0, INDIRECT);
  }, "indirect descriptor 0 of descriptor 0: nested indirect table");
  hostile(
    (r) => writeAvail(r, 0, r.base + r.scratch, 20, 0, INDIRECT),
    "descriptor 0: indirect table length 20 is not a non-zero multiple of 16",
  );
  hostile(
    (r) => writeAvail(r, 0, r.base + r.scratch, 0, 0, INDIRECT),
    "indirect table length 0",
  );
  hostile(
    (r) => writeAvail(r, 0, r.base + r.scratch, 16 * 9, 0, INDIRECT),
    "longer than the queue size 8",
  );
  hostile(
    (r) => writeAvail(r, 0, r.base + r.scratch, 32, 0, INDIRECT | NEXT),
    "descriptor 0: INDIRECT and NEXT are both set",
  );
  hostile(
    (r) => writeAvail(r, 0, 0x40, 32, 0, INDIRECT),
    "indirect table of descriptor 0: address 0x40 len 32 is outside the memory table",
  );
  hostile((r) => {
    writeTableEntry(r, r.scratch, 0x40, 10, 0);
    writeAvail(r, 0, r.base + r.scratch, 16, 0, INDIRECT);
  }, "indirect descriptor 0 of descriptor 0: address 0x40 len 10 is outside");
});

Deno.test("packed device rejects bad buffer ids", () => {
  hostile((r, b) => writeAvail(r, 0, b(0), 10, 8, 0), "buffer id 8 is out of range (queue size 8)");
  hostile((r, b) => {
    writeAvail(r, 0, b(0), 10, 2, 0);
    writeAvail(r, 1, b(1), 10, 2, 0);
    r.device.pop(r.chain);
  }, "chain at descriptor 1: buffer id 2 is already in flight");
});

Deno.test("packed device ignores descriptors of the other lap", () => {
  const r = ring(4);
  // AVAIL = 0, USED = 1: available in wrap 0, not in wrap 1.
  r.d16[7] = USED;
  assert(!r.device.pop(r.chain));
  // AVAIL = USED = 1: a used descriptor of wrap 1.
  r.d16[7] = AVAIL | USED;
  assert(!r.device.pop(r.chain));
});

Deno.test("packed notification suppression (flags)", () => {
  const r = ring(8);
  const out = new Uint32Array(8), outL = new Uint32Array(8);
  assert(!r.driver.needsNotify(), "nothing enqueued");
  r.driver.enqueue(one, len100, 0, 1, true);
  assert(r.driver.needsNotify(), "ENABLE by default");
  assert(!r.driver.needsNotify(), "already notified");
  r.device.setNotifications(false);
  assertEquals(r.deviceEvent[0] >>> 16, 1);
  r.driver.enqueue(new Uint32Array([1]), len100, 0, 1, true);
  assert(!r.driver.needsNotify(), "device disabled notifications");
  r.device.setNotifications(true);
  r.driver.enqueue(new Uint32Array([2]), len100, 0, 1, true);
  assert(r.driver.needsNotify(), "device enabled notifications");

  while (r.device.pop(r.chain)) r.device.pushUsed(r.chain.id, 1);
  r.device.publishUsed();
  assert(r.device.needsCall(), "ENABLE by default");
  assert(!r.device.needsCall(), "nothing new");
  assertEquals(r.driver.dequeue(out, outL, 8), 3);
  r.driver.setInterrupts(false);
  assertEquals(r.driverEvent[0] >>> 16, 1);
  cycle(r);
  assert(!r.device.needsCall(), "driver disabled interrupts");
  r.driver.setInterrupts(true);
  cycle(r);
  assert(r.device.needsCall(), "driver enabled interrupts");
});

Deno.test("packed notification suppression with event index (DESC)", () => {
  for (const size of [8, 7, 5]) eventIdxRounds(size);
});

function eventIdxRounds(size: number): void {
  const r = ring(size, { eventIdx: true });
  const bufs = new Uint32Array([0, 1, 2, 3, 4, 5, 6, 7]), lens = new Uint32Array(8).fill(100);
  const out = new Uint32Array(8), outL = new Uint32Array(8);
  r.device.setNotifications(true);
  assertEquals(r.deviceEvent[0], 2 << 16 | 1 << 15, "DESC at slot 0, wrap 1");
  // Across many laps with odd burst sizes: the device drains, re-arms at its avail position,
  // and the driver must notify exactly once per burst; a second burst before the device runs
  // needs none.
  let lapsSeen = 0;
  for (let round = 0; round < 40; round++) {
    const k = 1 + (round % 3);
    r.driver.enqueue(bufs, lens, 0, k, true);
    assert(r.driver.needsNotify(), `round ${round}: device armed at its next slot`);
    r.driver.enqueue(bufs, lens, k, 1, true);
    assert(!r.driver.needsNotify(), `round ${round}: event already passed`);
    while (r.device.pop(r.chain)) r.device.pushUsed(r.chain.id, 1);
    r.device.publishUsed();
    assertEquals(r.driver.dequeue(out, outL, 8), k + 1);
    if ((r.driver.base >> 15) === 0) lapsSeen++;
  }
  assert(lapsSeen > 0, "the test crossed the wrap");
  r.device.setNotifications(false);
  r.driver.enqueue(bufs, lens, 0, 1, true);
  assert(!r.driver.needsNotify(), "DISABLE wins in event index mode too");
  while (r.device.pop(r.chain)) r.device.pushUsed(r.chain.id, 1);
  r.device.publishUsed();
  r.driver.dequeue(out, outL, 8);

  // Used-buffer side: the driver asks for its next used slot and re-arms after each dequeue.
  r.driver.setInterrupts(true);
  for (let round = 0; round < 40; round++) {
    r.driver.enqueue(bufs, lens, 0, 3, true);
    const ids: number[] = [];
    while (r.device.pop(r.chain)) ids.push(r.chain.id);
    assertEquals(ids.length, 3);
    r.device.pushUsed(ids[0], 1);
    r.device.publishUsed();
    assert(r.device.needsCall(), `round ${round}: the driver's next used slot was written`);
    r.device.pushUsed(ids[1], 1);
    r.device.publishUsed();
    assert(!r.device.needsCall(), `round ${round}: the driver has not looked yet`);
    assertEquals(r.driver.dequeue(out, outL, 8), 2);
    r.device.pushUsed(ids[2], 1);
    r.device.publishUsed();
    assert(r.device.needsCall(), `round ${round}: re-armed by dequeue`);
    assertEquals(r.driver.dequeue(out, outL, 8), 1);
  }
  r.driver.setInterrupts(false);
  cycle(r);
  assert(!r.device.needsCall(), "DISABLE");
}

/** Writes one used descriptor for an in-order batch (§2.8.20), as DPDK's vhost does. */
function writeUsedBatch(r: Ring, slot: number, lastId: number, wrap: number, flags = 0): void {
  r.d32[slot * 4 + 2] = 0;
  r.d16[slot * 8 + 6] = lastId;
  Atomics.store(r.d16, slot * 8 + 7, flags | (wrap ? AVAIL | USED : 0));
}

Deno.test("packed in-order: one used descriptor returns the whole batch, across wraps", () => {
  const size = 5;
  const r = ring(size, { inOrder: true });
  const bufs = new Uint32Array(size), lens = new Uint32Array(size);
  let next = 0; // next buffer number to send
  let slot = 0, wrap = 1;
  for (let round = 0; round < 12; round++) {
    const n = 1 + (round % size);
    for (let i = 0; i < n; i++) bufs[i] = (next + i) % r.nbufs;
    assertStrictEquals(r.driver.enqueue(bufs, new Uint32Array(n).fill(60), 0, n, false), n);
    // ids are ring slots: the last buffer of the batch has id (slot + n - 1) % size
    const last = (slot + n - 1) % size;
    assertStrictEquals(r.d16[last * 8 + 6], last);
    writeUsedBatch(r, slot, last, wrap);
    const got = r.driver.dequeue(bufs, lens, size);
    assertStrictEquals(got, n, `round ${round}`);
    for (let i = 0; i < n; i++) assertStrictEquals(bufs[i], (next + i) % r.nbufs);
    assertStrictEquals(r.driver.numFree, size);
    next += n;
    slot += n;
    if (slot >= size) slot -= size, wrap ^= 1;
  }
});

Deno.test("packed in-order: a batch is returned across dequeue calls with a small max", () => {
  const r = ring(8, { inOrder: true });
  const bufs = new Uint32Array(8), lens = new Uint32Array(8);
  r.driver.enqueue(new Uint32Array([3, 4, 5, 6]), new Uint32Array(4).fill(60), 0, 4, false);
  writeUsedBatch(r, 0, 3, 1);
  assertStrictEquals(r.driver.dequeue(bufs, lens, 3), 3);
  assertEquals([...bufs.subarray(0, 3)], [3, 4, 5]);
  assertStrictEquals(r.driver.dequeue(bufs, lens, 3), 1);
  assertStrictEquals(bufs[0], 6);
  assertStrictEquals(r.driver.dequeue(bufs, lens, 3), 0);
});

Deno.test("packed in-order: receive buffers keep their lengths, one used descriptor each", () => {
  const r = ring(4, { inOrder: true });
  const bufs = new Uint32Array(4), lens = new Uint32Array(4);
  r.driver.enqueue(new Uint32Array([0, 1]), new Uint32Array([2048, 2048]), 0, 2, true);
  for (const [slot, len] of [[0, 100], [1, 200]]) {
    r.d32[slot * 4 + 2] = len;
    r.d16[slot * 8 + 6] = slot;
    Atomics.store(r.d16, slot * 8 + 7, AVAIL | USED | WRITE);
  }
  assertStrictEquals(r.driver.dequeue(bufs, lens, 4), 2);
  assertEquals([...lens.subarray(0, 2)], [100, 200]);
});

Deno.test("packed in-order: rejects ids beyond the buffers in flight and skipped receive buffers", () => {
  const tx = ring(8, { inOrder: true });
  tx.driver.enqueue(new Uint32Array([0, 1]), new Uint32Array([60, 60]), 0, 2, false);
  writeUsedBatch(tx, 0, 5, 1);
  assertThrows(
    () => tx.driver.dequeue(new Uint32Array(8), new Uint32Array(8), 8),
    VirtqueueError,
    "in-order id 5 does not name a buffer in flight (2 in flight from slot 0",
  );
  const rx = ring(8, { inOrder: true });
  rx.driver.enqueue(new Uint32Array([0, 1]), new Uint32Array([2048, 2048]), 0, 2, true);
  writeUsedBatch(rx, 0, 1, 1, WRITE);
  assertThrows(
    () => rx.driver.dequeue(new Uint32Array(8), new Uint32Array(8), 8),
    VirtqueueError,
    "in-order batch ending at 1 skips receive buffer 0, whose length is unknown",
  );
});

/** A device queue with VIRTIO_F_IN_ORDER over `r`'s areas (r's own device is left unused). */
function inOrderDevice(r: Ring): PackedDeviceQueue {
  const l = r.layout, m = r.mem;
  return new PackedDeviceQueue(
    m.subarray(l.descOffset, l.descOffset + l.descSize),
    m.subarray(l.driverOffset, l.driverOffset + l.driverSize),
    m.subarray(l.deviceOffset, l.deviceOffset + l.deviceSize),
    r.size,
    "tx0",
    { memory: new LocalMemory(r.mem, r.base), inOrder: true },
  );
}

Deno.test("packed in-order device: readable buffers of a publish share one used descriptor", () => {
  const size = 8;
  const r = ring(size, { inOrder: true });
  const device = inOrderDevice(r);
  const bufs = new Uint32Array(size), lens = new Uint32Array(size);
  let slot = 0, wrap = 1;
  for (const n of [5, 8, 3, 1, 7]) { // across wraps
    for (let i = 0; i < n; i++) bufs[i] = i;
    assertStrictEquals(r.driver.enqueue(bufs, new Uint32Array(n).fill(60), 0, n, false), n);
    for (let i = 0; i < n; i++) {
      assert(device.pop(r.chain));
      device.pushUsed(r.chain.id, 0);
    }
    device.publishUsed();
    // One used descriptor, at the batch's first slot, naming its last buffer (§2.8.20).
    const last = (slot + n - 1) % size;
    assertStrictEquals(r.d16[slot * 8 + 6], last);
    assertStrictEquals(r.d16[slot * 8 + 7] & (AVAIL | USED), wrap ? AVAIL | USED : 0);
    if (n > 1) {
      const second = (slot + 1) % size, secondWrap = slot + 1 >= size ? wrap ^ 1 : wrap;
      assertStrictEquals(
        r.d16[second * 8 + 7] & (AVAIL | USED),
        secondWrap ? AVAIL : USED,
        "the next slot still reads as the driver made it available",
      );
    }
    assertStrictEquals(r.driver.dequeue(bufs, lens, size), n, `batch of ${n}`);
    assertEquals([...bufs.subarray(0, n)], Array.from({ length: n }, (_, i) => i));
    slot += n;
    if (slot >= size) slot -= size, wrap ^= 1;
  }
  assertStrictEquals(device.vringBase >>> 16, slot | wrap << 15, "used position after the batches");
});

Deno.test("packed in-order device: writable buffers and lengths get a used descriptor each", () => {
  const r = ring(8, { inOrder: true });
  const device = inOrderDevice(r);
  const bufs = new Uint32Array(8), lens = new Uint32Array(8);
  r.driver.enqueue(new Uint32Array([0, 1, 2]), new Uint32Array(3).fill(2048), 0, 3, true);
  for (const len of [100, 200, 300]) {
    assert(device.pop(r.chain));
    device.pushUsed(r.chain.id, len);
  }
  device.publishUsed();
  assertStrictEquals(r.driver.dequeue(bufs, lens, 8), 3);
  assertEquals([...lens.subarray(0, 3)], [100, 200, 300]);
  // A readable buffer pushed with a length is not folded into a batch either.
  r.driver.enqueue(new Uint32Array([3, 4]), new Uint32Array(2).fill(60), 0, 2, false);
  assert(device.pop(r.chain));
  device.pushUsed(r.chain.id, 0);
  assert(device.pop(r.chain));
  device.pushUsed(r.chain.id, 60);
  device.publishUsed();
  assertStrictEquals(r.d16[3 * 8 + 6], 3, "the first used descriptor names only its buffer");
  assertStrictEquals(r.driver.dequeue(bufs, lens, 8), 2);
});

Deno.test("packed in-order: a bad batch keeps the buffers taken before it", () => {
  const r = ring(8, { inOrder: true });
  const out = new Uint32Array(8), outL = new Uint32Array(8);
  r.driver.enqueue(new Uint32Array([3, 4, 5]), new Uint32Array(3).fill(60), 0, 3, false);
  writeUsedBatch(r, 0, 1, 1); // buffers 3 and 4
  writeUsedBatch(r, 2, 7, 1); // the next batch names a slot past the buffers in flight
  const e = dequeueError(r, out, outL, "used descriptor 2: in-order id 7 does not name a buffer");
  assertEquals(e.dequeued, 2);
  assertEquals([...out.subarray(0, 2)], [3, 4]);
  assertEquals(r.driver.numFree, 7);
});
