/**
 * Moving frames from a driver's transmitq into a receiveq (the same driver's for echo, another
 * driver's for forwarding), with VIRTIO_NET_F_MRG_RXBUF receive buffers merged when a frame
 * does not fit one (virtio 1.2 §5.1.6.3.2, §5.1.6.4).
 *
 * ```
 *   transmitq ──pop chain──► [header: fresh, num_buffers] + frame ──► receive chain 1, 2, … k
 *      ▲ pushUsed(chain) once the frame is complete      receive chains pushed once it is whole
 * ```
 *
 * A frame whose receiving driver has no buffer posted when it starts is dropped (counted). One
 * whose buffers run out midway is finished at a later burst: its transmit chain and the receive
 * chains written so far are held, not pushed used, so the driver never sees a first buffer whose
 * num_buffers is not final; the whole frames before it are published at once, which gives a
 * driver that posts buffers only as it gets them back (DPDK's virtio-user) the buffers the frame
 * still needs. If the sending driver goes away mid-frame, the receive chains it had filled are
 * not handed back truncated: they stay with the relay (a {@linkcode ChainStash}) and take the
 * next frames, as a NIC keeps the buffers it was given. Per burst: one publish and at most one
 * call per ring.
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

/** Counters of a {@linkcode Relay} (cumulative; updated at the end of each burst). */
export interface RelayStats {
  /** Frames taken from the transmitq (relayed or dropped). */
  taken: number;
  /** Their bytes, virtio-net header excluded. */
  takenBytes: number;
  /** Frames written into the receiveq. */
  packets: number;
  /** Their bytes, header excluded. */
  bytes: number;
  /** Frames dropped: no receive buffer posted when they came. */
  dropped: number;
  /** Call eventfd signals sent. */
  calls: number;
}

/**
 * New zeroed {@linkcode RelayStats}.
 *
 * @example
 * ```ts
 * import { relayStats } from "./relay.ts";
 * console.assert(relayStats().packets === 0);
 * ```
 */
export function relayStats(): RelayStats {
  return { taken: 0, takenBytes: 0, packets: 0, bytes: 0, dropped: 0, calls: 0 };
}

/**
 * One direction's relay state: the frame in progress. Keep one per (transmitq, receiveq) pair.
 *
 * @example
 * ```ts ignore
 * import { Relay, relayStats } from "./relay.ts";
 * const relay = new Relay(), stats = relayStats();
 * relay.burst(memA, pairA, memB, pairB, mergeableB, 32, stats, false); // A's tx → B's rx
 * ```
 */
export class Relay {
  /** After {@linkcode burst} threw: which ring's driver broke the rule. */
  fault: "transmitq" | "receiveq" = "transmitq";
  /** The transmit chain being copied (held until its frame is complete). */
  readonly #tx = new DescriptorChain(32768);
  readonly #rx = new DescriptorChain(32768);
  /** A frame is partly written into receive buffers. */
  #pending = false;
  /** Header + frame bytes written so far, and in all. */
  #written = 0;
  #total = 0;
  /** Receive buffers it took so far. */
  #buffers = 0;
  /** Where its first receive buffer is (the header), and that segment's length. */
  #region = 0;
  #offset = 0;
  #firstLen = 0;
  /** The receive chains the frame in progress took (ids, bytes), pushed used once it is whole. */
  readonly #heldIds = new Uint16Array(32768);
  readonly #heldLens = new Uint32Array(32768);
  /** Used entries pushed to the receiveq and not published yet. */
  #unpublished = false;
  /** The segments of the chains a frame filled before it ran out of them (for `abandon`). */
  readonly #partial = new ChainStash();
  /** Receive chains taken from the driver and not yet written: used before popping more. */
  readonly #spare = new ChainStash();

  /**
   * Takes up to `max` frames from `src`'s transmitq into `dst`'s receiveq (finishing a frame
   * in progress first). `mergeable`: the receiving driver negotiated MRG_RXBUF; `macSwap`:
   * swap the addresses of each frame written (echo). Returns the frames written. Throws
   * {@linkcode VirtqueueError} for a rule a driver broke (see {@linkcode fault}); what was
   * complete is published first.
   */
  burst(
    srcMem: AddressTranslator,
    src: DevicePair,
    dstMem: AddressTranslator,
    dst: DevicePair,
    mergeable: boolean,
    max: number,
    stats: RelayStats,
    macSwap: boolean,
  ): number {
    const txq = src.tx, rxq = dst.rx, tx = this.#tx, rx = this.#rx;
    let taken = 0, takenBytes = 0, relayed = 0, bytes = 0, dropped = 0;
    try {
      for (;;) {
        if (!this.#pending) {
          if (taken >= max) break;
          this.fault = "transmitq";
          if (!txq.pop(tx)) break;
          const total = readableLength(tx);
          if (total < NET_HDR_SIZE) {
            throw new VirtqueueError(
              "transmitq",
              `chain ${tx.id} holds ${total} bytes, less than the ${NET_HDR_SIZE}-byte ` +
                "virtio-net header (§5.1.6.2)",
            );
          }
          this.#pending = true;
          this.#total = total;
          this.#written = this.#buffers = 0;
          this.#partial.clear();
        }
        this.fault = "receiveq";
        if (!(this.#spare.count > 0 ? this.#spare.take(rx) : rxq.pop(rx))) {
          if (this.#written > 0) break; // mid-frame: finished at a later burst
          txq.pushUsed(tx.id, 0); // no receive buffer: dropped
          this.#pending = false;
          taken++;
          takenBytes += this.#total - NET_HDR_SIZE;
          dropped++;
          continue;
        }
        this.#heldIds[this.#buffers] = rx.id;
        this.#heldLens[this.#buffers] = this.#copy(srcMem, dstMem, mergeable); // buffers + 1
        if (this.#written < this.#total) {
          this.#partial.keep(rx); // the frame goes on in the next chain
          continue;
        }
        const bytesOut = dstMem.bytes(this.#region);
        if (mergeable) {
          // num_buffers (le16) of the first buffer, before the publish releases it.
          bytesOut[this.#offset + NET_HDR_NUM_BUFFERS] = this.#buffers & 0xff;
          bytesOut[this.#offset + NET_HDR_NUM_BUFFERS + 1] = this.#buffers >> 8;
        }
        if (macSwap && this.#total >= NET_HDR_SIZE + 12 && this.#firstLen >= NET_HDR_SIZE + 12) {
          swapMacs(bytesOut, this.#offset + NET_HDR_SIZE);
        }
        this.#pushHeld(rxq);
        txq.pushUsed(tx.id, 0);
        this.#pending = false;
        taken++;
        takenBytes += this.#total - NET_HDR_SIZE;
        relayed++;
        bytes += this.#total - NET_HDR_SIZE;
      }
    } finally {
      if (taken > 0) stats.calls += publish(txq, src.txCall);
      if (this.#unpublished) {
        this.#unpublished = false;
        stats.calls += publish(rxq, dst.rxCall);
      }
      stats.taken += taken;
      stats.takenBytes += takenBytes;
      stats.packets += relayed;
      stats.bytes += bytes;
      stats.dropped += dropped;
    }
    return relayed;
  }

  /**
   * The rings this relay works between are going away (one of them or both): returns what it
   * holds to those that stay. `src` stays: the transmit chain in progress goes back to its
   * driver (counted dropped). `dst` stays: the receive chains the frame in progress filled
   * become spares for the next frames (see {@linkcode adoptSpares}); only a frame spread over
   * more chains than a stash holds is handed back as a whole, short frame (num_buffers right).
   * `dst` goes: the spares go with its rings.
   */
  abandon(
    src: DevicePair | null,
    dstMem: AddressTranslator | null,
    dst: DevicePair | null,
    mergeable: boolean,
    stats: RelayStats,
  ): void {
    if (dst === null) this.#spare.clear();
    else if (dstMem !== null) {
      if (this.#pending && this.#buffers > 0) {
        if (this.#partial.count === this.#buffers) {
          this.#spare.append(this.#partial); // no frame comes out of them
        } else if (mergeable) {
          // More chains than a stash holds: they go back as one whole, short frame.
          const b = dstMem.bytes(this.#region);
          b[this.#offset + NET_HDR_NUM_BUFFERS] = this.#buffers & 0xff;
          b[this.#offset + NET_HDR_NUM_BUFFERS + 1] = this.#buffers >> 8;
          this.#pushHeld(dst.rx);
        }
      }
      if (this.#unpublished) dst.rx.publishUsed();
    }
    if (this.#pending) {
      // The frame in progress is lost: back to its driver if it stays, else gone with it.
      if (src !== null) {
        src.tx.pushUsed(this.#tx.id, 0);
        src.tx.publishUsed();
      }
      stats.taken++;
      stats.dropped++;
    }
    this.#pending = this.#unpublished = false;
  }

  /** Takes over `from`'s spare receive chains (a relay rebuilt for the same receiveq). */
  adoptSpares(from: Relay): void {
    this.#spare.append(from.#spare);
    from.#spare.clear();
  }

  /** Pushes the receive chains the frame took, in the order popped (their num_buffers is final). */
  #pushHeld(rxq: DeviceQueue): void {
    for (let i = 0; i < this.#buffers; i++) rxq.pushUsed(this.#heldIds[i], this.#heldLens[i]);
    this.#unpublished = true;
  }

  /** Copies the next part of the frame into the receive chain just popped; returns its bytes. */
  #copy(srcMem: AddressTranslator, dstMem: AddressTranslator, mergeable: boolean): number {
    const rx = this.#rx;
    const room = writableLength(rx);
    let at = 0;
    if (this.#written === 0) {
      if (rx.len[0] < NET_HDR_SIZE || (!mergeable && room < this.#total)) {
        throw new VirtqueueError(
          "receiveq",
          `receive buffer ${rx.id} holds ${room} bytes (first segment ${rx.len[0]}), frame ` +
            `needs ${this.#total} (§5.1.6.3.1: without MRG_RXBUF a buffer holds a whole frame; ` +
            "the header fits its first segment)",
        );
      }
      // A fresh header: no offloads, num_buffers 1 (final once the frame is complete).
      const hdr = dstMem.bytes(rx.region[0]), h = rx.offset[0];
      for (let k = 0; k < NET_HDR_SIZE; k++) hdr[h + k] = 0;
      hdr[h + NET_HDR_NUM_BUFFERS] = 1;
      this.#region = rx.region[0];
      this.#offset = h;
      this.#firstLen = rx.len[0];
      this.#written = at = NET_HDR_SIZE;
    }
    const left = this.#total - this.#written;
    const k = room - at < left ? room - at : left;
    gatherScatter(srcMem, this.#tx, this.#written, dstMem, rx, at, k);
    this.#written += k;
    this.#buffers++;
    return at + k;
  }
}

/** Publishes `q`'s pushed entries; signals `callFd` when the driver asked. Returns the calls. */
function publish(q: DeviceQueue, callFd: number): number {
  q.publishUsed();
  if (callFd >= 0 && q.needsCall()) {
    eventfdSignal(callFd);
    return 1;
  }
  return 0;
}

/**
 * Swaps destination and source MAC addresses of the frame at `bytes[at]`.
 *
 * @example
 * ```ts
 * import { swapMacs } from "./relay.ts";
 * const f = Uint8Array.from({ length: 12 }, (_, i) => i);
 * swapMacs(f, 0);
 * console.assert(f[0] === 6 && f[6] === 0);
 * ```
 */
export function swapMacs(bytes: Uint8Array, at: number): void {
  for (let k = 0; k < 6; k++) {
    const t = bytes[at + k];
    bytes[at + k] = bytes[at + 6 + k];
    bytes[at + 6 + k] = t;
  }
}

/**
 * Receive chains kept by the device (id and segments), taken back in the order kept. Bounded: a
 * chain that does not fit is not kept (`count` stops growing), and its owner falls back.
 */
export class ChainStash {
  /** Chains kept. */
  count = 0;
  #next = 0;
  #segs = 0;
  readonly #ids = new Uint16Array(STASH_CHAINS);
  /** Chain i's segments are `[#first[i], #first[i + 1])`. */
  readonly #first = new Uint32Array(STASH_CHAINS + 1);
  readonly #region = new Uint32Array(STASH_SEGMENTS);
  readonly #offset = new Float64Array(STASH_SEGMENTS);
  readonly #len = new Uint32Array(STASH_SEGMENTS);
  #full = false;

  /** Forgets every chain. */
  clear(): void {
    this.count = this.#next = this.#segs = 0;
    this.#full = false;
  }

  /** Keeps a copy of `chain` (writable segments, as a receive chain has). */
  keep(chain: DescriptorChain): void {
    if (this.#full || this.count >= STASH_CHAINS || this.#segs + chain.count > STASH_SEGMENTS) {
      this.#full = true;
      return;
    }
    const k = this.count++;
    this.#ids[k] = chain.id;
    this.#first[k] = this.#segs;
    for (let s = 0; s < chain.count; s++, this.#segs++) {
      this.#region[this.#segs] = chain.region[s];
      this.#offset[this.#segs] = chain.offset[s];
      this.#len[this.#segs] = chain.len[s];
    }
    this.#first[k + 1] = this.#segs;
  }

  /** Moves the oldest chain kept into `chain`; false when none is left. */
  take(chain: DescriptorChain): boolean {
    if (this.#next >= this.count) return false;
    const k = this.#next++;
    const from = this.#first[k], to = this.#first[k + 1];
    chain.id = this.#ids[k];
    chain.count = to - from;
    for (let s = 0; s < to - from; s++) {
      chain.region[s] = this.#region[from + s];
      chain.offset[s] = this.#offset[from + s];
      chain.len[s] = this.#len[from + s];
      chain.writable[s] = 1;
    }
    if (this.#next === this.count) this.clear();
    return true;
  }

  /** Keeps `other`'s chains not yet taken after these (as far as room allows). */
  append(other: ChainStash): void {
    const chain = STASH_SCRATCH;
    while (other.take(chain)) this.keep(chain);
  }
}

/** Bounds of a {@linkcode ChainStash}: a 64 KB frame in 64-byte buffers, 4 segments each. */
const STASH_CHAINS = 1024;
const STASH_SEGMENTS = 4096;
const STASH_SCRATCH = new DescriptorChain(STASH_SEGMENTS);
