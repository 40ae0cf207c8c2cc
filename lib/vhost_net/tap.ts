/**
 * A tap interface (Linux `drivers/net/tun.c`, `include/uapi/linux/if_tun.h`), opened the way a
 * vhost-net backend needs it: Ethernet frames (IFF_TAP), no packet-info prefix (IFF_NO_PI), each
 * frame preceded by the 12-byte virtio-net header (IFF_VNET_HDR, TUNSETVNETHDRSZ 12), no
 * offloads until some are negotiated (TUNSETOFFLOAD 0).
 *
 * ```
 *   /dev/net/tun ──TUNGETFEATURES, TUNSETIFF(name | tap%d), TUNSETVNETHDRSZ,
 *                  TUNSETOFFLOAD, TUNSETSNDBUF──► fd ──VHOST_NET_SET_BACKEND──► vhost-net
 *   the kernel's network stack ◄──► interface <name> (ip addr / ip link set up)
 * ```
 *
 * @module
 */

import { EACCES, EBUSY, EINVAL, EPERM } from "../../ffi/errno.ts";
import { closeQuietly, O_CLOEXEC, O_RDWR, openFile } from "../../ffi/fd.ts";
import { ioctl } from "../../ffi/ioctl.ts";
import { NET_HDR_SIZE } from "../virtio/net_hdr.ts";
import { ifreq, IFREQ_SIZE, ifreqName, TUN_FLT_ALLMULTI, TunFlag, TunIoctl } from "./ioctl.ts";

/** The clone device every tap is opened through. */
export const TUN_DEVICE = "/dev/net/tun";

/** Options of {@linkcode Tap.open}. */
export interface TapOptions {
  /** Keep the interface after the last fd closes (TUNSETPERSIST 1; needs CAP_NET_ADMIN). */
  persist?: boolean;
  /** Socket send buffer in bytes (TUNSETSNDBUF; default INT_MAX, as DPDK's vhost-kernel). */
  sndbuf?: number;
  /**
   * One queue of a multi-queue tap (IFF_MULTI_QUEUE): open the same name once per queue; the
   * tap steers frames across the queues attached (see {@linkcode Tap.setQueue}). Default false.
   */
  multiQueue?: boolean;
}

/** The flags a vhost-net tap is opened with. */
const TAP_FLAGS = TunFlag.IFF_TAP | TunFlag.IFF_NO_PI | TunFlag.IFF_VNET_HDR;

function setIffHint(name: string, multiQueue: boolean): (e: number) => string | undefined {
  return (e) => {
    if (e === EPERM || e === EACCES) {
      return `creating or attaching tap "${name}" needs CAP_NET_ADMIN (run as root), or create it ` +
        `once for your user: sudo ip tuntap add ${
          name.includes("%") ? "tap0" : name
        } mode tap user $USER vnet_hdr`;
    }
    if (e === EBUSY) return `tap "${name}" is already attached by another process`;
    if (e === EINVAL) {
      return multiQueue
        ? `"${name}" exists but is not a multi-queue tap (a tun, or created without ` +
          "multi_queue?); remove it or let the driver create it"
        : `"${name}" exists but is not a single-queue tap (a tun, or multi_queue?)`;
    }
    return undefined;
  };
}

/**
 * An open tap interface. The fd is what vhost-net reads and writes frames through.
 *
 * @example
 * ```ts ignore
 * import { Tap } from "./tap.ts";
 * using tap = Tap.open("tap0");
 * console.log(tap.name, tap.fd);
 * ```
 */
export class Tap {
  /** The interface name the kernel gave (the one asked for, or `tap<N>`). */
  readonly name: string;
  /** TUNGETFEATURES: the IFF_* flags this kernel's tun driver supports. */
  readonly features: number;
  #fd: number;

  private constructor(fd: number, name: string, features: number) {
    this.#fd = fd;
    this.name = name;
    this.features = features;
  }

  /**
   * Opens (creating it when missing) tap `name`, or a new `tap<N>` without a name; sets the
   * 12-byte virtio-net header, no offloads and the send buffer. Errors name the ioctl, the errno
   * and what to do (`modprobe tun`, CAP_NET_ADMIN, `ip tuntap add`).
   *
   * @example
   * ```ts ignore
   * import { Tap } from "./tap.ts";
   * const tap = Tap.open(undefined, { persist: false }); // the kernel picks tap<N>
   * tap.close();
   * ```
   */
  static open(name?: string, options: TapOptions = {}): Tap {
    const asked = name ?? "tap%d";
    const fd = openFile(
      TUN_DEVICE,
      O_RDWR | O_CLOEXEC,
      0,
      "is the tun module loaded (modprobe tun) and /dev/net/tun read-writable by this user?",
    );
    try {
      const arg = new Uint8Array(IFREQ_SIZE);
      const view = new DataView(arg.buffer);
      ioctl(fd, TunIoctl.TUNGETFEATURES, arg, "TUNGETFEATURES");
      const features = view.getUint32(0, true);
      if ((features & TAP_FLAGS) !== TAP_FLAGS) {
        throw new Error(
          `${TUN_DEVICE}: TUNGETFEATURES 0x${features.toString(16)} lacks IFF_TAP, IFF_NO_PI or ` +
            "IFF_VNET_HDR; this kernel's tun driver cannot serve vhost-net",
        );
      }
      const multi = options.multiQueue ?? false;
      const flags = TAP_FLAGS | (multi ? TunFlag.IFF_MULTI_QUEUE : 0);
      ioctl(
        fd,
        TunIoctl.TUNSETIFF,
        ifreq(arg, asked, flags),
        "TUNSETIFF",
        setIffHint(asked, multi),
      );
      const tap = new Tap(fd, ifreqName(arg), features);
      // The header vhost-net leaves to the tap (VERSION_1: 12 bytes; virtio 1.2 §5.1.6).
      view.setInt32(0, NET_HDR_SIZE, true);
      ioctl(fd, TunIoctl.TUNSETVNETHDRSZ, arg, "TUNSETVNETHDRSZ");
      tap.setOffload(0);
      view.setInt32(0, options.sndbuf ?? 0x7fffffff, true);
      ioctl(fd, TunIoctl.TUNSETSNDBUF, arg, "TUNSETSNDBUF");
      if (options.persist !== undefined) tap.setPersist(options.persist);
      return tap;
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
  }

  /** The tap's fd (for VHOST_NET_SET_BACKEND); -1 after {@linkcode close}. */
  get fd(): number {
    return this.#fd;
  }

  /** TUNSETOFFLOAD: the TUN_F_* offloads (`TunOffload`: CSUM 1, TSO4 2, TSO6 4, TSO_ECN 8) the reader of the tap accepts unfinished. */
  setOffload(flags: number): void {
    ioctl(this.#fd, TunIoctl.TUNSETOFFLOAD, flags, "TUNSETOFFLOAD");
  }

  /**
   * TUNSETTXFILTER: the tap passes on (to vhost-net) only frames whose destination is one of
   * `addresses` (exact; the kernel keeps up to 8), or any multicast one when `allMulticast`;
   * no addresses turns the filter off (every frame passes). Frames it holds back count in the
   * interface's tx_dropped.
   */
  setTxFilter(addresses: readonly Uint8Array[], allMulticast: boolean): void {
    // struct tun_filter { u16 flags; u16 count; u8 addr[count][6]; }
    const arg = new Uint8Array(4 + 6 * addresses.length);
    const view = new DataView(arg.buffer);
    view.setUint16(0, allMulticast ? TUN_FLT_ALLMULTI : 0, true);
    view.setUint16(2, addresses.length, true);
    addresses.forEach((mac, i) => arg.set(mac.subarray(0, 6), 4 + 6 * i));
    ioctl(this.#fd, TunIoctl.TUNSETTXFILTER, arg, "TUNSETTXFILTER");
  }

  /**
   * TUNSETQUEUE: attach this queue of a multi-queue tap to the tap's steering again, or detach
   * it (the tap then sends no frame to it).
   */
  setQueue(attached: boolean): void {
    const flags = attached ? TunFlag.IFF_ATTACH_QUEUE : TunFlag.IFF_DETACH_QUEUE;
    const arg = ifreq(new Uint8Array(IFREQ_SIZE), "", flags);
    ioctl(this.#fd, TunIoctl.TUNSETQUEUE, arg, "TUNSETQUEUE");
  }

  /** TUNSETPERSIST: keep (or stop keeping) the interface when no fd has it open. */
  setPersist(persist: boolean): void {
    ioctl(
      this.#fd,
      TunIoctl.TUNSETPERSIST,
      persist ? 1 : 0,
      "TUNSETPERSIST",
      (e) => e === EPERM ? "making a tap persistent needs CAP_NET_ADMIN" : undefined,
    );
  }

  /** Closes the fd; a tap that is not persistent disappears. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    closeQuietly(this.#fd);
    this.#fd = -1;
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
