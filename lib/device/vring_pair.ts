/**
 * A device queue pair over two vhost-user vrings (2i receiveq, 2i + 1 transmitq), as
 * {@linkcode NetDevicePath} services it, whichever thread serves it.
 *
 * @module
 */

import type { Vring } from "../vhost_user/vring.ts";
import type { AddressTranslator, DeviceQueue } from "../virtio/virtqueue.ts";
import type { DevicePair } from "./net_device.ts";

/**
 * A queue pair over two vrings; the call eventfds are read from the vrings at each use, since
 * the frontend may replace them (SET_VRING_CALL) at any time.
 *
 * @example
 * ```ts ignore
 * import { VringPair } from "./vring_pair.ts";
 * const pair = new VringPair(rx.queue!, tx.queue!, rx, tx);
 * path.attach(pair);
 * ```
 */
export class VringPair implements DevicePair {
  /** The receiveq's device queue. */
  readonly rx: DeviceQueue;
  /** The transmitq's device queue. */
  readonly tx: DeviceQueue;
  readonly #rxVring: Vring;
  readonly #txVring: Vring;

  /** A pair over the started queues of `rxVring` and `txVring`. */
  constructor(rx: DeviceQueue, tx: DeviceQueue, rxVring: Vring, txVring: Vring) {
    this.rx = rx;
    this.tx = tx;
    this.#rxVring = rxVring;
    this.#txVring = txVring;
  }

  /** The receiveq's call eventfd now, or -1. */
  get rxCall(): number {
    return this.#rxVring.callFd;
  }

  /** The transmitq's call eventfd now, or -1. */
  get txCall(): number {
    return this.#txVring.callFd;
  }
}

/** Translates nothing: a data path's memory while no session is mapped. */
export const EMPTY_MEMORY: AddressTranslator = {
  offset: 0,
  translate: (): number => -1,
  bytes: (): Uint8Array => new Uint8Array(0),
};
