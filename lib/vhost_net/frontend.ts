/**
 * The vhost-net frontend (driver side): hands the rings this process owns to the Linux kernel's
 * vhost-net worker through ioctls on `/dev/vhost-net`, with a tap interface as the frames' other
 * end (Linux `include/uapi/linux/vhost.h`, `drivers/vhost/net.c`).
 *
 * ```
 *   VirtioNet ──(VirtioTransport)──► VhostNetFrontend ──ioctl──► /dev/vhost-net (kernel worker)
 *                                                                   │ reads/writes our memory
 *                                    tap fd ◄──VHOST_NET_SET_BACKEND┘ ──► tap <name> ──► stack
 *   open:     SET_OWNER, GET_FEATURES
 *   bring-up: SET_FEATURES, SET_MEM_TABLE (virtual addresses, no fds),
 *             per ring NUM / BASE / ADDR / KICK / CALL, then NET_SET_BACKEND(tap) per ring
 *   stop:     NET_SET_BACKEND(-1), GET_VRING_BASE; close closes the vhost fd and the tap
 * ```
 *
 * vhost-net has split rings only (no VIRTIO_F_RING_PACKED), one queue pair per fd; vring 0 is
 * receiveq, vring 1 transmitq (virtio 1.2 §5.1.2). With several pairs (as DPDK's vhost-kernel
 * backend) pair i has its own `/dev/vhost-net` fd and its own queue of a multi-queue tap
 * (IFF_MULTI_QUEUE), and the frontend offers VIRTIO_NET_F_MQ itself (the kernel does not):
 *
 * ```
 *   virtqueues 2i, 2i+1 ──► vhost fd i (vrings 0, 1) ──SET_BACKEND──► tap queue fd i ─┐
 *                                                                    tap <name> ◄─────┘ steering
 *   pair i disabled: SET_BACKEND -1 on both vrings, TUNSETQUEUE IFF_DETACH_QUEUE (i > 0)
 * ```
 *
 * @module
 */

import { E2BIG, EBUSY, EINVAL, ENOTTY, EPERM } from "../../ffi/errno.ts";
import { closeQuietly, O_CLOEXEC, O_RDWR, openFile } from "../../ffi/fd.ts";
import { ioctl } from "../../ffi/ioctl.ts";
import type {
  MemoryRegion,
  QueueSetup,
  ReceiveFilter,
  VirtioTransport,
} from "../virtio/transport.ts";
import {
  featureMask,
  hasFeature,
  NET_OFFLOAD_FEATURES,
  unofferedFeatures,
} from "../virtio/features.ts";
import {
  TunOffload,
  VHOST_F_LOG_ALL,
  VhostIoctl,
  vhostMemory,
  VRING_ADDR_SIZE,
  vringAddr,
  vringFile,
  vringState,
} from "./ioctl.ts";
import { Tap, type TapOptions } from "./tap.ts";

/** VIRTIO_NET_F_MQ: provided by this frontend with a vhost fd per pair, never sent to the kernel. */
const MQ = featureMask("NET_F_MQ");

/** The vhost-net character device. */
export const VHOST_NET_DEVICE = "/dev/vhost-net";

/** ff:ff:ff:ff:ff:ff: always received, as virtio-net does without VIRTIO_NET_CTRL_RX_NOBCAST. */
const BROADCAST = new Uint8Array(6).fill(0xff);

/** Where the kernel publishes how many memory regions SET_MEM_TABLE accepts. */
const MAX_MEM_REGIONS_PATH = "/sys/module/vhost/parameters/max_mem_regions";

/**
 * Bits a vhost-net frontend must not negotiate: VHOST_NET_F_VIRTIO_NET_HDR (27, the tap owns
 * the header), ACCESS_PLATFORM (33, would switch vhost to IOTLB translation) and LOG_ALL (26).
 */
export const VHOST_NET_UNUSED_FEATURES: bigint =
  featureMask("VHOST_NET_F_VIRTIO_NET_HDR", "F_ACCESS_PLATFORM") | VHOST_F_LOG_ALL;

/**
 * The net device offloads the tap implements, not vhost-net (its header passes through to the
 * tap untouched, as with QEMU's vhost=on): offered on top of the kernel's vhost features and
 * stripped again before VHOST_SET_FEATURES, which refuses them. Sending (CSUM, HOST_TSO4/6) the
 * tap always accepts (tun.c virtio_net_hdr_to_skb); receiving (GUEST_*) it is told with
 * TUNSETOFFLOAD.
 */
export const TAP_OFFLOAD_FEATURES: bigint = NET_OFFLOAD_FEATURES;

/**
 * The TUNSETOFFLOAD flags for negotiated `features`: what the kernel may hand the driver
 * unfinished (GUEST_CSUM → TUN_F_CSUM, GUEST_TSO4/6 → TUN_F_TSO4/6; tun.c takes TSO only with
 * CSUM, as §5.1.3.1 does).
 *
 * @example
 * ```ts
 * import { tapOffloadFlags } from "./frontend.ts";
 * import { featureMask } from "../virtio/features.ts";
 * console.assert(tapOffloadFlags(featureMask("NET_F_GUEST_CSUM", "NET_F_GUEST_TSO4")) === 3);
 * ```
 */
export function tapOffloadFlags(features: bigint): number {
  if (!hasFeature(features, "NET_F_GUEST_CSUM")) return 0;
  let flags = TunOffload.TUN_F_CSUM;
  if (hasFeature(features, "NET_F_GUEST_TSO4")) flags |= TunOffload.TUN_F_TSO4;
  if (hasFeature(features, "NET_F_GUEST_TSO6")) flags |= TunOffload.TUN_F_TSO6;
  return flags;
}

/** Options of {@linkcode VhostNetFrontend.open}. */
export interface VhostNetFrontendOptions extends Omit<TapOptions, "multiQueue"> {
  /** Tap interface to attach (created when missing); default a new `tap<N>`. */
  tap?: string;
  /**
   * Queue pairs (default 1): one vhost-net fd each; more than one needs a multi-queue tap
   * (created so when missing).
   */
  queuePairs?: number;
}

const IOC = VhostIoctl;

/** Errno-specific advice for the vhost ioctls (drivers/vhost/vhost.c, net.c). */
function vhostHint(name: string): (e: number) => string | undefined {
  return (e) => {
    if (e === ENOTTY) {
      return `${VHOST_NET_DEVICE} does not know ${name}; is it the vhost-net device?`;
    }
    if (e === EBUSY && name === "VHOST_SET_OWNER") return "this vhost fd already has an owner";
    if (e === EBUSY) return "a backend is attached to the ring; detach it first (SET_BACKEND -1)";
    if (e === EPERM) return "the fd has no owner: VHOST_SET_OWNER first (again after RESET_OWNER)";
    if (e === E2BIG) return `more memory regions than ${MAX_MEM_REGIONS_PATH} allows`;
    if (e === EINVAL && name === "VHOST_SET_VRING_NUM") {
      return "the ring size must be a power of two, 1..32768";
    }
    if (e === EINVAL && name === "VHOST_SET_VRING_ADDR") {
      return "desc must be 16-, avail 2- and used 4-byte aligned, inside the memory table";
    }
    return undefined;
  };
}

/**
 * A `/dev/vhost-net` fd with its tap, driven through the {@linkcode VirtioTransport} calls.
 *
 * @example
 * ```ts ignore
 * import { VhostNetFrontend } from "./frontend.ts";
 * using backend = VhostNetFrontend.open("/dev/vhost-net", { tap: "tap0" });
 * console.log(backend.name, backend.getFeatures().toString(16));
 * ```
 */
export class VhostNetFrontend implements VirtioTransport {
  /** `vhost-net /dev/vhost-net, tap <name>`. */
  readonly name: string;
  /** The vhost character device opened. */
  readonly path: string;
  /** The tap the rings are attached to (its first queue). */
  readonly tap: Tap;
  /** One tap queue fd per queue pair (`taps[0]` is {@linkcode tap}). */
  readonly taps: readonly Tap[];
  /** Feature bits the kernel offered (VHOST_GET_FEATURES), as received. */
  readonly offeredFeatures: bigint;
  /** Queue pairs opened: one vhost-net fd each. */
  readonly maxQueuePairs: number;
  /** SET_MEM_TABLE's region limit (max_mem_regions, 64 when unreadable). */
  readonly maxMemRegions: number;

  /** The vhost-net fd of each pair; all -1 after close. */
  readonly #fds: number[];
  readonly #arg = new Uint8Array(VRING_ADDR_SIZE);
  /** SET_BACKEND state by virtqueue index (2i, 2i+1). */
  readonly #attached: boolean[];
  /** TUNSETQUEUE state of each pair's tap queue. */
  readonly #tapQueued: boolean[];

  private constructor(fds: number[], path: string, taps: Tap[]) {
    this.#fds = fds;
    this.path = path;
    this.taps = taps;
    this.tap = taps[0];
    this.maxQueuePairs = fds.length;
    this.#attached = new Array(2 * fds.length).fill(false);
    this.#tapQueued = new Array(fds.length).fill(true);
    this.name = `vhost-net ${path}, tap ${taps[0].name}`;
    // A persistent tap keeps its filter across owners: start promiscuous, as the port assumes.
    taps[0].setTxFilter([], false);
    for (let i = 0; i < fds.length; i++) this.#ioctl(IOC.VHOST_SET_OWNER, 0, "VHOST_SET_OWNER", i);
    this.#ioctl(IOC.VHOST_GET_FEATURES, this.#arg, "VHOST_GET_FEATURES");
    this.offeredFeatures = new DataView(this.#arg.buffer).getBigUint64(0, true);
    let limit = 64;
    try {
      limit = Number(Deno.readTextFileSync(MAX_MEM_REGIONS_PATH).trim()) || 64;
    } catch { /* sysfs not mounted or not readable: the kernel default */ }
    this.maxMemRegions = limit;
  }

  /**
   * Opens `path`, then the tap (see {@linkcode Tap.open}), takes ownership (SET_OWNER) and
   * reads the offered features. Throws a SyscallError naming the call, the errno and what to do.
   *
   * @example
   * ```ts ignore
   * import { VhostNetFrontend } from "./frontend.ts";
   * const backend = VhostNetFrontend.open(); // /dev/vhost-net and a new tap<N>
   * backend.close();
   * ```
   */
  static open(path = VHOST_NET_DEVICE, options: VhostNetFrontendOptions = {}): VhostNetFrontend {
    const pairs = options.queuePairs ?? 1;
    if (!Number.isInteger(pairs) || pairs < 1) {
      throw new RangeError(`vhost-net: queuePairs ${pairs} must be a positive integer`);
    }
    const fds: number[] = [], taps: Tap[] = [];
    try {
      for (let i = 0; i < pairs; i++) {
        fds.push(openFile(
          path,
          O_RDWR | O_CLOEXEC,
          0,
          "is vhost-net loaded (sudo modprobe vhost_net) and the device read-writable by this " +
            "user (root, or a udev rule giving your group access)?",
        ));
        const multiQueue = pairs > 1;
        taps.push(Tap.open(i === 0 ? options.tap : taps[0].name, { ...options, multiQueue }));
      }
      return new VhostNetFrontend(fds, path, taps);
    } catch (e) {
      for (const fd of fds) closeQuietly(fd);
      for (const tap of taps) tap.close();
      throw e;
    }
  }

  /**
   * Virtio feature bits offered: the kernel's, without those a vhost-net frontend must not set,
   * plus the offloads the tap implements ({@linkcode TAP_OFFLOAD_FEATURES}) and, with several
   * pairs, VIRTIO_NET_F_MQ, which this frontend provides (a vhost fd per pair).
   */
  getFeatures(): bigint {
    return (this.offeredFeatures & ~VHOST_NET_UNUSED_FEATURES) | TAP_OFFLOAD_FEATURES |
      (this.maxQueuePairs > 1 ? MQ : 0n);
  }

  /**
   * VHOST_SET_FEATURES with the vhost bits on every fd (not VIRTIO_NET_F_MQ, this frontend's, nor
   * the tap's offloads), then TUNSETOFFLOAD with the receive offloads ({@linkcode tapOffloadFlags});
   * throws when `features` has bits {@linkcode getFeatures} did not offer.
   */
  setFeatures(features: bigint): void {
    const extra = unofferedFeatures(features, this.getFeatures());
    if (extra) throw new Error(`VHOST_SET_FEATURES: ${extra} not offered by ${this.path}`);
    new DataView(this.#arg.buffer).setBigUint64(0, features & ~MQ & ~TAP_OFFLOAD_FEATURES, true);
    for (let i = 0; i < this.#fds.length; i++) {
      this.#ioctl(IOC.VHOST_SET_FEATURES, this.#arg, "VHOST_SET_FEATURES", i);
    }
    // The offloads are the tap device's (every queue fd shares them): set once.
    this.tap.setOffload(tapOffloadFlags(features));
  }

  /**
   * VHOST_SET_MEM_TABLE with each region's virtual address as both guest physical and user
   * address: the kernel worker reads this process's memory directly, so fds are not passed.
   */
  setMemTable(regions: readonly MemoryRegion[]): void {
    if (regions.length > this.maxMemRegions) {
      throw new Error(
        `VHOST_SET_MEM_TABLE: ${regions.length} regions, the kernel takes ${this.maxMemRegions} ` +
          `(${MAX_MEM_REGIONS_PATH})`,
      );
    }
    const table = vhostMemory(regions.map((r) => ({
      guestPhysAddr: r.addr,
      size: r.size,
      userspaceAddr: r.addr,
    })));
    for (let i = 0; i < this.#fds.length; i++) {
      this.#ioctl(IOC.VHOST_SET_MEM_TABLE, table, "VHOST_SET_MEM_TABLE", i);
    }
  }

  /**
   * Per ring: SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_KICK, SET_VRING_CALL, on
   * vring `index & 1` of pair `index >> 1`'s fd.
   */
  setupQueue(q: QueueSetup): void {
    if (!Number.isInteger(q.index) || q.index < 0 || q.index >= 2 * this.#fds.length) {
      throw new RangeError(
        `vhost-net with ${this.#fds.length} queue pair(s) has virtqueues 0..${
          2 * this.#fds.length - 1
        }, not ${q.index}`,
      );
    }
    if (q.size < 1 || q.size > 32768 || (q.size & (q.size - 1)) !== 0) {
      throw new RangeError(`vhost-net: ring size ${q.size} is not a power of two in 1..32768`);
    }
    const a = this.#arg, pair = q.index >> 1, ring = q.index & 1;
    const ioctlOn = (request: number, arg: Uint8Array, name: string) =>
      this.#ioctl(request, arg, name, pair);
    ioctlOn(IOC.VHOST_SET_VRING_NUM, vringState(a, ring, q.size), "VHOST_SET_VRING_NUM");
    ioctlOn(IOC.VHOST_SET_VRING_BASE, vringState(a, ring, q.base), "VHOST_SET_VRING_BASE");
    const { desc, device: used, driver: avail } = q.addresses;
    ioctlOn(
      IOC.VHOST_SET_VRING_ADDR,
      vringAddr(a, { index: ring, desc, used, avail }),
      "VHOST_SET_VRING_ADDR",
    );
    ioctlOn(IOC.VHOST_SET_VRING_KICK, vringFile(a, ring, q.kickFd), "VHOST_SET_VRING_KICK");
    ioctlOn(IOC.VHOST_SET_VRING_CALL, vringFile(a, ring, q.callFd), "VHOST_SET_VRING_CALL");
  }

  /**
   * VHOST_NET_SET_BACKEND: the pair's tap queue fd to start the ring, -1 to stop it. A pair
   * other than the first whose two rings are both stopped leaves the tap's steering
   * (TUNSETQUEUE IFF_DETACH_QUEUE), and comes back before a ring starts again (as DPDK's
   * vhost-kernel backend): frames go only to pairs that are served.
   */
  enableQueue(index: number, enabled: boolean): void {
    if (this.#attached[index] === enabled) return;
    const pair = index >> 1, tap = this.taps[pair];
    if (enabled && !this.#tapQueued[pair]) {
      tap.setQueue(true);
      this.#tapQueued[pair] = true;
    }
    this.#ioctl(
      IOC.VHOST_NET_SET_BACKEND,
      vringFile(this.#arg, index & 1, enabled ? tap.fd : -1),
      "VHOST_NET_SET_BACKEND",
      pair,
    );
    this.#attached[index] = enabled;
    const idle = !this.#attached[index ^ 1] && !enabled;
    if (idle && pair > 0 && this.#tapQueued[pair]) {
      tap.setQueue(false);
      this.#tapQueued[pair] = false;
    }
  }

  /**
   * The tap's TUNSETTXFILTER: off when promiscuous, else the port's MAC and broadcast exactly
   * (plus every multicast frame with `allMulticast`); the kernel drops the rest before
   * vhost-net sees them.
   */
  setReceiveFilter(filter: ReceiveFilter): void {
    this.tap.setTxFilter(filter.promiscuous ? [] : [filter.mac, BROADCAST], filter.allMulticast);
  }

  /** vhost-net has no device status: ignored. */
  setStatus(_status: number): void {}

  /** vhost-net has no device status: -1. */
  getStatus(): number {
    return -1;
  }

  /** Detaches the tap from the ring (SET_BACKEND -1), then GET_VRING_BASE: where it stopped. */
  stopQueue(index: number): number {
    this.enableQueue(index, false);
    const a = this.#arg;
    this.#ioctl(
      IOC.VHOST_GET_VRING_BASE,
      vringState(a, index & 1, 0),
      "VHOST_GET_VRING_BASE",
      index >> 1,
    );
    return new DataView(a.buffer).getUint32(4, true);
  }

  /**
   * VHOST_RESET_OWNER (stops every ring, forgets the memory table and features), then
   * VHOST_SET_OWNER again: without it every later ioctl answers EPERM.
   */
  resetOwner(): void {
    for (let i = 0; i < this.#fds.length; i++) {
      this.#ioctl(IOC.VHOST_RESET_OWNER, 0, "VHOST_RESET_OWNER", i);
      this.#ioctl(IOC.VHOST_SET_OWNER, 0, "VHOST_SET_OWNER", i);
    }
    this.#attached.fill(false);
  }

  /** True after {@linkcode close}. */
  get closed(): boolean {
    return this.#fds[0] < 0;
  }

  /** Closes the vhost fd (the kernel stops the worker) and the tap. Idempotent. */
  /**
   * Null while the vhost-net fd is open: the kernel device cannot go away under an open fd (the
   * tap keeps its queue too), so there is no hang-up to detect. No syscall.
   */
  checkConnection(): string | null {
    return this.closed ? `${this.name} is closed` : null;
  }

  close(): void {
    if (this.closed) return;
    for (let i = 0; i < this.#fds.length; i++) {
      closeQuietly(this.#fds[i]);
      this.#fds[i] = -1;
    }
    for (const tap of this.taps) tap.close();
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** An ioctl on the vhost fd of `pair` (default the first). */
  #ioctl(request: number, arg: Uint8Array | number, name: string, pair = 0): void {
    const fd = this.#fds[pair];
    if (fd < 0) throw new Error(`${name}: ${this.path} is closed`);
    ioctl(fd, request, arg, name, vhostHint(name));
  }
}

/**
 * True when `path` names a vhost-net device: exactly `/dev/vhost-net`, or any character device
 * (a vhost-user socket is a socket, not a character device).
 *
 * @example
 * ```ts
 * import { isVhostNetPath } from "./frontend.ts";
 * console.log(isVhostNetPath("/dev/vhost-net"), isVhostNetPath("/tmp/vhost.sock")); // true false
 * ```
 */
export function isVhostNetPath(path: string): boolean {
  if (path === VHOST_NET_DEVICE) return true;
  try {
    return Deno.statSync(path).isCharDevice === true;
  } catch {
    return false;
  }
}
