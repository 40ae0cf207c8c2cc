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

import { eventfdSignal } from "../../ffi/eventfd.ts";
import { NET_HDR_NUM_BUFFERS, NET_HDR_SIZE } from "../virtio/net_hdr.ts";
import {
  type AddressTranslator,
  DescriptorChain,
  type DeviceQueue,
  VirtqueueError,
} from "../virtio/virtqueue.ts";
import { gatherScatter, readableLength, writableLength } from "./chain_copy.ts";
import type { DevicePair } from "./net_device.ts";
import { EMPTY_MEMORY } from "./vring_pair.ts";

/** One direction's counters. */
export interface ForwardStats {
  /** Frames copied into the other driver's receive buffers. */
  packets: number;
  /** Their bytes (virtio-net header excluded). */
  bytes: number;
  /** Frames taken and dropped: the other driver had no receive buffer posted. */
  dropped: number;
  /** Call eventfd signals sent (both rings of the direction). */
  calls: number;
}

/** One port as the forwarder sees it: its memory, its running pairs, MRG_RXBUF. */
export interface ForwardPort {
  /** The driver's memory. */
  memory: AddressTranslator;
  /** Its running queue pairs (pair i forwards to the other port's pair i). */
  pairs: DevicePair[];
  /** VIRTIO_NET_F_MRG_RXBUF negotiated: its receive buffers may be merged. */
  mergeable: boolean;
}

/** A frame being forwarded, per pair and direction. */
class Transfer {
  /** The transmit chain being copied (held until the frame is complete). */
  readonly tx = new DescriptorChain(32768);
  readonly rx = new DescriptorChain(32768);
  /** True while a frame is partly written into receive buffers. */
  pending = false;
  /** Header + frame bytes written so far, and in all. */
  written = 0;
  total = 0;
  /** Receive buffers it took so far. */
  buffers = 0;
  /** Where its first receive buffer (the header) is. */
  region = 0;
  offset = 0;
  /** Used entries pushed to the receiving ring but not published (a frame is incomplete). */
  unpublished = false;
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
  /** Frames from A's driver to B's. */
  readonly aToB: ForwardStats = { packets: 0, bytes: 0, dropped: 0, calls: 0 };
  /** Frames from B's driver to A's. */
  readonly bToA: ForwardStats = { packets: 0, bytes: 0, dropped: 0, calls: 0 };
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
  #transfers: Transfer[][] = [];

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
   * rebuilt); frames partly forwarded into or out of the old rings are dropped with them.
   */
  setPort(index: 0 | 1, port: ForwardPort): void {
    // A frame cut short toward the port that stays: its buffers so far become a whole (short)
    // frame, so that driver never sees a header whose num_buffers is wrong.
    // A transmit chain the staying port's driver is owed goes back to it (a drop).
    const stay = this.#ports[index ^ 1];
    for (let i = 0; i < this.#transfers.length; i++) {
      const t = this.#transfers[i][index]; // direction index → the other port
      if (t.unpublished) {
        if (stay.mergeable && t.pending) setNumBuffers(stay.memory, t);
        stay.pairs[i].rx.publishUsed();
      }
      const back = this.#transfers[i][index ^ 1]; // from the staying port
      if (back.pending) {
        stay.pairs[i].tx.pushUsed(back.tx.id, 0);
        stay.pairs[i].tx.publishUsed();
        (index === 0 ? this.bToA : this.aToB).dropped++;
      }
    }
    this.#ports[index] = port;
    const n = Math.min(this.#ports[0].pairs.length, this.#ports[1].pairs.length);
    this.#transfers = Array.from({ length: n }, () => [new Transfer(), new Transfer()]);
    // Poll mode: no kicks wanted (§2.7.10 / §2.8.10).
    for (const pair of port.pairs) {
      pair.rx.setNotifications(false);
      pair.tx.setNotifications(false);
    }
  }

  /** Pairs forwarded (those both ports run). */
  get pairs(): number {
    return this.#transfers.length;
  }

  /** Services every forwarded pair once in both directions; returns the frames forwarded. */
  poll(): number {
    const [a, b] = this.#ports;
    let moved = 0;
    for (let i = 0; i < this.#transfers.length; i++) {
      const t = this.#transfers[i];
      moved += this.#forward(a, b, a.pairs[i], b.pairs[i], t[0], this.aToB, 0);
      moved += this.#forward(b, a, b.pairs[i], a.pairs[i], t[1], this.bToA, 1);
    }
    return moved;
  }

  /** One burst from `src`'s transmitq into `dst`'s receiveq. */
  #forward(
    src: ForwardPort,
    dst: ForwardPort,
    sp: DevicePair,
    dp: DevicePair,
    t: Transfer,
    stats: ForwardStats,
    srcIndex: number,
  ): number {
    const dstIndex = srcIndex ^ 1;
    const txq = sp.tx, rxq = dp.rx;
    let taken = 0, forwarded = 0, dropped = 0, bytes = 0;
    try {
      for (;;) {
        if (!t.pending) {
          if (taken === this.#burst) break;
          this.faultPort = srcIndex;
          if (!txq.pop(t.tx)) break;
          const total = readableLength(t.tx);
          if (total < NET_HDR_SIZE) {
            throw new VirtqueueError(
              "transmitq",
              `chain ${t.tx.id} holds ${total} bytes, less than the ${NET_HDR_SIZE}-byte ` +
                "virtio-net header (§5.1.6.2)",
            );
          }
          t.pending = true;
          t.total = total;
          t.written = t.buffers = 0;
        }
        this.faultPort = dstIndex;
        if (!rxq.pop(t.rx)) {
          if (t.written > 0) break; // mid-frame: finished at a later poll
          txq.pushUsed(t.tx.id, 0); // no receive buffer: dropped
          t.pending = false;
          taken++;
          dropped++;
          continue;
        }
        rxq.pushUsed(t.rx.id, this.#copy(src.memory, dst, t));
        t.unpublished = true;
        if (t.written === t.total) {
          if (dst.mergeable) setNumBuffers(dst.memory, t);
          txq.pushUsed(t.tx.id, 0);
          t.pending = false;
          taken++;
          forwarded++;
          bytes += t.total - NET_HDR_SIZE;
        }
      }
    } finally {
      // What was completed is returned even when a driver broke a rule mid-burst: each ring
      // gets one release store (publishUsed) and at most one call.
      if (taken > 0) this.#publish(txq, sp.txCall, stats);
      if (t.unpublished && !t.pending) {
        t.unpublished = false;
        this.#publish(rxq, dp.rxCall, stats);
      }
      stats.packets += forwarded;
      stats.bytes += bytes;
      stats.dropped += dropped;
    }
    return forwarded;
  }

  /**
   * Copies the next part of the frame into the receive chain just popped (`t.rx`); returns the
   * bytes written into it.
   */
  #copy(srcMem: AddressTranslator, dst: ForwardPort, t: Transfer): number {
    const rx = t.rx, mem = dst.memory;
    const room = writableLength(rx);
    let at = 0;
    if (t.written === 0) {
      if (rx.len[0] < NET_HDR_SIZE || (!dst.mergeable && room < t.total)) {
        throw new VirtqueueError(
          "receiveq",
          `receive buffer ${rx.id} holds ${room} bytes (first segment ${rx.len[0]}), frame ` +
            `needs ${t.total} (§5.1.6.3.1: without MRG_RXBUF a buffer holds a whole frame; ` +
            `the header fits the first segment)`,
        );
      }
      // A fresh header: no offloads, num_buffers 1 (set for the whole frame once complete).
      const hdr = mem.bytes(rx.region[0]), h = rx.offset[0];
      for (let k = 0; k < NET_HDR_SIZE; k++) hdr[h + k] = 0;
      hdr[h + NET_HDR_NUM_BUFFERS] = 1;
      t.region = rx.region[0];
      t.offset = h;
      t.written = at = NET_HDR_SIZE;
    }
    const left = t.total - t.written;
    const k = room - at < left ? room - at : left;
    gatherScatter(srcMem, t.tx, t.written, mem, rx, at, k);
    t.written += k;
    t.buffers++;
    return at + k;
  }

  #publish(q: DeviceQueue, callFd: number, stats: ForwardStats): void {
    q.publishUsed();
    if (callFd >= 0 && q.needsCall()) {
      eventfdSignal(callFd);
      stats.calls++;
    }
  }
}

/** Writes num_buffers (le16) into the frame's first receive buffer, before it is published. */
function setNumBuffers(memory: AddressTranslator, t: Transfer): void {
  const hdr = memory.bytes(t.region);
  hdr[t.offset + NET_HDR_NUM_BUFFERS] = t.buffers & 0xff;
  hdr[t.offset + NET_HDR_NUM_BUFFERS + 1] = t.buffers >> 8;
}
