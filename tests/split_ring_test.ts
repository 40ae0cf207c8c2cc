import assert from "node:assert/strict";
import { SplitDeviceQueue, SplitDriverQueue, splitRingLayout } from "../lib/virtio/split_ring.ts";
import { LocalMemory, needEvent, VirtqueueError } from "../lib/virtio/virtqueue.ts";
import { assertEquals, assertThrows } from "./helpers.ts";
import {
  BASE,
  BUF_SIZE,
  bufOf,
  cycle,
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

const SPLIT: RingKind<SplitDriverQueue, SplitDeviceQueue> = {
  layout: splitRingLayout,
  Driver: SplitDriverQueue,
  Device: SplitDeviceQueue,
};

interface Ring extends TestRing<SplitDriverQueue, SplitDeviceQueue> {
  /** flags [0], idx [1], ring [2+i], used_event [2+size] */
  avail: Uint16Array;
  /** flags [0], idx [1], avail_event [2+4*size] */
  used16: Uint16Array;
  /** id [1+2i], len [2+2i] */
  used32: Uint32Array;
}

function ring(size: number, opts: Omit<RingOptions, "inOrder"> = {}): Ring {
  const r = makeRing(SPLIT, size, "tx0", opts);
  const { driverOffset, deviceOffset } = r.layout;
  return {
    ...r,
    avail: new Uint16Array(r.mem.buffer, driverOffset, 3 + size),
    used16: new Uint16Array(r.mem.buffer, deviceOffset, 3 + 4 * size),
    used32: new Uint32Array(r.mem.buffer, deviceOffset, 1 + 2 * size),
  };
}

Deno.test("needEvent follows vring_need_event (§2.7.10)", () => {
  assert(needEvent(0, 1, 0));
  assert(!needEvent(1, 1, 0));
  assert(needEvent(4, 8, 4) && needEvent(7, 8, 4) && !needEvent(3, 8, 4) && !needEvent(8, 8, 4));
  assert(needEvent(0xffff, 1, 0xfffe), "across the 16-bit wrap");
  assert(needEvent(0, 1, 0xfffe));
  assert(!needEvent(1, 1, 0xfffe));
  assert(!needEvent(5, 5, 5), "nothing moved");
  // Packed rings pass indices that may be negative (previous lap): same 16-bit arithmetic.
  assert(needEvent(-2, 1, -3));
  assert(!needEvent(-4, 1, -3));
});

Deno.test("split layout: areas aligned, sizes per §2.7", () => {
  for (const size of [1, 2, 256, 32768]) {
    const l = splitRingLayout(size);
    assertEquals(l.descOffset, 0);
    assertEquals(l.descSize, 16 * size);
    assertEquals(l.driverSize, 6 + 2 * size);
    assertEquals(l.deviceSize, 6 + 8 * size);
    assertEquals(l.driverOffset % 64, 0);
    assertEquals(l.deviceOffset % 64, 0);
    assert(l.driverOffset >= l.descSize);
    assert(l.deviceOffset >= l.driverOffset + l.driverSize);
    assert(l.byteLength >= l.deviceOffset + l.deviceSize);
  }
  assertThrows(() => splitRingLayout(3), RangeError, "split ring size 3 must be a power of two");
  assertThrows(() => splitRingLayout(65536), RangeError, "size 65536");
  assertThrows(() => splitRingLayout(0), RangeError, "size 0");
});

Deno.test("split constructors reject misaligned or small areas and bad sizes", () => {
  const l = splitRingLayout(8);
  const mem = new Uint8Array(l.byteLength + 64);
  const desc = mem.subarray(0, l.descSize);
  const drv = mem.subarray(l.driverOffset, l.driverOffset + l.driverSize);
  const dev = mem.subarray(l.deviceOffset, l.deviceOffset + l.deviceSize);
  const memory = new LocalMemory(mem, BASE);
  const mk = (d: Uint8Array, a: Uint8Array, b: Uint8Array, size = 8) =>
    new SplitDeviceQueue(d, a, b, size, "tx1", { memory });
  mk(desc, drv, dev);
  assertThrows(() => mk(mem.subarray(8, 8 + l.descSize), drv, dev), VirtqueueError, "16-byte");
  assertThrows(() => mk(desc.subarray(0, 100), drv, dev), VirtqueueError, "needs 128");
  assertThrows(
    () => mk(desc, mem.subarray(l.driverOffset + 1, l.driverOffset + 30), dev),
    VirtqueueError,
    "available ring starts at byte",
  );
  assertThrows(() => mk(desc, drv.subarray(0, 21), dev), VirtqueueError, "needs 22");
  assertThrows(
    () => mk(desc, drv, mem.subarray(l.deviceOffset + 2, l.deviceOffset + 80)),
    VirtqueueError,
    "4-byte boundary",
  );
  assertThrows(() => mk(desc, drv, dev.subarray(0, 69)), VirtqueueError, "needs 70");
  assertThrows(() => mk(desc, drv, dev, 6), VirtqueueError, "virtqueue tx1: split ring size 6");
  const buffers = { addrLo: new Uint32Array(1), addrHi: new Uint32Array(1) };
  assertThrows(
    () =>
      new SplitDriverQueue(desc, drv, dev, 8, "tx1", {
        buffers,
        addresses: { desc: BASE, driver: BASE + l.driverOffset, device: BASE + 0x1002 },
      }),
    VirtqueueError,
    "used ring address 0x10001002 is not 4-byte aligned",
  );
});

Deno.test("split round trip: exact buffers and lengths", () => {
  const r = ring(8);
  assertEquals(r.driver.base, 0);
  const bufs = new Uint32Array([3, 5, 11]);
  const lens = new Uint32Array([100, 1500, 64]);
  assertEquals(r.driver.enqueue(bufs, lens, 0, 3, false), 3);
  assertEquals(r.avail[1], 3, "avail.idx published");
  assertEquals(r.driver.numFree, 5);
  const got: number[][] = [];
  while (r.device.pop(r.chain)) {
    got.push([r.chain.id, bufOf(r), r.chain.len[0], r.chain.writable[0]]);
  }
  assertEquals(got, [[0, 3, 100, 0], [1, 5, 1500, 0], [2, 11, 64, 0]]);
  assertEquals(r.device.base, 3);
  for (const [id] of got) r.device.pushUsed(id, 0);
  const outB = new Uint32Array(8), outL = new Uint32Array(8);
  assertEquals(r.driver.dequeue(outB, outL, 8), 0, "nothing visible before publishUsed");
  r.device.publishUsed();
  assertEquals(r.used16[1], 3);
  assertEquals(r.driver.dequeue(outB, outL, 2), 2, "max is honoured");
  assertEquals(r.driver.dequeue(outB.subarray(2), outL.subarray(2), 8), 1);
  assertEquals([...outB.subarray(0, 3)], [3, 5, 11]);
  assertEquals([...outL.subarray(0, 3)], [0, 0, 0]);
  assertEquals(r.driver.numFree, 8);
});

Deno.test("split buffer addresses above 4 GiB use both halves", () => {
  highAddressRoundTrip(ring(4, { addr: 0x7f12_3450_0000 }));
});

Deno.test("split wrap-around: 10 laps with bursts 1, 7, 32, size", () => {
  for (const size of [1, 2, 32, 256]) laps(ring(size), 10 * size, [1, 7, 32, size]);
});

Deno.test("split pipelined: device lags, partial bursts", () => {
  for (const size of [1, 4, 64, 1024]) pipelined(ring(size), 20 * size);
});

Deno.test("split indices wrap at 2^16 (base near 65535)", () => {
  const r = ring(16, { base: 65530 });
  assertEquals(r.avail[1], 65530);
  assertEquals(r.used16[1], 65530);
  laps(r, 160, [1, 7, 16, 3]);
  assertEquals(r.driver.base, (65530 + 160) & 0xffff);
  assertEquals(r.device.base, r.driver.base);
  pipelined(r, 300);
});

Deno.test("split largest ring (32768) round trip", () => {
  laps(ring(32768, { nbufs: 64 }), 64, [32]);
});

Deno.test("split full ring: enqueue returns fewer, numFree reaches 0", () => {
  fullRing(ring(4));
});

Deno.test("split out-of-order completion", () => {
  outOfOrderCompletion(ring(8));
});

/** Writes used entry `e` and used.idx as a (hostile) device would. */
function writeUsed(r: Ring, e: number, id: number, len: number, idx = e + 1): void {
  r.used32[1 + 2 * e] = id;
  r.used32[2 + 2 * e] = len;
  r.used16[1] = idx;
}

Deno.test("split driver rejects a used id out of range", () => {
  const r = twoInFlight(ring(8));
  writeUsed(r, 0, 70000, 10);
  const out = new Uint32Array(8);
  assertThrows(
    () => r.driver.dequeue(out, out, 8),
    VirtqueueError,
    "virtqueue tx0: used ring entry 0: id 70000 is out of range (queue size 8)",
  );
});

Deno.test("split driver rejects a used id not in flight", () => {
  const r = twoInFlight(ring(8));
  writeUsed(r, 0, 5, 10);
  const out = new Uint32Array(8);
  assertThrows(() => r.driver.dequeue(out, out, 8), VirtqueueError, "id 5 is not in flight");
  const r2 = twoInFlight(ring(8));
  writeUsed(r2, 0, 0, 10);
  writeUsed(r2, 1, 0, 10);
  assertThrows(
    () => r2.driver.dequeue(out, out, 8),
    VirtqueueError,
    "used ring entry 1: id 0 is not in flight",
  );
});

Deno.test("split driver rejects a used len beyond the posted buffer", () => {
  rejectsUsedLenBeyondBuffer(twoInFlight(ring(8)));
});

Deno.test("split driver: a bad used entry keeps the buffers taken before it", () => {
  keepsTakenOnError(ring(8));
});

Deno.test("split driver rejects a used idx beyond what is in flight", () => {
  const r = twoInFlight(ring(8));
  writeUsed(r, 0, 0, 10, 3);
  const out = new Uint32Array(8);
  assertThrows(
    () => r.driver.dequeue(out, out, 8),
    VirtqueueError,
    "used idx 3 is 3 entries past 0, but only 2 buffers are in flight",
  );
});

/** Writes descriptor `i` as a (hostile) driver would. */
function writeDesc(r: Ring, i: number, addr: number, len: number, flags: number, next = 0): void {
  r.d32[i * 4] = addr % 0x1_0000_0000;
  r.d32[i * 4 + 1] = Math.floor(addr / 0x1_0000_0000);
  r.d32[i * 4 + 2] = len;
  r.d16[i * 8 + 6] = flags;
  r.d16[i * 8 + 7] = next;
}

/** Puts `heads` in the available ring and publishes avail.idx. */
function offer(r: Ring, ...heads: number[]): void {
  const idx = r.avail[1];
  heads.forEach((h, k) => r.avail[2 + ((idx + k) & (r.size - 1))] = h);
  r.avail[1] = idx + heads.length;
}

/** Writes one 16-byte descriptor of an indirect table at `mem[at]`. */
function writeTableEntry(
  r: Ring,
  at: number,
  addr: number,
  len: number,
  flags: number,
  next = 0,
): void {
  const dv = new DataView(r.mem.buffer, at, 16);
  dv.setUint32(0, addr % 0x1_0000_0000, true);
  dv.setUint32(4, Math.floor(addr / 0x1_0000_0000), true);
  dv.setUint32(8, len, true);
  dv.setUint16(12, flags, true);
  dv.setUint16(14, next, true);
}

Deno.test("split device: chain with NEXT, then direct descriptors followed by an indirect table", () => {
  const r = ring(8);
  const b = (n: number) => r.base + r.bufStart + n * BUF_SIZE;
  writeDesc(r, 5, b(0), 12, NEXT, 2);
  writeDesc(r, 2, b(1), 1500, NEXT | WRITE, 7);
  writeDesc(r, 7, b(2), 30, WRITE);
  // Head 1: one direct descriptor, then an indirect table linked out of order: 0 -> 2 -> 1.
  writeDesc(r, 1, b(3), 10, NEXT, 4);
  writeTableEntry(r, r.scratch, b(4), 20, NEXT, 2);
  writeTableEntry(r, r.scratch + 16, b(6), 40, WRITE);
  writeTableEntry(r, r.scratch + 32, b(5), 30, NEXT | WRITE, 1);
  writeDesc(r, 4, r.base + r.scratch, 48, INDIRECT | WRITE);
  offer(r, 5, 1);
  assert(r.device.pop(r.chain));
  assertEquals(r.chain.id, 5);
  assertEquals(r.chain.count, 3);
  assertEquals([...r.chain.len.subarray(0, 3)], [12, 1500, 30]);
  assertEquals([...r.chain.writable.subarray(0, 3)], [0, 1, 1]);
  assertEquals(r.chain.offset[1], r.bufStart + BUF_SIZE);
  assert(r.device.pop(r.chain));
  assertEquals(r.chain.id, 1);
  assertEquals(r.chain.count, 4);
  assertEquals([...r.chain.len.subarray(0, 4)], [10, 20, 30, 40]);
  assertEquals([...r.chain.writable.subarray(0, 4)], [0, 0, 1, 1]);
  assertEquals(r.chain.offset[3], r.bufStart + 6 * BUF_SIZE);
  assert(!r.device.pop(r.chain));
  r.device.pushUsed(1, 70);
  r.device.pushUsed(5, 1530);
  r.device.publishUsed();
  assertEquals([r.used32[1], r.used32[2], r.used32[3], r.used32[4], r.used16[1]], [
    1,
    70,
    5,
    1530,
    2,
  ]);
  assertThrows(() => r.device.pushUsed(8, 0), VirtqueueError, "id 8 is not a descriptor head");
});

function hostile(setup: (r: Ring, b: (n: number) => number) => void, message: string): void {
  hostilePop(ring(8), setup, message);
}

Deno.test("split device rejects a descriptor outside memory", () => {
  hostile((r) => {
    writeDesc(r, 3, 0x1000, 64, 0);
    offer(r, 3);
  }, "virtqueue tx0: descriptor 3: address 0x1000 len 64 is outside the memory table");
  hostile((r, b) => {
    writeDesc(r, 0, b(0), 10, NEXT, 1);
    writeDesc(r, 1, b(15), BUF_SIZE + SCRATCH + 1, 0);
    offer(r, 0);
  }, "descriptor 1: address");
});

Deno.test("split device rejects a looping chain and a chain longer than the queue", () => {
  hostile((r, b) => {
    writeDesc(r, 0, b(0), 10, NEXT, 1);
    writeDesc(r, 1, b(1), 10, NEXT, 0);
    offer(r, 0);
  }, "chain at head 0 is longer than the queue size 8");
  hostile((r, b) => {
    writeDesc(r, 6, b(0), 10, NEXT, 6);
    offer(r, 6);
  }, "chain at head 6 is longer than the queue size 8");
  hostile((r, b) => {
    writeDesc(r, 0, b(0), 10, NEXT, 9);
    offer(r, 0);
  }, "descriptor 0: next 9 is out of range (queue size 8)");
});

Deno.test("split device rejects bad indirect descriptors", () => {
  hostile((r, b) => {
    writeTableEntry(r, r.scratch, b(0), 10, INDIRECT);
    writeDesc(r, 0, r.base + r.scratch, 16, INDIRECT);
    offer(r, 0);
  }, "indirect descriptor 0 of descriptor 0: nested indirect table");
  hostile((r) => {
    writeDesc(r, 0, r.base + r.scratch, 24, INDIRECT);
    offer(r, 0);
  }, "descriptor 0: indirect table length 24 is not a non-zero multiple of 16");
  hostile((r) => {
    writeDesc(r, 0, r.base + r.scratch, 32, INDIRECT | NEXT, 1);
    offer(r, 0);
  }, "descriptor 0: INDIRECT and NEXT are both set");
  hostile((r, b) => {
    writeTableEntry(r, r.scratch, b(0), 10, NEXT, 1);
    writeTableEntry(r, r.scratch + 16, b(1), 10, NEXT, 0);
    writeDesc(r, 0, r.base + r.scratch, 32, INDIRECT);
    offer(r, 0);
  }, "indirect table of descriptor 0: chain is longer than the table (2)");
  hostile((r, b) => {
    writeTableEntry(r, r.scratch, b(0), 10, NEXT, 2);
    writeTableEntry(r, r.scratch + 16, b(1), 10, 0);
    writeDesc(r, 0, r.base + r.scratch, 32, INDIRECT);
    offer(r, 0);
  }, "indirect descriptor 0 of descriptor 0: next 2 is outside the table of 2");
  hostile((r) => {
    writeDesc(r, 0, 0x10, 32, INDIRECT);
    offer(r, 0);
  }, "indirect table of descriptor 0: address 0x10 len 32 is outside the memory table");
});

Deno.test("split device rejects an avail idx jump and a head out of range", () => {
  hostile((r) => {
    r.avail[1] = 9;
  }, "avail idx 9 is 9 entries ahead of 0, more than the queue size 8");
  hostile((r) => {
    r.avail[1] = 0xffff; // 65535 ahead: a step backwards
  }, "avail idx 65535 is 65535 entries ahead");
  hostile((r) => offer(r, 8), "avail ring entry 0: head 8 is out of range (queue size 8)");
  hostile((r) => offer(r, 0xffff), "head 65535 is out of range");
});

Deno.test("split notification suppression (flags)", () => {
  const r = ring(8);
  const out = new Uint32Array(8), outL = new Uint32Array(8);
  assert(!r.driver.needsNotify(), "nothing enqueued");
  r.driver.enqueue(one, len100, 0, 1, true);
  assert(r.driver.needsNotify(), "notifications on by default");
  assert(!r.driver.needsNotify(), "already notified");
  r.device.setNotifications(false);
  assertEquals(r.used16[0], 1, "VIRTQ_USED_F_NO_NOTIFY");
  r.driver.enqueue(new Uint32Array([1]), len100, 0, 1, true);
  assert(!r.driver.needsNotify(), "device disabled notifications");
  r.device.setNotifications(true);
  r.driver.enqueue(new Uint32Array([2]), len100, 0, 1, true);
  assert(r.driver.needsNotify(), "device enabled notifications");

  while (r.device.pop(r.chain)) r.device.pushUsed(r.chain.id, 1);
  r.device.publishUsed();
  assert(r.device.needsCall(), "interrupts on by default");
  assert(!r.device.needsCall(), "nothing new");
  assertEquals(r.driver.dequeue(out, outL, 8), 3);
  r.driver.setInterrupts(false);
  assertEquals(r.avail[0], 1, "VIRTQ_AVAIL_F_NO_INTERRUPT");
  cycle(r);
  assert(!r.device.needsCall(), "driver disabled interrupts");
  r.driver.setInterrupts(true);
  cycle(r);
  assert(r.device.needsCall(), "driver enabled interrupts");
});

Deno.test("split notification suppression with event index", () => {
  const r = ring(8, { eventIdx: true, base: 65500 });
  const bufs = new Uint32Array([0, 1, 2, 3, 4, 5, 6, 7]), lens = new Uint32Array(8).fill(100);
  const out = new Uint32Array(8), outL = new Uint32Array(8);
  // Fresh ring: the first buffers notify in both directions before either side set an event.
  r.driver.enqueue(bufs, lens, 0, 2, true);
  assert(r.driver.needsNotify(), "first kick");
  while (r.device.pop(r.chain)) r.device.pushUsed(r.chain.id, 1);
  r.device.publishUsed();
  assert(r.device.needsCall(), "first interrupt");
  assertEquals(r.driver.dequeue(out, outL, 8), 2);
  r.device.setNotifications(true);
  assertEquals(r.used16[2 + 4 * 8], 65502, "avail_event = next entry");
  assertEquals(r.used16[0], 0, "flags untouched with event index");
  // Across the 16-bit wrap: the device drains and re-arms; one notification per burst, none for
  // a second burst before the device ran.
  for (let round = 0; round < 40; round++) {
    const k = 1 + (round % 3);
    r.driver.enqueue(bufs, lens, 0, k, true);
    assert(r.driver.needsNotify(), `round ${round}: device armed at its next entry`);
    r.driver.enqueue(bufs, lens, k, 1, true);
    assert(!r.driver.needsNotify(), `round ${round}: event already passed`);
    while (r.device.pop(r.chain)) r.device.pushUsed(r.chain.id, 1);
    r.device.publishUsed();
    assertEquals(r.driver.dequeue(out, outL, 8), k + 1);
  }
  assert(r.driver.base < 100, "the test crossed 65535");
  r.device.setNotifications(false);
  r.driver.enqueue(bufs, lens, 0, 1, true);
  assert(!r.driver.needsNotify(), "avail_event behind the next entry");
  while (r.device.pop(r.chain)) r.device.pushUsed(r.chain.id, 1);
  r.device.publishUsed();
  r.driver.dequeue(out, outL, 8);

  r.driver.setInterrupts(true);
  for (let round = 0; round < 40; round++) {
    r.driver.enqueue(bufs, lens, 0, 3, true);
    const ids: number[] = [];
    while (r.device.pop(r.chain)) ids.push(r.chain.id);
    assertEquals(ids.length, 3);
    r.device.pushUsed(ids[0], 1);
    r.device.publishUsed();
    assert(r.device.needsCall(), `round ${round}: used_event reached`);
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
  assertEquals(r.avail[0], 0, "flags untouched with event index");
  cycle(r);
  assert(!r.device.needsCall(), "used_event behind the next entry");
});
