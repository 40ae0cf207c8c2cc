/**
 * The seam between the virtio driver and whatever carries its requests to the device: the
 * driver owns the rings and the memory (virtio-user), the transport tells the device where they
 * are. {@linkcode VirtioTransport} is implemented by `VhostUserFrontend` (vhost-user over a Unix
 * socket: DPDK's vhost PMD, the TS device, QEMU's vhost-user backends) and `VhostNetFrontend`
 * (ioctls on `/dev/vhost-net`: the Linux kernel's vhost-net worker with a tap).
 *
 * ```
 *   VirtioNet ──(VirtioTransport)─┬─► VhostUserFrontend ──socket + fds──► DPDK vhost / TS device
 *                                 └─► VhostNetFrontend ──ioctl──► /dev/vhost-net ──► tap ──► stack
 * ```
 *
 * @module
 */

import type { QueueAddresses } from "./virtqueue.ts";

/** A piece of driver memory the device must map (a memory table entry). */
export interface MemoryRegion {
  /** Process virtual address of the first byte (also used as the guest physical address). */
  readonly addr: number;
  /** Length in bytes. */
  readonly size: number;
  /** File descriptor backing the region (memfd or hugetlbfs file). */
  readonly fd: number;
  /** Offset of the region inside `fd`. */
  readonly offset: number;
}

/** Everything a backend needs to run one virtqueue. */
export interface QueueSetup {
  /** Virtqueue index (net: 2i = receiveq i, 2i+1 = transmitq i; virtio 1.2 §5.1.2). */
  readonly index: number;
  /** Queue size. */
  readonly size: number;
  /** Where the three ring areas are. */
  readonly addresses: QueueAddresses;
  /** Start position (vhost SET_VRING_BASE encoding). */
  readonly base: number;
  /** Eventfd the driver writes to notify the device (kick). */
  readonly kickFd: number;
  /** Eventfd the device writes to notify the driver (call). */
  readonly callFd: number;
}

/** What the driver wants to receive (VIRTIO_NET_CTRL_RX and _MAC, virtio 1.2 §5.1.6.5.1-2). */
export interface ReceiveFilter {
  /** Every frame, whatever its destination. */
  readonly promiscuous: boolean;
  /** Every multicast frame. */
  readonly allMulticast: boolean;
  /** The port's address: unicast frames to it (and broadcast) always pass. */
  readonly mac: Uint8Array;
}

/**
 * Operations a virtio-user backend provides, called by the driver in the order of virtio 1.2
 * §3.1.1 (status ACKNOWLEDGE → DRIVER → features → FEATURES_OK → queues → DRIVER_OK).
 */
export interface VirtioTransport {
  /** Short description for messages, e.g. `vhost-user /run/vhost.sock`. */
  readonly name: string;
  /** Feature bits the device offers (virtio 1.2 §2.2). */
  getFeatures(): bigint;
  /** Acknowledges the subset of offered features the driver accepts. */
  setFeatures(features: bigint): void;
  /** Tells the backend which memory holds the rings and buffers. */
  setMemTable(regions: readonly MemoryRegion[]): void;
  /** Sets up one virtqueue (size, base, addresses, kick and call eventfds). */
  setupQueue(queue: QueueSetup): void;
  /**
   * Enables or disables a set-up virtqueue (also how the emulated control queue carries out
   * VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, as DPDK's virtio-user does).
   */
  enableQueue(index: number, enabled: boolean): void;
  /**
   * Makes the backend deliver only what `filter` asks for (the emulated control queue's
   * VIRTIO_NET_CTRL_RX / MAC commands). Optional: a backend that cannot filter (DPDK's vhost
   * PMD) has none, and the modes are then recorded, not enforced.
   */
  setReceiveFilter?(filter: ReceiveFilter): void;
  /** Writes the device status byte (§2.1); a backend that cannot carry it ignores it. */
  setStatus(status: number): void;
  /** Reads the device status byte back, or -1 when the backend cannot report it. */
  getStatus(): number;
  /** Queue pairs the device supports. */
  readonly maxQueuePairs: number;
  /**
   * True when {@linkcode getConfig} can read the device configuration space (vhost-user: the
   * CONFIG protocol feature). Optional: a transport without it has none.
   */
  readonly configSpace?: boolean;
  /**
   * Reads `size` bytes of the device configuration space from `offset` (virtio 1.2 §4; for net
   * §5.1.4), or null when the device does not provide it. Optional.
   */
  getConfig?(offset: number, size: number): Uint8Array | null;
  /**
   * True once after the device notified a configuration change (virtio 1.2 §2.5.2; vhost-user
   * BACKEND_CONFIG_CHANGE_MSG), as {@linkcode checkConnection} found it. Optional.
   */
  configChanged?(): boolean;
  /** Stops a virtqueue and returns its position (vhost GET_VRING_BASE). */
  stopQueue(index: number): number;
  /**
   * Checks, without blocking, whether the device side is still there: null when it is, else
   * why not (e.g. the backend closed the vhost-user socket). One syscall; the driver calls it
   * at most every few milliseconds, never per burst.
   */
  checkConnection(): string | null;
  /** Closes the connection and every fd the backend opened. Idempotent. */
  close(): void;
}
