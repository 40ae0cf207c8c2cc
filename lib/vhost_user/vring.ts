/**
 * One vring of a vhost-user back-end and its state machine (vhost-user.rst, "Ring states"):
 * configured by SET_VRING_NUM / BASE / ADDR while stopped, started by SET_VRING_KICK, enabled
 * by SET_VRING_ENABLE, stopped by GET_VRING_BASE (which reports the position it stopped at).
 *
 * ```
 *   stopped ──NUM, BASE, ADDR (checked)──► configured ──KICK──► started (queue built over the
 *      ▲                                                          mapped areas)
 *      └──────────── GET_VRING_BASE / end of session ◄──────────────┘
 * ```
 *
 * Every value the front-end sends is checked here, where the rule lives; a broken rule throws
 * a {@linkcode VhostUserError} naming the request.
 *
 * @module
 */

import { closeQuietly } from "../../ffi/fd.ts";
import { PackedDeviceQueue } from "../virtio/packed_ring.ts";
import { SplitDeviceQueue } from "../virtio/split_ring.ts";
import type { DeviceQueue } from "../virtio/virtqueue.ts";
import type { GuestMemory } from "./guest_memory.ts";
import { VhostUserError, VhostUserRequest, type VringAddress } from "./message.ts";

const REQ = VhostUserRequest;

/** Largest ring size (virtio 1.2 §2.7, §2.8). */
const MAX_RING_SIZE = 32768;

/** Areas of a ring as SET_VRING_ADDR gave them (front-end virtual addresses). */
export interface VringAddresses {
  /** Descriptor table (split) or descriptor ring (packed). */
  readonly desc: number;
  /** Available ring (split) or driver event suppression area (packed). */
  readonly driver: number;
  /** Used ring (split) or device event suppression area (packed). */
  readonly device: number;
}

/**
 * One vring as the front-end configured it. A device reads `callFd` (and `kickFd`) each time it
 * needs them: the front-end may replace them at any time with SET_VRING_CALL / SET_VRING_KICK.
 */
export class Vring {
  /** Vring index (net: 2i receiveq i, 2i+1 transmitq i). */
  readonly index: number;
  /** Ring size from SET_VRING_NUM (0: not set). */
  size = 0;
  /** Start position from SET_VRING_BASE (bits 0-15), updated when the ring stops. */
  base = 0;
  /** Ring addresses from SET_VRING_ADDR, or null. */
  addresses: VringAddresses | null = null;
  /** Descriptor area, mapped (set while the ring is started). */
  desc: Uint8Array | null = null;
  /** Driver area (available ring / driver event suppression), mapped. */
  driverArea: Uint8Array | null = null;
  /** Device area (used ring / device event suppression), mapped. */
  deviceArea: Uint8Array | null = null;
  /** Eventfd the front-end kicks, -1 when none (polling). */
  kickFd: number = -1;
  /** Eventfd to signal used buffers on, -1 when none (the front-end polls). */
  callFd: number = -1;
  /** Eventfd to signal errors on, -1 when none. */
  errFd: number = -1;
  /** SET_VRING_CALL was received (with an fd or with the no-fd bit). */
  callSet = false;
  /** SET_VRING_ENABLE state (rings start enabled when protocol features are not negotiated). */
  enabled = false;
  /** The device queue, built at SET_VRING_KICK; null while the ring is stopped. */
  queue: DeviceQueue | null = null;

  /**
   * A vring in its initial state (stopped, disabled, no fds).
   *
   * @param index vring index.
   * @example
   * ```ts
   * import { Vring } from "./vring.ts";
   * console.assert(!new Vring(0).ready);
   * ```
   */
  constructor(index: number) {
    this.index = index;
  }

  /** Started (kicked, addresses mapped) and a call fd was given: DPDK's `vq_is_ready` less `enabled`. */
  get ready(): boolean {
    return this.queue !== null && this.callSet;
  }

  /**
   * Throws unless the ring is stopped: its configuration changes only then.
   *
   * @example
   * ```ts
   * import { Vring } from "./vring.ts";
   * new Vring(0).checkStopped(8); // a fresh ring is stopped
   * ```
   */
  checkStopped(request: number): void {
    if (this.queue !== null) {
      throw new VhostUserError(
        request,
        `vring ${this.index} is started; stop it with GET_VRING_BASE before changing it`,
      );
    }
  }

  /**
   * SET_VRING_NUM: 1..32768, a power of two for split rings (virtio 1.2 §2.7).
   *
   * @example
   * ```ts
   * import { Vring } from "./vring.ts";
   * const v = new Vring(0);
   * v.setSize(256, false);
   * console.assert(v.size === 256);
   * ```
   */
  setSize(num: number, packed: boolean): void {
    this.checkStopped(REQ.SET_VRING_NUM);
    if (num < 1 || num > MAX_RING_SIZE) {
      throw new VhostUserError(REQ.SET_VRING_NUM, `ring size ${num} is outside 1..32768`);
    }
    if (!packed && (num & (num - 1)) !== 0) {
      throw new VhostUserError(
        REQ.SET_VRING_NUM,
        `ring size ${num} is not a power of two (split rings: virtio 1.2 §2.7)`,
      );
    }
    this.size = num;
  }

  /**
   * SET_VRING_BASE: a split ring's 16-bit avail index, or a packed ring's avail index and wrap
   * counter (bits 0-15) with its used index and wrap counter (bits 16-31).
   *
   * @example
   * ```ts
   * import { Vring } from "./vring.ts";
   * const v = new Vring(1);
   * v.setBase(1 << 15, true); // packed: index 0, wrap counter 1
   * console.assert(v.base === 0x8000);
   * ```
   */
  setBase(num: number, packed: boolean): void {
    this.checkStopped(REQ.SET_VRING_BASE);
    if (packed) {
      // Bits 0-14 avail index, 15 avail wrap counter, 16-30 used index, 31 used wrap counter
      // (vhost-user.rst; QEMU sends both halves, DPDK only the low one: used = avail then).
      const index = num & 0x7fff, used = (num >>> 16) & 0x7fff;
      if (this.size !== 0 && (index >= this.size || used >= this.size)) {
        throw new VhostUserError(
          REQ.SET_VRING_BASE,
          `packed ring position 0x${num.toString(16)} (avail ${index}, used ${used}) is not ` +
            `below the ring size ${this.size}`,
        );
      }
      this.base = num;
    } else {
      if (num > 0xffff) {
        throw new VhostUserError(REQ.SET_VRING_BASE, `split ring base ${num} is not 16 bits`);
      }
      this.base = num;
    }
  }

  /**
   * SET_VRING_ADDR: no dirty logging, areas aligned (§2.7 / §2.8: desc 16, avail 2 or packed
   * 4, used 4) and, once the size is known, inside `memory`.
   *
   * @example
   * ```ts ignore
   * vring.setAddresses(message.vringAddress(), packed, backend.memory);
   * ```
   */
  setAddresses(a: VringAddress, packed: boolean, memory: GuestMemory | null): void {
    this.checkStopped(REQ.SET_VRING_ADDR);
    if (a.flags !== 0) {
      throw new VhostUserError(
        REQ.SET_VRING_ADDR,
        `flags 0x${a.flags.toString(16)}: dirty logging (VHOST_VRING_F_LOG) is not supported`,
      );
    }
    if (memory === null) {
      throw new VhostUserError(
        REQ.SET_VRING_ADDR,
        "no memory table yet (send SET_MEM_TABLE first)",
      );
    }
    const addrs = {
      desc: checkAddress(a.desc, "descriptor area", 16),
      driver: checkAddress(a.avail, "driver area (avail)", packed ? 4 : 2),
      device: checkAddress(a.used, "device area (used)", 4),
    };
    if (this.size !== 0) this.#mapAreas(REQ.SET_VRING_ADDR, memory, packed, addrs); // a check
    this.addresses = addrs;
  }

  /**
   * Maps the ring areas and builds the device queue at position `base` (SET_VRING_KICK starts a
   * ring; a new memory table restarts running ones where they are).
   *
   * @example
   * ```ts ignore
   * vring.start(REQ.SET_VRING_KICK, memory, packed, eventIdx, vring.base, "vring 1 (tx0)", true);
   * ```
   */
  start(
    request: number,
    memory: GuestMemory | null,
    packed: boolean,
    eventIdx: boolean,
    base: number,
    name: string,
    inOrder = false,
  ): void {
    if (this.size === 0) {
      throw new VhostUserError(
        request,
        `vring ${this.index} has no size (send SET_VRING_NUM first)`,
      );
    }
    if (this.addresses === null) {
      throw new VhostUserError(
        request,
        `vring ${this.index} has no addresses (send SET_VRING_ADDR first)`,
      );
    }
    if (memory === null) {
      throw new VhostUserError(request, "no memory table yet (send SET_MEM_TABLE first)");
    }
    const [desc, driver, device] = this.#mapAreas(request, memory, packed, this.addresses);
    const options = { memory, eventIdx, base, inOrder };
    try {
      this.queue = packed
        ? new PackedDeviceQueue(desc, driver, device, this.size, name, options)
        : new SplitDeviceQueue(desc, driver, device, this.size, name, options);
    } catch (e) {
      this.queue = null;
      this.desc = this.driverArea = this.deviceArea = null;
      if (e instanceof VhostUserError) throw e;
      throw new VhostUserError(request, e instanceof Error ? e.message : String(e), { cause: e });
    }
    this.desc = desc;
    this.driverArea = driver;
    this.deviceArea = device;
  }

  /**
   * Drops the queue and the kick and call fds, keeping its position in `base` (GET_VRING_BASE):
   * `position` when given (≥ 0: the ring was served elsewhere), else the queue's.
   *
   * @example
   * ```ts
   * import { Vring } from "./vring.ts";
   * const v = new Vring(0);
   * v.stop();
   * console.assert(v.queue === null && v.kickFd === -1);
   * ```
   */
  stop(position = -1): void {
    if (this.queue !== null) this.base = position >= 0 ? position : this.queue.vringBase;
    this.queue = null;
    this.desc = this.driverArea = this.deviceArea = null;
    closeQuietly(this.kickFd);
    closeQuietly(this.callFd);
    this.kickFd = this.callFd = -1;
    this.callSet = false;
  }

  /**
   * Forgets everything (end of session, RESET_OWNER).
   *
   * @example
   * ```ts
   * import { Vring } from "./vring.ts";
   * const v = new Vring(0);
   * v.size = 256;
   * v.reset();
   * console.assert(v.size === 0 && !v.enabled);
   * ```
   */
  reset(): void {
    this.stop();
    closeQuietly(this.errFd);
    this.errFd = -1;
    this.size = this.base = 0;
    this.addresses = null;
    this.enabled = false;
  }

  /** Views of the three areas (sizes from the ring size and layout), or throws. */
  #mapAreas(
    request: number,
    memory: GuestMemory,
    packed: boolean,
    a: VringAddresses,
  ): Uint8Array[] {
    const n = this.size;
    const sizes = packed ? [16 * n, 4, 4] : [16 * n, 6 + 2 * n, 6 + 8 * n];
    const names = packed
      ? ["descriptor ring", "driver event suppression area", "device event suppression area"]
      : ["descriptor table", "available ring", "used ring"];
    const addrs = [a.desc, a.driver, a.device];
    const views: Uint8Array[] = [];
    for (let i = 0; i < 3; i++) {
      const view = memory.viewVA(addrs[i], sizes[i]);
      if (view === null) {
        throw new VhostUserError(
          request,
          `vring ${this.index}: ${names[i]} at 0x${addrs[i].toString(16)} (${sizes[i]} bytes) is ` +
            "outside the memory table",
        );
      }
      views.push(view);
    }
    return views;
  }
}

function checkAddress(addr: bigint, what: string, align: number): number {
  if (addr >= 1n << 53n) {
    throw new VhostUserError(
      REQ.SET_VRING_ADDR,
      `${what} address 0x${addr.toString(16)} is beyond 2^53`,
    );
  }
  const n = Number(addr);
  if (n % align !== 0) {
    throw new VhostUserError(
      REQ.SET_VRING_ADDR,
      `${what} address 0x${addr.toString(16)} is not ${align}-byte aligned`,
    );
  }
  return n;
}
