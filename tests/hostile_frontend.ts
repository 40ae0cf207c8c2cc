/**
 * A vhost-user frontend for tests that can break every rule: it speaks the protocol with the
 * message codec and raw `sendMsg` (any request, any payload, any fds), owns a memfd it shares in
 * SET_MEM_TABLE, and writes ring descriptors itself with typed arrays (split and packed), so a
 * test can put whatever it wants in front of a device.
 *
 * ```
 *   test ──► HostileFrontend ──socket (codec, raw sendMsg)──► device under test
 *              │ memfd (mapped here and by the device)
 *              └─ SplitRingWriter / PackedRingWriter: descriptors written in place
 * ```
 *
 * Guest addresses: the memfd's byte `o` is guest address `base + o` (default base 4 GiB, so
 * descriptors carry addresses above 2^32); the memory table says so for both guest physical and
 * user addresses, as DPDK's virtio-user does.
 *
 * @module
 */

import { eventfd } from "../ffi/eventfd.ts";
import { closeQuietly } from "../ffi/fd.ts";
import {
  ftruncate,
  type Mapping,
  memfdCreate,
  MFD_CLOEXEC,
  mmapShared,
  munmap,
} from "../ffi/memory.ts";
import { pollFd, POLLIN } from "../ffi/poll.ts";
import { recvExact, recvMsg, sendMsg, unixConnect } from "../ffi/unix_socket.ts";
import { packedRingLayout } from "../lib/virtio/packed_ring.ts";
import { splitRingLayout } from "../lib/virtio/split_ring.ts";
import { DeviceStatus } from "../lib/virtio/status.ts";
import type { RingLayout } from "../lib/virtio/virtqueue.ts";
import {
  type MemoryTableRegion,
  PROTOCOL_FEATURES_BIT,
  protocolFeatureMask,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_NEED_REPLY,
  VHOST_USER_U64_SIZE,
  VhostUserMessage,
  VhostUserRequest as REQ,
} from "../lib/vhost_user/message.ts";

/** Descriptor flags (virtio 1.2 §2.7.5, §2.8.13). */
export const DESC_F_NEXT = 1;
/** Device-writable buffer. */
export const DESC_F_WRITE = 2;
/** The buffer is an indirect descriptor table. */
export const DESC_F_INDIRECT = 4;
const PACKED_F_AVAIL = 1 << 7;
const PACKED_F_USED = 1 << 15;

/** Options of {@linkcode HostileFrontend.connect}. */
export interface HostileFrontendOptions {
  /** Bytes of the shared memfd (default 1 MiB). */
  memorySize?: number;
  /** Guest address of the memfd's first byte (default 0x1_0000_0000). */
  base?: number;
  /** How long to wait for replies and for the device to hang up, ms (default 5000). */
  timeoutMs?: number;
}

/** Where one ring lies, as the frontend announces it in SET_VRING_NUM/BASE/ADDR. */
export interface RingPlacement {
  /** Ring size. */
  size: number;
  /** SET_VRING_BASE value (default 0 split, `1 << 15` packed). */
  base?: number;
  /** Guest address of the descriptor table (split) or descriptor ring (packed). */
  desc: number;
  /** Guest address of the available ring (split) or driver event suppression area (packed). */
  driver: number;
  /** Guest address of the used ring (split) or device event suppression area (packed). */
  device: number;
}

/**
 * The test frontend. Methods named after requests send them the way DPDK's frontend does
 * (NEED_REPLY when REPLY_ACK is in use, the ack checked); {@linkcode send} sends `msg` as it is.
 *
 * @example
 * ```ts ignore
 * using fe = HostileFrontend.connect(path);
 * fe.negotiate(featureMask("F_VERSION_1"));
 * fe.setMemTable();
 * const tx = fe.splitRing(1, 0x8000, 256);
 * tx.desc(0, fe.base + 0x10000, 8, 0, 0); // 8 bytes: shorter than the virtio-net header
 * tx.makeAvailable(0);
 * fe.startRings([fe.splitRing(0, 0, 256), tx]);
 * fe.driverOk();
 * fe.waitHangUp(); // the device ended the session
 * ```
 */
export class HostileFrontend {
  /** The message buffer: build a request here, then {@linkcode send}. */
  readonly msg: VhostUserMessage = new VhostUserMessage();
  /** Socket path. */
  readonly path: string;
  /** The shared memory's fd (sent with SET_MEM_TABLE). */
  readonly memfd: number;
  /** Guest address of `bytes[0]`. */
  readonly base: number;
  /** The shared memory, as mapped here. */
  readonly bytes: Uint8Array;
  /** Reply and hang-up timeout, ms. */
  readonly timeoutMs: number;
  /** Features the device offered (GET_FEATURES), after {@linkcode negotiate}. */
  offeredFeatures = 0n;
  /** Features sent with SET_FEATURES. */
  features = 0n;
  /** Protocol features sent with SET_PROTOCOL_FEATURES. */
  protocolFeatures = 0n;

  #fd: number;
  readonly #mapping: Mapping;
  readonly #eventfds: number[] = [];
  readonly #fdsIn: number[] = [];
  #closed = false;

  private constructor(
    fd: number,
    path: string,
    memfd: number,
    mapping: Mapping,
    base: number,
    t: number,
  ) {
    this.#fd = fd;
    this.path = path;
    this.memfd = memfd;
    this.#mapping = mapping;
    this.bytes = new Uint8Array(mapping.buffer);
    this.base = base;
    this.timeoutMs = t;
  }

  /**
   * Creates the memfd, maps it, and connects to a device listening at `path`.
   *
   * @example
   * ```ts ignore
   * using fe = HostileFrontend.connect("/run/device.sock", { memorySize: 1 << 20 });
   * ```
   */
  static connect(path: string, options: HostileFrontendOptions = {}): HostileFrontend {
    const size = options.memorySize ?? 1 << 20;
    const memfd = memfdCreate("hostile-frontend", MFD_CLOEXEC);
    let mapping: Mapping | null = null;
    try {
      ftruncate(memfd, size);
      mapping = mmapShared(memfd, size);
      const fd = unixConnect(path);
      return new HostileFrontend(
        fd,
        path,
        memfd,
        mapping,
        options.base ?? 0x1_0000_0000,
        options.timeoutMs ?? 5000,
      );
    } catch (e) {
      if (mapping !== null) munmap(mapping);
      closeQuietly(memfd);
      throw e;
    }
  }

  /** Bytes of shared memory. */
  get size(): number {
    return this.bytes.length;
  }

  /** Guest address of byte `offset` of the shared memory. */
  addr(offset: number): number {
    return this.base + offset;
  }

  // --- raw transport -----------------------------------------------------------------------

  /** Sends `msg` exactly as built (or its first `len` bytes) with `fds`; no flag added. */
  send(fds: readonly number[] = [], len = this.msg.length): void {
    sendMsg(this.#fd, this.msg.bytes, len, fds);
  }

  /** Reads one reply into `msg` (header and payload); throws on end of stream or timeout. */
  receive(): void {
    const m = this.msg;
    recvExact(this.#fd, m.bytes, VHOST_USER_HDR_SIZE, this.#fdsIn, this.timeoutMs);
    this.#dropFds();
    if (m.size > 0) {
      recvExact(
        this.#fd,
        m.bytes.subarray(VHOST_USER_HDR_SIZE),
        m.size,
        this.#fdsIn,
        this.timeoutMs,
      );
      this.#dropFds();
    }
  }

  /**
   * Sends `msg` as a request that expects no reply of its own: with NEED_REPLY when REPLY_ACK
   * was negotiated, then checks the ack is 0 (vhost-user.rst "REPLY_ACK").
   */
  request(fds: readonly number[] = []): void {
    const request = this.msg.request;
    const ack = (this.protocolFeatures & protocolFeatureMask("REPLY_ACK")) !== 0n;
    if (ack) this.msg.flags |= VHOST_USER_NEED_REPLY;
    this.send(fds);
    if (!ack) return;
    this.receive();
    if (this.msg.request !== request || this.msg.size !== VHOST_USER_U64_SIZE) {
      throw new Error(`reply to ${request}: got request ${this.msg.request} size ${this.msg.size}`);
    }
    if (this.msg.u64 !== 0n) {
      throw new Error(`device refused request ${request} (ack ${this.msg.u64})`);
    }
  }

  /** Sends a request without payload and returns its u64 reply. */
  getU64(request: number): bigint {
    this.msg.begin(request);
    this.send();
    this.receive();
    if (this.msg.request !== request || this.msg.size !== VHOST_USER_U64_SIZE) {
      throw new Error(`reply to ${request}: got request ${this.msg.request} size ${this.msg.size}`);
    }
    return this.msg.u64;
  }

  /**
   * Waits until the device closes the connection (end of stream), reading and discarding any
   * replies on the way. Returns the REPLY_ACK values seen (a refused request answers 1), or
   * throws when the device keeps the session open past the timeout.
   */
  waitHangUp(timeoutMs = this.timeoutMs): bigint[] {
    const acks: bigint[] = [];
    const deadline = performance.now() + timeoutMs;
    const m = this.msg;
    for (;;) {
      let n: number;
      try {
        n = recvMsg(this.#fd, m.bytes, VHOST_USER_HDR_SIZE, this.#fdsIn, true);
      } catch (e) {
        if (/ECONNRESET/.test((e as Error).message)) return acks;
        throw e;
      }
      this.#dropFds();
      if (n === 0) return acks;
      if (n > 0) {
        if (n === VHOST_USER_HDR_SIZE && m.size > 0 && m.size <= 4096) {
          recvExact(this.#fd, m.bytes.subarray(VHOST_USER_HDR_SIZE), m.size, this.#fdsIn, 1000);
          this.#dropFds();
          if (m.size === VHOST_USER_U64_SIZE) acks.push(m.u64);
        }
        continue;
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(
          `the device at ${this.path} did not end the session within ${timeoutMs} ms`,
        );
      }
      pollFd(this.#fd, POLLIN, left);
    }
  }

  // --- the usual sequence (DPDK's frontend order) ------------------------------------------

  /**
   * SET_OWNER, GET_FEATURES, GET/SET_PROTOCOL_FEATURES (MQ, REPLY_ACK, STATUS as offered),
   * SET_FEATURES with `features` (bit 30 added when offered; not checked against the offer, so a
   * test can send what was not offered). Returns the offered features.
   */
  negotiate(features: bigint): bigint {
    this.msg.begin(REQ.SET_OWNER);
    this.send();
    this.offeredFeatures = this.getU64(REQ.GET_FEATURES);
    if ((this.offeredFeatures & PROTOCOL_FEATURES_BIT) !== 0n) {
      const offered = this.getU64(REQ.GET_PROTOCOL_FEATURES);
      this.protocolFeatures = offered & protocolFeatureMask("MQ", "REPLY_ACK", "STATUS");
      this.msg.begin(REQ.SET_PROTOCOL_FEATURES).setU64(this.protocolFeatures);
      this.send(); // the ack applies from the next request on
      features |= PROTOCOL_FEATURES_BIT;
    }
    this.features = features;
    this.msg.begin(REQ.SET_FEATURES).setU64(features);
    this.request();
    return this.offeredFeatures;
  }

  /**
   * SET_MEM_TABLE. Default: one region, the whole memfd at {@linkcode base}. `regions` and `fds`
   * replace it (one fd per region; the memfd is used when `fds` is omitted).
   */
  setMemTable(regions?: MemoryTableRegion[], fds?: number[]): void {
    const table = regions ?? [{
      guestPhysAddr: BigInt(this.base),
      memorySize: BigInt(this.size),
      userspaceAddr: BigInt(this.base),
      mmapOffset: 0n,
    }];
    this.msg.begin(REQ.SET_MEM_TABLE).setMemoryTable(table);
    this.request(fds ?? table.map(() => this.memfd));
  }

  /**
   * Sets up vring `index` as DPDK does: SET_VRING_CALL (eventfd), SET_VRING_NUM, SET_VRING_BASE,
   * SET_VRING_ADDR, SET_VRING_KICK (eventfd), SET_VRING_ENABLE 1. Stops at the first refusal.
   */
  setupRing(index: number, ring: RingPlacement): void {
    const m = this.msg;
    const call = this.#eventfd();
    m.begin(REQ.SET_VRING_CALL).setVringFile(index, true);
    this.request([call]);
    m.begin(REQ.SET_VRING_NUM).setVringState(index, ring.size);
    this.request();
    m.begin(REQ.SET_VRING_BASE).setVringState(index, ring.base ?? (this.packed ? 1 << 15 : 0));
    this.request();
    m.begin(REQ.SET_VRING_ADDR).setVringAddress({
      index,
      flags: 0,
      desc: BigInt(ring.desc),
      used: BigInt(ring.device),
      avail: BigInt(ring.driver),
      log: 0n,
    });
    this.request();
    const kick = this.#eventfd();
    m.begin(REQ.SET_VRING_KICK).setVringFile(index, true);
    this.request([kick]);
    if ((this.features & PROTOCOL_FEATURES_BIT) !== 0n) {
      m.begin(REQ.SET_VRING_ENABLE).setVringState(index, 1);
      this.request();
    }
  }

  /** Sets up each writer's ring (see {@linkcode setupRing}). */
  startRings(rings: readonly RingWriter[]): void {
    for (const r of rings) this.setupRing(r.index, r.placement);
  }

  /** SET_STATUS with ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK (when STATUS is in use). */
  driverOk(): void {
    if ((this.protocolFeatures & protocolFeatureMask("STATUS")) === 0n) return;
    const { ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK } = DeviceStatus;
    this.msg.begin(REQ.SET_STATUS).setU64(BigInt(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK));
    this.request();
  }

  /** True when F_RING_PACKED is in {@linkcode features}. */
  get packed(): boolean {
    return (this.features & (1n << 34n)) !== 0n;
  }

  // --- rings -------------------------------------------------------------------------------

  /** A split ring of `size` for vring `index`, placed at byte `offset` of the memory. */
  splitRing(index: number, offset: number, size: number): SplitRingWriter {
    return new SplitRingWriter(this, index, offset, size);
  }

  /** A packed ring of `size` for vring `index`, placed at byte `offset` of the memory. */
  packedRing(index: number, offset: number, size: number): PackedRingWriter {
    return new PackedRingWriter(this, index, offset, size);
  }

  /** Writes a 16-byte descriptor `{addr u64, len u32, a u16, b u16}` at byte `offset`. */
  writeDesc(offset: number, addr: number, len: number, a: number, b: number): void {
    const v = new DataView(this.bytes.buffer, offset, 16);
    v.setUint32(0, addr % 0x1_0000_0000, true);
    v.setUint32(4, Math.floor(addr / 0x1_0000_0000), true);
    v.setUint32(8, len, true);
    v.setUint16(12, a, true);
    v.setUint16(14, b, true);
  }

  // --- teardown ----------------------------------------------------------------------------

  /** True after {@linkcode close}. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the socket, the eventfds, the memfd, and unmaps the memory. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#fd);
    this.#fd = -1;
    for (const fd of this.#eventfds) closeQuietly(fd);
    this.#eventfds.length = 0;
    munmap(this.#mapping);
    closeQuietly(this.memfd);
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #eventfd(): number {
    const fd = eventfd();
    this.#eventfds.push(fd);
    return fd;
  }

  #dropFds(): void {
    for (const fd of this.#fdsIn) closeQuietly(fd);
    this.#fdsIn.length = 0;
  }
}

/** A ring the frontend builds by hand. */
export interface RingWriter {
  /** Vring index (net: 0 receiveq, 1 transmitq). */
  readonly index: number;
  /** Ring size. */
  readonly size: number;
  /** Layout of its three areas from `offset`. */
  readonly layout: RingLayout;
  /** Byte offset of the ring block in the shared memory. */
  readonly offset: number;
  /** What SET_VRING_NUM/ADDR announce; fields may be changed before setup to lie. */
  readonly placement: RingPlacement;
}

/** A split ring (virtio 1.2 §2.7) written descriptor by descriptor. */
export class SplitRingWriter implements RingWriter {
  readonly index: number;
  readonly size: number;
  readonly layout: RingLayout;
  readonly offset: number;
  readonly placement: RingPlacement;
  readonly #fe: HostileFrontend;
  readonly #avail: Uint16Array;
  readonly #used: Uint16Array;
  #availIdx = 0;

  /** Places the ring at `offset` (64-byte aligned) of `fe`'s memory. */
  constructor(fe: HostileFrontend, index: number, offset: number, size: number) {
    this.#fe = fe;
    this.index = index;
    this.size = size;
    this.offset = offset;
    const l = this.layout = splitRingLayout(size);
    this.#avail = new Uint16Array(fe.bytes.buffer, offset + l.driverOffset, 3 + size);
    this.#used = new Uint16Array(fe.bytes.buffer, offset + l.deviceOffset, 3 + 4 * size);
    this.placement = {
      size,
      base: 0,
      desc: fe.addr(offset + l.descOffset),
      driver: fe.addr(offset + l.driverOffset),
      device: fe.addr(offset + l.deviceOffset),
    };
  }

  /** Writes descriptor `i` of the table. */
  desc(i: number, addr: number, len: number, flags: number, next: number): void {
    this.#fe.writeDesc(this.offset + this.layout.descOffset + 16 * i, addr, len, flags, next);
  }

  /** Puts `head` in the next avail ring entry and publishes avail.idx (§2.7.13). */
  makeAvailable(head: number): void {
    this.#avail[2 + (this.#availIdx % this.size)] = head;
    this.#availIdx = (this.#availIdx + 1) & 0xffff;
    Atomics.store(this.#avail, 1, this.#availIdx); // entries before idx (§2.7.13.3)
  }

  /** Sets avail.idx to any value (to lie about how many entries are available). */
  setAvailIdx(idx: number): void {
    this.#availIdx = idx & 0xffff;
    Atomics.store(this.#avail, 1, this.#availIdx);
  }

  /** used.idx as the device last published it. */
  get usedIdx(): number {
    return Atomics.load(this.#used, 1);
  }
}

/** A packed ring (virtio 1.2 §2.8) written descriptor by descriptor; first lap (wrap 1). */
export class PackedRingWriter implements RingWriter {
  readonly index: number;
  readonly size: number;
  readonly layout: RingLayout;
  readonly offset: number;
  readonly placement: RingPlacement;
  readonly #fe: HostileFrontend;
  readonly #flags: Uint16Array;

  /** Places the ring at `offset` (64-byte aligned) of `fe`'s memory. */
  constructor(fe: HostileFrontend, index: number, offset: number, size: number) {
    this.#fe = fe;
    this.index = index;
    this.size = size;
    this.offset = offset;
    const l = this.layout = packedRingLayout(size);
    this.#flags = new Uint16Array(fe.bytes.buffer, offset + l.descOffset, 8 * size);
    this.placement = {
      size,
      base: 1 << 15,
      desc: fe.addr(offset + l.descOffset),
      driver: fe.addr(offset + l.driverOffset),
      device: fe.addr(offset + l.deviceOffset),
    };
  }

  /**
   * Writes descriptor `slot` as available in the first lap (AVAIL = 1, USED = 0, §2.8.1) with
   * `flags` (NEXT, WRITE, INDIRECT). The flags are stored last, with a release store, so write a
   * chain's slots from its last to its first (§2.8.21.2).
   */
  desc(slot: number, addr: number, len: number, id: number, flags: number): void {
    this.#fe.writeDesc(this.offset + this.layout.descOffset + 16 * slot, addr, len, id, 0);
    Atomics.store(this.#flags, 8 * slot + 7, (flags | PACKED_F_AVAIL) & ~PACKED_F_USED);
  }

  /** True when the device marked `slot` used in the first lap (AVAIL = USED = 1). */
  used(slot: number): boolean {
    const f = Atomics.load(this.#flags, 8 * slot + 7);
    return (f & PACKED_F_AVAIL) !== 0 && (f & PACKED_F_USED) !== 0;
  }
}
