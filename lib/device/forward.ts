/**
 * A two-port L2 forwarder in the device role: every frame the driver on port A transmits is
 * copied into a receive buffer the driver on port B posted, and B's into A's (like testpmd `io`
 * between two `net_vhost` ports). Pair i of A forwards to pair i of B.
 *
 * ```
 *   A transmitq 2i+1 ──pop──► copy header + frame (A's memory → B's) ──push──► B receiveq 2i
 *   B transmitq 2i+1 ──pop──► copy (B's memory → A's)                ──push──► A receiveq 2i
 *   per burst and direction: one publish + at most one call on each ring touched
 * ```
 *
 * A frame for which the other driver has no receive buffer posted is dropped and counted. With
 * VIRTIO_NET_F_MRG_RXBUF negotiated on the receiving port a frame may span several of its
 * receive buffers (§5.1.6.3.2, §5.1.6.4); its transmit chain is returned only once it is
 * complete, and nothing of it is published before (a frame is finished at a later poll when the
 * buffers ran out mid-frame). Without it, a receive buffer too small for the frame breaks
 * §5.1.6.3.1 and ends the receiving port's session.
 *
 * @module
 */

import type { AddressTranslator } from "../virtio/virtqueue.ts";
import type { DevicePair } from "./net_device.ts";
import { Relay, type RelayStats, relayStats } from "./relay.ts";
import { EMPTY_MEMORY } from "./vring_pair.ts";

export type { RelayStats } from "./relay.ts";

/** One port as the forwarder sees it: its memory, its running pairs, MRG_RXBUF. */
export interface ForwardPort {
  /** The driver's memory. */
  memory: AddressTranslator;
  /** Its running queue pairs (pair i forwards to the other port's pair i). */
  pairs: DevicePair[];
  /** VIRTIO_NET_F_MRG_RXBUF negotiated: its receive buffers may be merged. */
  mergeable: boolean;
}

/**
 * The forwarding data path between two ports; {@linkcode poll} services every pair both ways.
 *
 * @example
 * ```ts
 * import { ForwardPath } from "./forward.ts";
 * const path = new ForwardPath();
 * console.assert(path.poll() === 0); // no pairs on either port yet
 * console.assert(path.aToB.packets === 0);
 * ```
 */
export class ForwardPath {
  /** Frames from A's driver to B's (`packets` forwarded, `dropped`, ...). */
  readonly aToB: RelayStats = relayStats();
  /** Frames from B's driver to A's. */
  readonly bToA: RelayStats = relayStats();
  /**
   * After {@linkcode poll} threw: the port (0 = A, 1 = B) whose driver broke the rule (its
   * session is to end; the other port's rings are left consistent).
   */
  faultPort = 0;
  readonly #burst: number;
  readonly #ports: ForwardPort[] = [
    { memory: EMPTY_MEMORY, pairs: [], mergeable: false },
    { memory: EMPTY_MEMORY, pairs: [], mergeable: false },
  ];
  /** Per pair: [A → B, B → A]. */
  #relays: Relay[][] = [];

  /**
   * A forwarder with no pairs yet.
   *
   * @param burst most frames taken per pair and direction per poll (default 32).
   */
  constructor(burst = 32) {
    if (!Number.isInteger(burst) || burst < 1) {
      throw new RangeError(`burst must be a positive integer, got ${burst}`);
    }
    this.#burst = burst;
  }

  /**
   * Sets port `index`'s memory and running pairs (after its rings started, stopped or were
   * rebuilt). Frames in progress through the old rings are given back to the port that stays
   * (see `Relay.abandon`).
   */
  setPort(index: 0 | 1, port: ForwardPort): void {
    const stay = this.#ports[index ^ 1];
    const toStay = index === 0 ? this.aToB : this.bToA;
    const fromStay = index === 0 ? this.bToA : this.aToB;
    for (let i = 0; i < this.#relays.length; i++) {
      this.#relays[i][index].abandon(null, stay.memory, stay.pairs[i], stay.mergeable, toStay);
      this.#relays[i][index ^ 1].abandon(stay.pairs[i], null, null, false, fromStay);
    }
    this.#ports[index] = port;
    const n = Math.min(this.#ports[0].pairs.length, this.#ports[1].pairs.length);
    const old = this.#relays;
    this.#relays = Array.from({ length: n }, () => [new Relay(), new Relay()]);
    // The staying port's receive chains a departed sender had filled stay the device's.
    for (let i = 0; i < n && i < old.length; i++) this.#relays[i][index].adoptSpares(old[i][index]);
    // Poll mode: no kicks wanted (§2.7.10 / §2.8.10).
    for (const pair of port.pairs) {
      pair.rx.setNotifications(false);
      pair.tx.setNotifications(false);
    }
  }

  /** Pairs forwarded (those both ports run). */
  get pairs(): number {
    return this.#relays.length;
  }

  /** Services every forwarded pair once in both directions; returns the frames forwarded. */
  poll(): number {
    const a = this.#ports[0], b = this.#ports[1];
    const burst = this.#burst;
    let moved = 0;
    for (let i = 0; i < this.#relays.length; i++) {
      const r = this.#relays[i];
      let k = 0;
      try {
        moved += r[0].burst(
          a.memory,
          a.pairs[i],
          b.memory,
          b.pairs[i],
          b.mergeable,
          burst,
          this.aToB,
          false,
        );
        k = 1;
        moved += r[1].burst(
          b.memory,
          b.pairs[i],
          a.memory,
          a.pairs[i],
          a.mergeable,
          burst,
          this.bToA,
          false,
        );
      } catch (e) {
        // Direction k runs from port k to port k^1: the transmitq is k's, the receiveq k^1's.
        this.faultPort = r[k].fault === "transmitq" ? k : k ^ 1;
        throw e;
      }
    }
    return moved;
  }
}
