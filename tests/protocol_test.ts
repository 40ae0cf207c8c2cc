/**
 * Protocol rules the driver and the device keep, each against the other side for real:
 *
 * ```
 *   close():            GET_VRING_BASE per ring, then SET_STATUS 0 (reset) reaches the backend
 *   SET_STATUS 0:       the backend forgets its rings (virtio 1.2 §2.1, device reset)
 *   queuePairs 2:       only with VIRTIO_NET_F_MQ (bit 22) negotiated, on both sides
 *   packed vring base:  used index/wrap in bits 16-31 (vhost-user.rst), read and reported
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { closeQuietly } from "../ffi/fd.ts";
import { unixListen } from "../ffi/unix_socket.ts";
import { VirtioNet } from "../lib/driver/virtio_net.ts";
import { VhostUserFrontend } from "../lib/vhost_user/frontend.ts";
import { featureMask } from "../lib/virtio/features.ts";
import { PackedDeviceQueue, packedRingLayout } from "../lib/virtio/packed_ring.ts";
import type { MemoryRegion, QueueSetup, VirtioTransport } from "../lib/virtio/transport.ts";
import { LocalMemory } from "../lib/virtio/virtqueue.ts";
import { HostileBackend } from "./hostile_backend.ts";

const MQ = featureMask("NET_F_MQ");

async function withBackend(
  options: { queuePairs?: number },
  body: (dev: HostileBackend, path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "protocol-" });
  const path = `${dir}/vhost.sock`;
  const dev = await HostileBackend.listen(path, options);
  try {
    await body(dev, path);
  } finally {
    await dev.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("close() resets the device: SET_STATUS 0 reaches the backend after the rings stop", async () => {
  await withBackend({}, async (dev, path) => {
    const port = VirtioNet.open({ path, hugepages: false });
    assert.equal((await dev.state()).status, 0xf, "DRIVER_OK|FEATURES_OK|DRIVER|ACKNOWLEDGE");
    assert.deepEqual(port.close(), []);
    const s = await dev.state();
    const status = s.connected ? s.status : s.lastSessionStatus;
    assert.equal(status, 0, "the last status the frontend set was 0 (reset)");
  });
});

Deno.test("SET_STATUS 0 on the device side stops and forgets its rings", async () => {
  await withBackend({}, async (dev, path) => {
    const port = VirtioNet.open({ path, hugepages: false });
    try {
      assert.deepEqual((await dev.state()).running, [0, 1]);
      port.transport.setStatus(0);
      const s = await dev.state();
      assert.ok(s.connected, "a reset is not a hang-up");
      assert.deepEqual(s.running, [], "no ring runs after the reset");
      assert.equal(s.status, 0);
    } finally {
      port.close();
    }
  });
});

Deno.test("two queue pairs: NET_F_MQ negotiated, all four rings run", async () => {
  await withBackend({ queuePairs: 2 }, async (dev, path) => {
    const port = VirtioNet.open({ path, hugepages: false, queuePairs: 2 });
    try {
      assert.equal(port.features & MQ, MQ, "the driver negotiated NET_F_MQ");
      assert.deepEqual((await dev.state()).running, [0, 1, 2, 3]);
    } finally {
      port.close();
    }
  });
});

/** A transport that hides or drops NET_F_MQ, to see what each side does without it. */
class NoMq implements VirtioTransport {
  constructor(readonly inner: VhostUserFrontend, readonly hideOffer: boolean) {}
  get name(): string {
    return this.inner.name;
  }
  get maxQueuePairs(): number {
    return this.inner.maxQueuePairs;
  }
  getFeatures(): bigint {
    const f = this.inner.getFeatures();
    return this.hideOffer ? f & ~MQ : f;
  }
  setFeatures(features: bigint): void {
    this.inner.setFeatures(features & ~MQ); // what the backend hears: no MQ
  }
  setMemTable(regions: readonly MemoryRegion[]): void {
    this.inner.setMemTable(regions);
  }
  setupQueue(queue: QueueSetup): void {
    this.inner.setupQueue(queue);
  }
  enableQueue(index: number, enabled: boolean): void {
    this.inner.enableQueue(index, enabled);
  }
  setStatus(status: number): void {
    this.inner.setStatus(status);
  }
  getStatus(): number {
    return this.inner.getStatus();
  }
  stopQueue(index: number): number {
    return this.inner.stopQueue(index);
  }
  checkConnection(): string | null {
    return this.inner.checkConnection();
  }
  close(): void {
    this.inner.close();
  }
}

Deno.test("two queue pairs without NET_F_MQ: the driver refuses, the device runs one pair", async () => {
  await withBackend({ queuePairs: 2 }, async (dev, path) => {
    const hidden = new NoMq(VhostUserFrontend.connect(path, { queuePairs: 2 }), true);
    assert.throws(
      () => VirtioNet.open({ transport: hidden, hugepages: false, queuePairs: 2 }),
      /does not offer NET_F_MQ \(bit 22\): 2 queue pairs need it/,
    );
    // The driver believes MQ was agreed, the backend never heard it: rings 2 and 3 stay idle.
    const dropped = new NoMq(VhostUserFrontend.connect(path, { queuePairs: 2 }), false);
    const port = VirtioNet.open({ transport: dropped, hugepages: false, queuePairs: 2 });
    try {
      assert.deepEqual((await dev.state()).running, [0, 1], "only pair 0 without NET_F_MQ");
    } finally {
      port.close();
    }
  });
});

Deno.test("packed device queue: SET_VRING_BASE bits 16-31 set the used side; vringBase reports both", () => {
  const size = 8, l = packedRingLayout(size);
  const mem = new Uint8Array(l.byteLength);
  const area = (o: number, n: number) => mem.subarray(o, o + n);
  const make = (base: number) =>
    new PackedDeviceQueue(
      area(l.descOffset, l.descSize),
      area(l.driverOffset, l.driverSize),
      area(l.deviceOffset, l.deviceSize),
      size,
      "rx0",
      { memory: new LocalMemory(mem, 0), base },
    );
  const both = (5 | 1 << 15) | (3 | 0 << 15) << 16; // avail 5 lap 1, used 3 lap 0
  assert.equal(make(both).vringBase, both >>> 0);
  assert.equal(make(both).base, 5 | 1 << 15, "base is the avail half");
  assert.equal(
    make(5 | 1 << 15).vringBase,
    ((5 | 1 << 15) * 0x10001) >>> 0,
    "low half only: used = avail",
  );
  assert.throws(() => make((9 << 16) | 1), /not a position in a ring of 8/);
});

Deno.test("server mode: a stale socket file is replaced, a regular file refused, no backend times out", async () => {
  const dir = await Deno.makeTempDir({ prefix: "server-" });
  const path = `${dir}/virtio-user.sock`;
  try {
    closeQuietly(unixListen(path)); // a listener that died without removing its file
    assert.ok(Deno.lstatSync(path).isSocket, "a stale socket file is there");
    assert.throws(
      () => VirtioNet.open({ path, server: true, acceptTimeoutMs: 50, hugepages: false }),
      /no vhost-user backend connected to .* within 50 ms; start it in client mode/,
    );
    assert.throws(() => Deno.lstatSync(path), "the socket file is removed after the failure");
    Deno.writeTextFileSync(path, "not a socket");
    assert.throws(
      () => VirtioNet.open({ path, server: true, acceptTimeoutMs: 50, hugepages: false }),
      /exists and is not a socket; not removing it/,
    );
    assert.equal(Deno.readTextFileSync(path), "not a socket", "the regular file is untouched");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
