/**
 * vhost-user over real Unix sockets: {@linkcode VhostUserFrontend} against
 * {@linkcode VhostUserBackend} (on a worker thread, since the frontend blocks), the backend's
 * answers to malformed messages (in-process, driving `poll()` by hand), {@linkcode GuestMemory}'s
 * checks, and the frontend against DPDK's vhost PMD in `dpdk-testpmd`.
 *
 * ```
 *   VhostUserFrontend ──socket──► worker: VhostUserBackend          (negotiation, rings, stop)
 *   raw socket + codec ──────────► VhostUserBackend.poll()          (malformed messages)
 *   VhostUserFrontend ──socket──► dpdk-testpmd net_vhost0           (real peer)
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { openFds } from "./helpers.ts";
import { eventfd } from "../ffi/eventfd.ts";
import { closeQuietly } from "../ffi/fd.ts";
import { ftruncate, memfdCreate, MFD_CLOEXEC, mmapShared, munmap } from "../ffi/memory.ts";
import { pollFd, POLLIN } from "../ffi/poll.ts";
import {
  recvExact,
  sendMsg,
  socketPair,
  unixAccept,
  unixConnect,
  unixListen,
} from "../ffi/unix_socket.ts";
import { featureMask } from "../lib/virtio/features.ts";
import { GuestMemory } from "../lib/vhost_user/guest_memory.ts";
import { MemoryArena } from "../lib/vhost_user/memory_arena.ts";
import { SharedMemory } from "../lib/driver/shared_memory.ts";
import { PackedDeviceQueue } from "../lib/virtio/packed_ring.ts";
import { SplitDeviceQueue, splitRingLayout } from "../lib/virtio/split_ring.ts";
import { DeviceStatus } from "../lib/virtio/status.ts";
import { VhostUserFrontend } from "../lib/vhost_user/frontend.ts";
import { VhostUserBackend } from "../lib/vhost_user/backend.ts";
import { DescriptorChain } from "../lib/virtio/virtqueue.ts";
import {
  protocolFeatureMask,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_NEED_REPLY,
  VhostUserMessage,
  VhostUserRequest as REQ,
} from "../lib/vhost_user/message.ts";
import type { BackendState } from "./vhost_user_backend_worker.ts";
import { requireTestpmd } from "./peers.ts";
import { Testpmd } from "./testpmd.ts";

const { ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK } = DeviceStatus;
const BIT30 = 1n << 30n;

// --- backend on a worker ---------------------------------------------------------------------

class BackendWorker {
  readonly worker: Worker;
  #pending: ((data: Record<string, unknown>) => void)[] = [];

  constructor() {
    this.worker = new Worker(new URL("./vhost_user_backend_worker.ts", import.meta.url), {
      type: "module",
    });
    this.worker.onmessage = (e) => {
      const resolve = this.#pending.shift();
      resolve?.(e.data);
    };
  }

  request(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.#pending.push((data) => {
        if (data.event === "error") reject(new Error(`worker: ${data.message}`));
        else resolve(data);
      });
      this.worker.postMessage(msg);
    });
  }

  async state(): Promise<BackendState> {
    return (await this.request({ cmd: "state" })).state as BackendState;
  }

  async peek(addr: number): Promise<number> {
    return (await this.request({ cmd: "peek", addr })).value as number;
  }

  async close(): Promise<void> {
    await this.request({ cmd: "close" });
    this.worker.terminate();
  }
}

/** Two split rings of `size` in `mem`, at offsets 0 and 64 KiB. */
function ringSetup(mem: SharedMemory, index: number, size: number, base: number) {
  const l = splitRingLayout(size);
  const start = mem.addr + index * 0x10000;
  return {
    index,
    size,
    base,
    addresses: {
      desc: start + l.descOffset,
      driver: start + l.driverOffset,
      device: start + l.deviceOffset,
    },
  };
}

Deno.test("frontend against VhostUserBackend: negotiation, memory, rings, stop", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vhost-user-test-" });
  const path = `${dir}/vhost.sock`;
  const backend = new BackendWorker();
  const mem = SharedMemory.create(1 << 20, { hugepages: false });
  const fds = [eventfd(), eventfd(), eventfd(), eventfd()];
  let fe: VhostUserFrontend | null = null;
  try {
    const offered = featureMask("F_VERSION_1", "F_RING_PACKED", "RING_F_INDIRECT_DESC");
    await backend.request({
      cmd: "listen",
      path,
      options: { features: offered, queuePairs: 2, mac: new Uint8Array([2, 0, 0, 0, 0, 1]) },
    });
    fe = VhostUserFrontend.connect(path, { timeoutMs: 2000, queuePairs: 2 });

    // Negotiation: bit 30 is transport business, hidden from the driver; NET_F_MQ is added by
    // the backend for 2 queue pairs.
    assert.equal(fe.getFeatures(), offered | featureMask("NET_F_MQ"));
    assert.equal(fe.offeredFeatures & BIT30, BIT30);
    assert.equal(fe.protocolFeatures, protocolFeatureMask("MQ", "REPLY_ACK", "STATUS"));
    assert.equal(fe.maxQueuePairs, 2);
    assert.equal(fe.name, `vhost-user ${path}`);

    fe.setStatus(ACKNOWLEDGE); // not sent: no FEATURES_OK yet (as DPDK's frontend)
    fe.setStatus(ACKNOWLEDGE | DRIVER);
    const wanted = featureMask("F_VERSION_1", "RING_F_INDIRECT_DESC");
    assert.throws(() => fe!.setFeatures(featureMask("NET_F_MAC")), /NET_F_MAC\(5\) not offered/);
    fe.setFeatures(wanted);
    fe.setStatus(ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert.equal(fe.getStatus(), ACKNOWLEDGE | DRIVER | FEATURES_OK);

    let s = await backend.state();
    assert.equal(s.features, (wanted | BIT30).toString(16), "bit 30 echoed in SET_FEATURES");
    assert.equal(s.protocolFeatures, "10009");

    // Memory: a byte the frontend writes is read by the backend through GuestMemory.translate.
    mem.bytes[0x30001] = 0xab;
    fe.setMemTable([mem]);
    assert.equal(await backend.peek(mem.addr + 0x30001), 0xab);
    mem.bytes[0x30001] = 0xcd; // same pages, not a copy
    assert.equal(await backend.peek(mem.addr + 0x30001), 0xcd);
    assert.equal(await backend.peek(mem.addr + mem.size), -1, "beyond the region");

    // Rings: vring 0 (rx0) and 1 (tx0), split, 256 entries; tx0 starts at position 7.
    fe.setupQueue({ ...ringSetup(mem, 0, 256, 0), kickFd: fds[0], callFd: fds[1] });
    fe.setupQueue({ ...ringSetup(mem, 1, 256, 7), kickFd: fds[2], callFd: fds[3] });
    s = await backend.state();
    assert.deepEqual(s.vrings.slice(0, 2).map((v) => [v.size, v.ready, v.enabled, v.queueBase]), [
      [256, true, false, 0],
      [256, true, false, 7],
    ]);
    assert.ok(s.vrings[0].hasKickFd && s.vrings[0].hasCallFd);
    assert.ok(!s.vrings[2].ready, "pair 1 not set up");
    assert.ok(!s.started);

    fe.enableQueue(0, true);
    fe.enableQueue(1, true);
    s = await backend.state();
    assert.ok(!s.started, "with STATUS the device waits for DRIVER_OK (DPDK's rule)");
    fe.setStatus(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    s = await backend.state();
    assert.ok(s.started);
    assert.deepEqual(s.running, [0, 1]);
    assert.equal(s.status, 0xf);
    const changes = s.changes;

    // Stop: GET_VRING_BASE returns the position the ring was set up with.
    assert.equal(fe.stopQueue(1), 7);
    assert.equal(fe.stopQueue(0), 0);
    s = await backend.state();
    assert.ok(!s.started);
    assert.deepEqual(s.running, []);
    assert.ok(!s.vrings[1].ready && !s.vrings[1].enabled && !s.vrings[1].hasKickFd);
    assert.equal(s.vrings[1].base, 7);
    assert.ok(s.changes > changes, "onQueuesChanged fired");

    // Restart a stopped ring at a new position.
    fe.setupQueue({ ...ringSetup(mem, 1, 256, 100), kickFd: fds[2], callFd: fds[3] });
    fe.enableQueue(1, true);
    fe.setupQueue({ ...ringSetup(mem, 0, 256, 0), kickFd: fds[0], callFd: fds[3] });
    fe.enableQueue(0, true);
    s = await backend.state();
    assert.deepEqual(s.running, [0, 1]);
    assert.equal(s.vrings[1].queueBase, 100);

    fe.close();
    fe.close(); // idempotent
    assert.ok(fe.closed);
    s = await backend.state();
    assert.ok(!s.connected);
    assert.equal(s.error, null, "a frontend closing the socket is not an error");
    assert.equal(s.mapped, 0, "memory unmapped at the end of the session");
    assert.ok(!s.started);
  } finally {
    fe?.close();
    await backend.close();
    for (const fd of fds) closeQuietly(fd);
    mem.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("frontend: packed rings, no REPLY_ACK or STATUS, a ring without call fd", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vhost-user-test-" });
  const path = `${dir}/vhost.sock`;
  const backend = new BackendWorker();
  const mem = SharedMemory.create(1 << 20, { hugepages: false });
  const fds = [eventfd(), eventfd()];
  let fe: VhostUserFrontend | null = null;
  try {
    // Only MQ among the protocol features: nothing is acked (the worker drains the socket before
    // each state snapshot), and without STATUS the device starts without DRIVER_OK.
    await backend.request({ cmd: "listen", path, options: { protocolFeatures: 1n } });
    fe = VhostUserFrontend.connect(path, { timeoutMs: 2000 });
    assert.equal(fe.protocolFeatures, 1n);
    assert.equal(fe.getStatus(), -1, "no STATUS protocol feature");
    fe.setFeatures(featureMask("F_VERSION_1", "F_RING_PACKED"));
    fe.setMemTable([mem]);
    const a = mem.addr;
    fe.setupQueue({
      index: 0,
      size: 100, // packed rings take any size
      base: 1 << 15,
      addresses: { desc: a, driver: a + 4096, device: a + 4160 },
      kickFd: fds[0],
      callFd: -1, // polling: sent with the no-fd bit
    });
    fe.setupQueue({
      index: 1,
      size: 100,
      base: (1 << 15) | 42,
      addresses: { desc: a + 8192, driver: a + 12288, device: a + 12352 },
      kickFd: -1,
      callFd: fds[1],
    });
    fe.enableQueue(0, true);
    fe.enableQueue(1, true);
    const s = await backend.state();
    assert.ok(s.started, "without STATUS the device starts when vrings 0 and 1 are ready");
    assert.deepEqual(s.running, [0, 1]);
    assert.ok(s.vrings[0].callSet && !s.vrings[0].hasCallFd);
    assert.ok(!s.vrings[1].hasKickFd);
    // Packed rings (vhost-user.rst): avail index and wrap in bits 0-15, used index and wrap in
    // bits 16-31, both ways: the frontend sent them in SET_VRING_BASE, the backend reports them.
    assert.equal(fe.stopQueue(1), ((1 << 15) | 42) * 0x10001);
  } finally {
    fe?.close();
    await backend.close();
    for (const fd of fds) closeQuietly(fd);
    mem.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("frontend: a backend refusing SET_MEM_TABLE answers failure, then drops the session", async () => {
  const dir2 = await Deno.makeTempDir({ prefix: "vhost-user-test-" });
  const path2 = `${dir2}/vhost.sock`;
  const backend2 = new BackendWorker();
  const memfd = memfdCreate("test", MFD_CLOEXEC);
  try {
    await backend2.request({ cmd: "listen", path: path2 });
    const fe2 = VhostUserFrontend.connect(path2, { timeoutMs: 2000 });
    try {
      ftruncate(memfd, 4096);
      assert.throws(
        () => fe2.setMemTable([{ addr: 0x1000, size: 0, fd: memfd, offset: 0 }]),
        (e: unknown) =>
          (e as Error).message === "vhost-user SET_MEM_TABLE: backend replied failure (1)",
      );
    } finally {
      fe2.close();
    }
    const s = await backend2.state();
    assert.equal(s.error, "vhost-user SET_MEM_TABLE: memory table: region 0 has size 0");
    assert.ok(!s.connected);
  } finally {
    closeQuietly(memfd);
    await backend2.close();
    await Deno.remove(dir2, { recursive: true });
  }
});

Deno.test("frontend: a backend that never answers times out with a clear message", () => {
  const dir = Deno.makeTempDirSync({ prefix: "vhost-user-test-" });
  const path = `${dir}/silent.sock`;
  const listenFd = unixListen(path); // accepts nothing, answers nothing (the backlog connects)
  try {
    const t0 = performance.now();
    assert.throws(
      () => VhostUserFrontend.connect(path, { timeoutMs: 200 }),
      (e: unknown) =>
        (e as Error).message === `vhost-user GET_FEATURES: no reply within 200 ms from ${path}`,
    );
    assert.ok(performance.now() - t0 < 2000);
    assert.throws(() => VhostUserFrontend.connect(`${dir}/nobody.sock`), /connect\(.*ENOENT/);
  } finally {
    closeQuietly(listenFd);
    Deno.removeSync(dir, { recursive: true });
  }
});

// --- malformed messages, backend driven in-process ------------------------------------------

interface Session {
  backend: VhostUserBackend;
  raw: number;
  msg: VhostUserMessage;
  /** Sends `msg` (or its first `len` bytes) with `fds`, then lets the backend poll once. */
  send(fds?: number[], len?: number): void;
  /** Reads one reply into `msg`. */
  reply(): void;
  close(): void;
}

function session(options = {}): Session {
  const dir = Deno.makeTempDirSync({ prefix: "vhost-user-test-" });
  const backend = VhostUserBackend.listen(`${dir}/vhost.sock`, options);
  const raw = unixConnect(`${dir}/vhost.sock`);
  assert.ok(backend.poll(), "accepts the connection");
  assert.ok(backend.connected);
  const msg = new VhostUserMessage();
  return {
    backend,
    raw,
    msg,
    send(fds: number[] = [], len = msg.length) {
      sendMsg(raw, msg.bytes, len, fds);
      backend.poll();
    },
    reply() {
      const fds: number[] = [];
      recvExact(raw, msg.bytes, VHOST_USER_HDR_SIZE, fds, 1000);
      if (msg.size > 0) recvExact(raw, msg.bytes.subarray(12), msg.size, fds, 1000);
    },
    close() {
      backend.close();
      closeQuietly(raw);
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** Negotiates REPLY_ACK (SET_PROTOCOL_FEATURES): NEED_REPLY is acked only then (vhost-user.rst). */
function ackNegotiated(s: Session): void {
  s.msg.begin(REQ.SET_PROTOCOL_FEATURES).setU64(protocolFeatureMask("REPLY_ACK"));
  s.send();
}

Deno.test("backend: NEED_REPLY without REPLY_ACK negotiated gets no ack", () => {
  const s = session();
  try {
    s.msg.begin(REQ.SET_OWNER, VHOST_USER_NEED_REPLY);
    s.send();
    assert.equal(pollFd(s.raw, POLLIN, 0) & POLLIN, 0, "nothing to read: no ack was sent");
    assert.ok(s.backend.connected);
    ackNegotiated(s);
    s.msg.begin(REQ.SET_OWNER, VHOST_USER_NEED_REPLY);
    s.send();
    s.reply();
    assert.equal(s.msg.request, REQ.SET_OWNER);
    assert.equal(s.msg.u64, 0n, "with REPLY_ACK negotiated: acked, success");
  } finally {
    s.close();
  }
});

/** Runs `body` on a fresh session and checks the error it leads to and that no fd leaks. */
function expectViolation(
  name: string,
  body: (s: Session) => void,
  error: RegExp,
  options = {},
): void {
  Deno.test(`backend: ${name}`, () => {
    const before = openFds();
    const s = session(options);
    try {
      body(s);
      assert.ok(!s.backend.connected, "the session ended");
      assert.match(s.backend.error?.message ?? "(no error)", error);
      assert.ok(!s.backend.started);
      assert.equal(s.backend.memory, null);
    } finally {
      s.close();
    }
    assert.equal(openFds(), before, "every fd closed");
  });
}

function memfd(size: number): number {
  const fd = memfdCreate("guest", MFD_CLOEXEC);
  ftruncate(fd, size);
  return fd;
}

expectViolation(
  "a payload of the wrong size",
  (s) => {
    s.msg.begin(REQ.SET_FEATURES).setU64(1n << 32n);
    s.msg.size = 4;
    s.send();
  },
  /^vhost-user SET_FEATURES: payload is 4 bytes, expected 8$/,
);

expectViolation(
  "an unknown request, answered with failure when NEED_REPLY",
  (s) => {
    ackNegotiated(s);
    s.msg.begin(99, VHOST_USER_NEED_REPLY).setU64(0n);
    s.send();
    s.reply();
    assert.equal(s.msg.request, 99);
    assert.equal(s.msg.flags, 0x5);
    assert.equal(s.msg.u64, 1n, "REPLY_ACK failure");
  },
  /^vhost-user request 99: request 99 is not supported by this backend/,
);

expectViolation(
  "SET_BACKEND_REQ_FD without BACKEND_REQ negotiated is refused, its fd closed",
  (s) => {
    const [mine, theirs] = socketPair();
    s.msg.begin(REQ.SET_BACKEND_REQ_FD);
    s.send([theirs]);
    closeQuietly(theirs);
    closeQuietly(mine);
  },
  /^vhost-user SET_BACKEND_REQ_FD: BACKEND_REQ \(protocol feature 5\) was not negotiated$/,
);

expectViolation(
  "SET_LOG_BASE (not offered) is refused",
  (s) => {
    s.msg.begin(REQ.SET_LOG_BASE).setU64(0n);
    s.send();
  },
  /^vhost-user SET_LOG_BASE: request 6 is not supported/,
);

expectViolation(
  "too many memory regions",
  (s) => {
    s.msg.begin(REQ.SET_MEM_TABLE);
    s.msg.view.setUint32(12, 9, true);
    s.msg.size = 8 + 9 * 32;
    const fds = Array.from({ length: 9 }, () => memfd(4096));
    s.send(fds);
    for (const fd of fds) closeQuietly(fd); // the backend closed its copies
  },
  /^vhost-user SET_MEM_TABLE: 9 memory regions; between 1 and 8 are allowed$/,
);

expectViolation(
  "a memory table with fds missing",
  (s) => {
    ackNegotiated(s);
    const r = (addr: bigint) => ({
      guestPhysAddr: addr,
      memorySize: 4096n,
      userspaceAddr: addr,
      mmapOffset: 0n,
    });
    s.msg.begin(REQ.SET_MEM_TABLE, VHOST_USER_NEED_REPLY).setMemoryTable([
      r(0x10000n),
      r(0x20000n),
    ]);
    const fd = memfd(4096);
    s.send([fd]);
    closeQuietly(fd);
    s.reply();
    assert.equal(s.msg.u64, 1n);
  },
  /^vhost-user SET_MEM_TABLE: memory table: 2 regions but 1 file descriptors/,
);

expectViolation(
  "overlapping memory regions",
  (s) => {
    const r = (addr: bigint) => ({
      guestPhysAddr: addr,
      memorySize: 8192n,
      userspaceAddr: addr,
      mmapOffset: 0n,
    });
    s.msg.begin(REQ.SET_MEM_TABLE).setMemoryTable([r(0x10000n), r(0x11000n)]);
    const fds = [memfd(8192), memfd(8192)];
    s.send(fds);
    for (const fd of fds) closeQuietly(fd);
  },
  /^vhost-user SET_MEM_TABLE: memory table: regions 0 and 1 overlap in guest physical/,
);

expectViolation(
  "a region larger than its file",
  (s) => {
    s.msg.begin(REQ.SET_MEM_TABLE).setMemoryTable([{
      guestPhysAddr: 0n,
      memorySize: 8192n,
      userspaceAddr: 0n,
      mmapOffset: 0n,
    }]);
    const fd = memfd(4096);
    s.send([fd]);
    closeQuietly(fd);
  },
  /region 0: mmap_offset \+ memory_size = 8192 bytes, but its file has only 4096/,
);

expectViolation(
  "an fd where none is expected",
  (s) => {
    const fd = eventfd();
    s.msg.begin(REQ.GET_FEATURES);
    s.send([fd]);
    closeQuietly(fd);
  },
  /^vhost-user GET_FEATURES: 1 file descriptors attached, expected 0$/,
);

expectViolation(
  "SET_VRING_KICK without its fd",
  (s) => {
    s.msg.begin(REQ.SET_VRING_KICK).setVringFile(0, true);
    s.send();
  },
  /^vhost-user SET_VRING_KICK: 0 file descriptors attached, expected 1$/,
);

expectViolation(
  "more fds than the request takes",
  (s) => {
    const fds = Array.from({ length: 16 }, () => eventfd());
    s.msg.begin(REQ.SET_VRING_CALL).setVringFile(0, true);
    s.send(fds);
    for (const fd of fds) closeQuietly(fd);
  },
  /^vhost-user SET_VRING_CALL: 16 file descriptors attached, expected 1$/,
);

expectViolation(
  "a vring index out of range",
  (s) => {
    s.msg.begin(REQ.SET_VRING_NUM).setVringState(2, 256);
    s.send();
  },
  /^vhost-user SET_VRING_NUM: vring index 2 is out of range \(this device has 2 vrings/,
);

expectViolation(
  "a split ring size that is not a power of two",
  (s) => {
    s.msg.begin(REQ.SET_FEATURES).setU64(featureMask("F_VERSION_1") | BIT30);
    s.send();
    s.msg.begin(REQ.SET_VRING_NUM).setVringState(0, 100);
    s.send();
  },
  /^vhost-user SET_VRING_NUM: ring size 100 is not a power of two/,
);

expectViolation(
  "a ring size above 32768",
  (s) => {
    s.msg.begin(REQ.SET_VRING_NUM).setVringState(0, 65536);
    s.send();
  },
  /ring size 65536 is outside 1\.\.32768/,
);

expectViolation(
  "features that were not offered",
  (s) => {
    s.msg.begin(REQ.SET_FEATURES).setU64(featureMask("F_VERSION_1", "NET_F_MAC"));
    s.send();
  },
  /^vhost-user SET_FEATURES: feature NET_F_MAC\(5\) was not offered/,
);

expectViolation(
  "protocol features that were not offered",
  (s) => {
    s.msg.begin(REQ.SET_PROTOCOL_FEATURES).setU64(protocolFeatureMask("MQ", "LOG_SHMFD"));
    s.send();
  },
  /^vhost-user SET_PROTOCOL_FEATURES: protocol features LOG_SHMFD\(1\) were not offered$/,
);

expectViolation(
  "ring addresses outside guest memory",
  (s) => {
    s.msg.begin(REQ.SET_MEM_TABLE).setMemoryTable([{
      guestPhysAddr: 0x10000n,
      memorySize: 0x10000n,
      userspaceAddr: 0x10000n,
      mmapOffset: 0n,
    }]);
    const fd = memfd(0x10000);
    s.send([fd]);
    closeQuietly(fd);
    assert.equal(s.backend.memory?.count, 1);
    s.msg.begin(REQ.SET_VRING_NUM).setVringState(0, 256);
    s.send();
    s.msg.begin(REQ.SET_VRING_ADDR).setVringAddress({
      index: 0,
      flags: 0,
      desc: 0x1f000n, // 4096 bytes of descriptors fit; the used ring does not
      avail: 0x10000n,
      used: 0x1fff0n,
      log: 0n,
    });
    s.send();
  },
  /^vhost-user SET_VRING_ADDR: vring 0: used ring at 0x1fff0 \(2054 bytes\) is outside the memory table$/,
);

expectViolation(
  "a misaligned descriptor table",
  (s) => {
    s.msg.begin(REQ.SET_MEM_TABLE).setMemoryTable([{
      guestPhysAddr: 0n,
      memorySize: 0x10000n,
      userspaceAddr: 0n,
      mmapOffset: 0n,
    }]);
    const fd = memfd(0x10000);
    s.send([fd]);
    closeQuietly(fd);
    s.msg.begin(REQ.SET_VRING_ADDR).setVringAddress({
      index: 1,
      flags: 0,
      desc: 0x1008n,
      avail: 0x2000n,
      used: 0x3000n,
      log: 0n,
    });
    s.send();
  },
  /^vhost-user SET_VRING_ADDR: descriptor area address 0x1008 is not 16-byte aligned$/,
);

expectViolation(
  "SET_VRING_KICK on a ring that has no addresses",
  (s) => {
    s.msg.begin(REQ.SET_VRING_NUM).setVringState(0, 256);
    s.send();
    const fd = eventfd();
    s.msg.begin(REQ.SET_VRING_KICK).setVringFile(0, true);
    s.send([fd]);
    closeQuietly(fd);
  },
  /^vhost-user SET_VRING_KICK: vring 0 has no addresses \(send SET_VRING_ADDR first\)$/,
);

expectViolation(
  "a REPLY flag in a request",
  (s) => {
    s.msg.begin(REQ.GET_FEATURES, 0x4);
    s.send();
  },
  /^vhost-user GET_FEATURES: flags 0x5 \(only version and NEED_REPLY/,
);

expectViolation(
  "a payload larger than any request",
  (s) => {
    s.msg.begin(REQ.SET_OWNER);
    s.msg.size = 100000;
    s.send([], VHOST_USER_HDR_SIZE); // the header alone; the backend must not try to read it all
  },
  /^vhost-user SET_OWNER: payload of 100000 bytes exceeds 4096$/,
);

expectViolation(
  "a status above 8 bits",
  (s) => {
    s.msg.begin(REQ.SET_STATUS).setU64(0x100n);
    s.send();
  },
  /^vhost-user SET_STATUS: status 0x100 is not 8 bits$/,
);

Deno.test("backend: replies, GET_CONFIG, and a new session after a violation", () => {
  const mac = new Uint8Array([2, 0, 0, 0xaa, 0xbb, 0xcc]);
  const s = session({
    protocolFeatures: protocolFeatureMask("MQ", "REPLY_ACK", "STATUS", "CONFIG"),
    mac,
    mtu: 1500,
  });
  try {
    const m = s.msg;
    m.begin(REQ.GET_PROTOCOL_FEATURES);
    s.send();
    s.reply();
    assert.equal(m.u64, protocolFeatureMask("MQ", "REPLY_ACK", "STATUS", "CONFIG", "MTU"));
    m.begin(REQ.GET_CONFIG).setConfig(0, 12, 0);
    s.send();
    s.reply();
    assert.equal(m.request, REQ.GET_CONFIG);
    assert.equal(m.size, 0, "refused before CONFIG is negotiated: empty payload (vhost-user.rst)");
    m.begin(REQ.SET_PROTOCOL_FEATURES).setU64(protocolFeatureMask("CONFIG", "REPLY_ACK"));
    s.send();
    m.begin(REQ.GET_CONFIG).setConfig(0, 12, 0);
    s.send();
    s.reply();
    assert.equal(m.flags, 0x5);
    assert.deepEqual(m.configAccess(), { offset: 0, size: 12, flags: 0 });
    const cfg = m.configData();
    assert.deepEqual([...cfg.subarray(0, 6)], [...mac]);
    assert.equal(cfg[6] | cfg[7] << 8, 1, "status: LINK_UP");
    assert.equal(cfg[8] | cfg[9] << 8, 1, "max_virtqueue_pairs");
    assert.equal(cfg[10] | cfg[11] << 8, 1500, "mtu");
    m.begin(REQ.NET_SET_MTU, VHOST_USER_NEED_REPLY).setU64(9000n);
    s.send();
    s.reply();
    assert.equal(m.u64, 0n);
    assert.equal(s.backend.frontendMtu, 9000);
    m.begin(REQ.SEND_RARP).setU64(0n);
    s.send();
    m.begin(REQ.GET_QUEUE_NUM);
    s.send();
    s.reply();
    assert.equal(m.u64, 1n);
    assert.ok(s.backend.connected);

    // A violation ends the session; the listening socket takes the next frontend.
    m.begin(REQ.SET_VRING_ENABLE).setVringState(0, 2);
    s.send();
    assert.match(s.backend.error!.message, /SET_VRING_ENABLE: num 2 is not 0 or 1/);
    assert.ok(!s.backend.connected && !s.backend.closed);
    const raw2 = unixConnect(s.backend.path);
    try {
      assert.ok(s.backend.poll());
      assert.ok(s.backend.connected);
      assert.equal(s.backend.error, null);
    } finally {
      closeQuietly(raw2);
    }
    assert.ok(s.backend.poll(), "sees end of stream");
    assert.ok(!s.backend.connected);
    assert.equal(s.backend.error, null);
    assert.ok(!s.backend.poll(), "nothing pending: no progress");
  } finally {
    s.close();
  }
  assert.ok(s.backend.closed);
});

Deno.test("backend: connect() to a frontend in server mode, closed when it leaves", () => {
  const dir = Deno.makeTempDirSync({ prefix: "vhost-user-test-" });
  const path = `${dir}/server.sock`;
  const listenFd = unixListen(path);
  const backend = VhostUserBackend.connect(path);
  let conn = -1;
  try {
    const fds: number[] = [];
    // The backend's connect completed through the backlog; accept it as a frontend would.
    conn = unixAccept(listenFd);
    const m = new VhostUserMessage().begin(REQ.GET_FEATURES);
    sendMsg(conn, m.bytes, m.length, []);
    assert.ok(backend.poll());
    recvExact(conn, m.bytes, 20, fds, 1000);
    assert.equal(m.u64 & BIT30, BIT30);
    closeQuietly(conn);
    conn = -1;
    assert.ok(backend.poll());
    assert.ok(backend.closed, "a connected backend closes with its session");
  } finally {
    backend.close();
    closeQuietly(conn);
    closeQuietly(listenFd);
    Deno.removeSync(dir, { recursive: true });
  }
});

// --- GuestMemory ----------------------------------------------------------------------------

Deno.test("GuestMemory: translate by guest physical address, translateVA by user address", () => {
  const fds = [memfd(0x3000), memfd(0x2000)];
  const mem = GuestMemory.map([
    {
      guestPhysAddr: 0n,
      memorySize: 0x2000n,
      userspaceAddr: 0x7f00_0000_0000n,
      mmapOffset: 0x1000n,
    },
    {
      guestPhysAddr: 0x1_0000_0000n,
      memorySize: 0x2000n,
      userspaceAddr: 0x7f00_1000_0000n,
      mmapOffset: 0n,
    },
  ], fds);
  try {
    assert.equal(mem.translate(0x10, 0, 16), 0);
    assert.equal(mem.offset, 0x10);
    assert.equal(mem.translate(0x1ff0, 0, 16), 0);
    assert.equal(mem.translate(0x1ff0, 0, 17), -1, "runs past region 0");
    assert.equal(mem.translate(0x100, 1, 0x100), 1);
    assert.equal(mem.offset, 0x100);
    assert.equal(mem.translate(0x100, 0x20_0000, 1), -1, "beyond 2^53");
    assert.equal(mem.translateVA(0x7f00_1000_0800, 8), 1);
    assert.equal(mem.offset, 0x800);
    assert.equal(mem.translateVA(0x100, 8), -1, "guest physical addresses are not user addresses");
    // Region 0's view starts at mmap_offset 0x1000 of its fd.
    mem.bytes(0)[0] = 7;
    assert.equal(mem.bytes(0).length, 0x2000);
    assert.equal(mem.viewVA(0x7f00_0000_0000, 1)![0], 7);
    assert.equal(mem.viewVA(0x7f00_0000_1fff, 2), null);
  } finally {
    mem.close();
    mem.close();
  }
});

Deno.test("GuestMemory: rejects bad tables and closes the fds it was given", () => {
  const before = openFds();
  const r = { guestPhysAddr: 0n, memorySize: 4096n, userspaceAddr: 0n, mmapOffset: 0n };
  assert.throws(() => GuestMemory.map([], []), /0 regions; between 1 and 8/);
  assert.throws(
    () => GuestMemory.map([{ ...r, memorySize: 0n }], [memfd(4096)]),
    /region 0 has size 0/,
  );
  assert.throws(
    () => GuestMemory.map([{ ...r, mmapOffset: (1n << 64n) - 1n }], [memfd(4096)]),
    /overflows 64 bits/,
  );
  assert.throws(
    () => GuestMemory.map([r, { ...r, guestPhysAddr: 0x10000n }], [memfd(4096), memfd(4096)]),
    /regions 0 and 1 overlap in user addresses/,
  );
  assert.throws(
    () => GuestMemory.map([{ ...r, userspaceAddr: 1n << 53n }], [memfd(4096)]),
    /userspace_addr 0x20000000000000 \+ size 0x1000 ends beyond 2\^53/,
  );
  assert.throws(() => GuestMemory.map([r], [memfd(4096), memfd(4096)]), /1 regions but 2 file/);
  assert.equal(openFds(), before);
});

Deno.test("GuestMemory in a MemoryArena: two frontends' regions in one buffer, places never reused", () => {
  const before = openFds();
  const arena = MemoryArena.reserve(16 * 4096);
  const r = { guestPhysAddr: 0n, memorySize: 0x2000n, userspaceAddr: 0n, mmapOffset: 0x1000n };
  const fdA = memfd(0x3000);
  const a = GuestMemory.map([r], [fdA], arena);
  const b = GuestMemory.map([r], [memfd(0x3000)], arena);
  try {
    assert.equal(a.bytes(0).buffer, arena.buffer, "A's region is a view into the arena");
    assert.equal(b.bytes(0).buffer, arena.buffer, "and so is B's");
    assert.equal(a.bytes(0).length, 0x2000);
    // The views see the frontends' files: what is written through one is in the other mapping.
    a.bytes(0)[5] = 0xa5;
    b.bytes(0)[5] = 0xb5;
    const file = mmapShared(fdA, 0x3000); // fdA is still a's
    const inFile = new Uint8Array(file.buffer)[0x1000 + 5];
    munmap(file);
    assert.equal(inFile, 0xa5, "A's byte is in A's file (mmap_offset 0x1000 honoured)");
    // One copy between the two frontends' memories: a copyWithin of the arena.
    const sa = a.bytes(0).byteOffset, sb = b.bytes(0).byteOffset;
    arena.bytes.copyWithin(sb + 100, sa + 5, sa + 6);
    assert.equal(b.bytes(0)[100], 0xa5);
    const kept = a.bytes(0);
    a.close();
    assert.equal(kept[5], 0, "a view kept after close reads zeros, not A's memory");
    kept[5] = 1; // writes nowhere shared, and does not fault
    assert.equal(b.bytes(0)[5], 0xb5, "B is untouched");
    // A new frontend gets a new place: the kept view never sees its memory.
    const c = GuestMemory.map([r], [memfd(0x3000)], arena);
    c.bytes(0)[5] = 0xc5;
    assert.equal(kept[5], 1);
    assert.notEqual(c.bytes(0).byteOffset, sa);
    // The arena full: the next region is mapped on its own (16 pages: 3 regions of 3 used).
    const d = GuestMemory.map([{ ...r, memorySize: 0x8000n }], [memfd(0x9000)], arena);
    assert.notEqual(d.bytes(0).buffer, arena.buffer, "mapped outside the full arena");
    d.bytes(0)[0x7fff] = 1;
    c.close();
    d.close();
  } finally {
    a.close();
    b.close();
    arena.close();
  }
  assert.equal(openFds(), before, "every region's fd closed");
});

// --- against DPDK's vhost PMD -----------------------------------------------------------------

Deno.test({
  name: "frontend against dpdk-testpmd net_vhost: negotiate, two split rings, DRIVER_OK, stop",
  ignore: requireTestpmd(1),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vhost-user-dpdk-" });
    const sock = `${dir}/vhost.sock`;
    const mem = SharedMemory.create(2 << 20, { hugepages: false });
    const fds = [eventfd(), eventfd(), eventfd(), eventfd()];
    let fe: VhostUserFrontend | null = null;
    try {
      await using tp = await Testpmd.start({ vdev: `net_vhost0,iface=${sock},queues=1`, cpu: 0 });
      await tp.waitForSocket(sock);
      fe = VhostUserFrontend.connect(sock);
      const offered = fe.getFeatures();
      assert.equal(offered & BIT30, 0n, "bit 30 hidden from the driver");
      assert.ok((offered & featureMask("F_VERSION_1")) !== 0n);
      // DPDK offers BACKEND_REQ too: SET_BACKEND_REQ_FD was acked (REPLY_ACK) in connect.
      assert.equal(
        fe.protocolFeatures,
        protocolFeatureMask("MQ", "REPLY_ACK", "STATUS", "BACKEND_REQ"),
      );
      assert.equal(fe.checkConnection(), null, "the back-end channel is quiet");
      // DPDK 22.11 answers GET_QUEUE_NUM with VHOST_MAX_QUEUE_PAIRS (128) whatever queues= is.
      assert.ok(fe.maxQueuePairs >= 1);

      fe.setStatus(ACKNOWLEDGE);
      fe.setStatus(ACKNOWLEDGE | DRIVER);
      fe.setFeatures(featureMask("F_VERSION_1"));
      fe.setStatus(ACKNOWLEDGE | DRIVER | FEATURES_OK);
      assert.equal(fe.getStatus() & FEATURES_OK, FEATURES_OK, "DPDK accepted the features");
      fe.setMemTable([mem]);
      fe.setupQueue({ ...ringSetup(mem, 0, 256, 0), kickFd: fds[0], callFd: fds[1] });
      fe.setupQueue({ ...ringSetup(mem, 1, 256, 0), kickFd: fds[2], callFd: fds[3] });
      fe.enableQueue(0, true);
      fe.enableQueue(1, true);
      fe.setStatus(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
      await tp.waitForOutput(/virtio is now ready for processing/, 10000);
      await tp.waitForOutput(/Port 0: link state change event/, 10000);
      assert.ok(await tp.linkUp());
      assert.equal(fe.getStatus(), 0xf);

      // Stop as DPDK's frontend does: disable, then GET_VRING_BASE per ring.
      assert.equal(fe.stopQueue(0), 0);
      assert.equal(fe.stopQueue(1), 0);
      fe.close();
      await tp.waitForOutput(
        /vhost peer closed|Port 0: link state change event[\s\S]*Port 0: link state change event/,
        10000,
      );
    } finally {
      fe?.close();
      for (const fd of fds) closeQuietly(fd);
      mem.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// --- DPDK's virtio-user PMD against VhostUserBackend ------------------------------------------

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const packed of [false, true]) {
  Deno.test({
    name: `dpdk-testpmd net_virtio_user against VhostUserBackend (${
      packed ? "packed" : "split"
    }): start, txonly frames counted, stop`,
    ignore: requireTestpmd(1),
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: "vhost-user-dpdk-" });
      const sock = `${dir}/vhost.sock`;
      const backend = VhostUserBackend.listen(sock, {
        features: featureMask("F_VERSION_1", "F_RING_PACKED", "RING_F_INDIRECT_DESC"),
      });
      const chain = new DescriptorChain(256);
      let frames = 0;
      // The device loop: protocol messages, then drain the transmitq (vring 1).
      const timer = setInterval(() => {
        backend.poll();
        const tx = backend.queue(1);
        if (tx === null) return;
        while (tx.pop(chain)) {
          frames++;
          tx.pushUsed(chain.id, 0);
        }
        tx.publishUsed();
      }, 1);
      try {
        await using tp = await Testpmd.start({
          vdev: `net_virtio_user0,path=${sock},queues=1,packed_vq=${packed ? 1 : 0},queue_size=256`,
          forwardMode: "txonly",
          cpu: 1,
        });
        await waitFor("the device to start", () => backend.started);
        assert.deepEqual(backend.running, [0, 1]);
        assert.equal((backend.features & featureMask("F_RING_PACKED")) !== 0n, packed);
        assert.equal(backend.vrings[1].size, 256);
        assert.ok(
          backend.vrings[1].queue instanceof (packed ? PackedDeviceQueue : SplitDeviceQueue),
        );
        assert.equal(backend.protocolFeatures, protocolFeatureMask("MQ", "REPLY_ACK", "STATUS"));
        assert.equal(backend.status & DRIVER_OK, DRIVER_OK);

        await tp.startForwarding();
        await new Promise((r) => setTimeout(r, 300));
        const sent = await tp.stopForwarding();
        // Every frame testpmd's PMD accepted is in the ring: wait (bounded) until the device loop
        // has taken them all, however late its timer runs on a loaded machine.
        await waitFor("the device to drain the ring", () => frames >= sent.txPackets);
        assert.ok(sent.txPackets > 0, "testpmd sent frames");
        assert.equal(frames, sent.txPackets, "every frame testpmd queued reached the device");
        await tp.stop();
        await waitFor("the session to end", () => !backend.connected);
        assert.equal(backend.error, null, "DPDK's frontend followed the rules");
        assert.ok(!backend.started);
      } finally {
        clearInterval(timer);
        backend.close();
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test({
  name: "dpdk-testpmd net_virtio_user server=1: VhostUserBackend.connect() serves it",
  ignore: requireTestpmd(1),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "vhost-user-dpdk-" });
    const sock = `${dir}/virtio-user.sock`;
    let backend: VhostUserBackend | null = null;
    let timer: ReturnType<typeof setInterval> | undefined;
    try {
      // DPDK 22.11's virtio-user in server mode waits in accept() before its prompt appears.
      const starting = Testpmd.start({
        vdev: `net_virtio_user0,path=${sock},queues=1,server=1,queue_size=256`,
        cpu: 1,
      });
      await waitFor("the frontend's socket", () => {
        try {
          return Deno.lstatSync(sock).isSocket === true;
        } catch {
          return false;
        }
      });
      // The socket file exists from bind(); listen() may not have run yet: retry briefly.
      const deadline = Date.now() + 10000;
      while (backend === null) {
        try {
          backend = VhostUserBackend.connect(sock);
        } catch (e) {
          if (!/ECONNREFUSED/.test((e as Error).message) || Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 10));
        }
      }
      const b: VhostUserBackend = backend;
      timer = setInterval(() => b.poll(), 1);
      await using tp = await starting;
      await waitFor("the device to start", () => b.started);
      assert.deepEqual(b.running, [0, 1]);
      await tp.stop();
      await waitFor("the session to end", () => b.closed);
      assert.equal(b.error, null);
    } finally {
      clearInterval(timer);
      backend?.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
