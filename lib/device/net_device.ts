/**
 * The virtio-net device's data path (virtio 1.2 §5.1.6): what a device does with the frames a
 * driver transmits and with the receive buffers it posts. Used by the TypeScript vhost-user
 * backend; independent of the ring layout (it sees {@linkcode DeviceQueue}s only).
 *
 * ```
 *   driver transmitq (2i+1) ──pop──► [sink: count | echo: copy ─┐ | hook(burst)]
 *   driver receiveq  (2i)   ◄─push── [source: generated frame  | echo ◄──────┘ ]
 * ```
 *
 * @module
 */

import { eventfdSignal } from "../../ffi/eventfd.ts";
import { NET_HDR_NUM_BUFFERS, NET_HDR_SIZE } from "../virtio/net_hdr.ts";
import { gatherScatter, readableLength, scatter, writableLength } from "./chain_copy.ts";
import { Relay, relayStats, swapMacs } from "./relay.ts";
import {
  type AddressTranslator,
  DescriptorChain,
  type DeviceQueue,
  VirtqueueError,
} from "../virtio/virtqueue.ts";

/** What the device does with traffic. */
export type DeviceMode = "sink" | "echo" | "source";

/**
 * A burst of frames the driver transmitted, handed to a {@linkcode FrameHook}. Frame `i` is
 * `bytes[i][offsets[i] .. offsets[i] + lens[i])` (the virtio-net header already skipped). The
 * arrays are reused for every burst: copy what must outlive the call.
 */
export interface FrameBurst {
  /** Frames in this burst. */
  count: number;
  /** The memory each frame lies in. */
  readonly bytes: Uint8Array[];
  /** Offset of each frame in its `bytes`. */
  readonly offsets: Float64Array;
  /** Length of each frame. */
  readonly lens: Uint32Array;
}

/** User code run over each burst the driver transmits, after the mode has handled it. */
export type FrameHook = (burst: FrameBurst) => void;

/** Options of a {@linkcode NetDevicePath}. */
export interface NetDeviceOptions {
  /** `sink` (default): count and drop; `echo`: send each frame back; `source`: generate. */
  mode?: DeviceMode;
  /** In echo mode, swap source and destination MAC addresses. */
  macSwap?: boolean;
  /** The frame `source` mode sends (without virtio-net header). */
  frame?: Uint8Array;
  /** Most chains handled per queue per poll (default 32). */
  burst?: number;
  /**
   * Called with each transmitted burst. With a hook, echo writes each frame into one receive
   * buffer even with MRG_RXBUF (a frame needing several ends the session).
   */
  hook?: FrameHook;
  /**
   * Most frames handled in total (default unlimited): `source` generates no more than this
   * many (counted by `toDriverPackets`); `sink` and `echo` take no more than this many from the driver
   * (counted by `fromDriverPackets`). Settable later through {@linkcode NetDevicePath.limit}.
   */
  limit?: number;
}

/** Device-side counters, named by direction relative to the driver (§5.1.6: its transmitq and receiveq). */
export interface NetDeviceStats {
  /** Frames taken from the driver's transmit queues. */
  fromDriverPackets: number;
  /** Their bytes (headers excluded). */
  fromDriverBytes: number;
  /** Frames written into the driver's receive buffers. */
  toDriverPackets: number;
  /** Their bytes (headers excluded). */
  toDriverBytes: number;
  /** Echo frames dropped because the driver had posted no receive buffer. */
  toDriverDropped: number;
  /** Used-buffer notifications sent (call eventfd writes). */
  calls: number;
}

/** One queue pair as the device sees it. */
export interface DevicePair {
  /** The driver's receiveq (device writes). */
  readonly rx: DeviceQueue;
  /** The driver's transmitq (device reads). */
  readonly tx: DeviceQueue;
  /** Call eventfd of rx, or -1. */
  readonly rxCall: number;
  /** Call eventfd of tx, or -1. */
  readonly txCall: number;
}

/**
 * Runs the device side of one or more queue pairs: `poll()` services each pair once, a burst
 * at a time, with one used-ring publish per queue and a call only when the driver wants one.
 *
 * @example
 * ```ts ignore
 * import { NetDevicePath } from "./net_device.ts";
 * const path = new NetDevicePath(memory, { mode: "echo", macSwap: true });
 * path.attach({ rx, tx, rxCall: -1, txCall: -1 });
 * while (running) path.poll();
 * ```
 */
export class NetDevicePath {
  /**
   * Most frames handled in total: `source` stops generating once `toDriverPackets` reaches it, `sink`
   * and `echo` stop taking frames once `fromDriverPackets` reaches it. `Infinity` when unlimited.
   */
  limit: number;
  /**
   * VIRTIO_NET_F_MRG_RXBUF was negotiated: source frames may span several receive buffers,
   * with `num_buffers` in the first one's header (§5.1.6.4). Set on every (re)build of pairs.
   */
  mergeable = false;
  /** Counters, updated in place. */
  readonly stats: NetDeviceStats = {
    fromDriverPackets: 0,
    fromDriverBytes: 0,
    toDriverPackets: 0,
    toDriverBytes: 0,
    toDriverDropped: 0,
    calls: 0,
  };
  #memory: AddressTranslator;
  readonly #mode: DeviceMode;
  readonly #macSwap: boolean;
  readonly #burstMax: number;
  readonly #hook: FrameHook | undefined;
  readonly #pairs: DevicePair[] = [];
  /** Per attached pair: the mergeable frame being written into its receive buffers. */
  readonly #merging: MergeState[] = [];
  /** Per attached pair: echo's frame in progress with MRG_RXBUF (see {@linkcode Relay}). */
  readonly #relays: Relay[] = [];
  /** Echo-with-MRG_RXBUF counters, added into {@linkcode stats} after each burst. */
  readonly #relayed = relayStats();
  readonly #txChain = new DescriptorChain(32768);
  readonly #rxChain = new DescriptorChain(32768);
  /** Header + frame for source mode; the header is also what echo writes first. */
  readonly #template: Uint8Array;
  readonly #burst: FrameBurst;
  readonly #heldIds: Uint32Array;

  /**
   * A data path translating descriptors through `memory`, with no pairs attached yet.
   *
   * @param memory the driver's memory as the device maps it.
   * @param options mode, burst size, limit, hook.
   * @example
   * ```ts
   * import { NetDevicePath } from "./net_device.ts";
   * import { LocalMemory } from "../virtio/virtqueue.ts";
   * const path = new NetDevicePath(new LocalMemory(new Uint8Array(4096), 0), { mode: "sink" });
   * console.assert(path.poll() === 0); // no pairs attached
   * ```
   */
  constructor(memory: AddressTranslator, options: NetDeviceOptions = {}) {
    this.#memory = memory;
    this.#mode = options.mode ?? "sink";
    this.#macSwap = options.macSwap ?? false;
    this.#burstMax = options.burst ?? 32;
    this.#hook = options.hook;
    this.limit = options.limit ?? Infinity;
    if (!(this.limit >= 0)) throw new RangeError(`limit must be 0 or more, got ${this.limit}`);
    const frame = options.frame ?? new Uint8Array(0);
    if (this.#mode === "source" && frame.length === 0) {
      throw new TypeError("source mode needs a frame to send");
    }
    this.#template = new Uint8Array(NET_HDR_SIZE + frame.length);
    // num_buffers = 1: each frame fits one receive buffer (§5.1.6.3.1; read only with MRG_RXBUF).
    this.#template[NET_HDR_NUM_BUFFERS] = 1;
    this.#template.set(frame, NET_HDR_SIZE);
    this.#burst = {
      count: 0,
      bytes: new Array(this.#burstMax).fill(new Uint8Array(0)),
      offsets: new Float64Array(this.#burstMax),
      lens: new Uint32Array(this.#burstMax),
    };
    this.#heldIds = new Uint32Array(this.#burstMax);
  }

  /** The mode this path runs in. */
  get mode(): DeviceMode {
    return this.#mode;
  }

  /**
   * Translates descriptors through `memory` from now on (a new vhost-user memory table). Attach
   * the queues built over the new mapping after this; the counters are kept.
   */
  setMemory(memory: AddressTranslator): void {
    this.#memory = memory;
  }

  /** Number of attached queue pairs. */
  get pairs(): number {
    return this.#pairs.length;
  }

  /** Starts servicing a queue pair. */
  attach(pair: DevicePair): void {
    // Poll mode: ask the driver not to kick (§2.7.10 / §2.8.10).
    pair.rx.setNotifications(false);
    pair.tx.setNotifications(false);
    this.#pairs.push(pair);
    this.#merging.push({
      written: 0,
      buffers: 0,
      region: 0,
      offset: 0,
      ids: new Uint32Array(pair.rx.size),
      lens: new Uint32Array(pair.rx.size),
    });
    this.#relays.push(new Relay());
  }

  /** Stops servicing every pair (the rings are gone or about to be). */
  detachAll(): void {
    this.#pairs.length = 0;
    this.#merging.length = 0;
    this.#relays.length = 0;
  }

  /** Services every attached pair once. Returns the number of frames moved. */
  poll(): number {
    let moved = 0;
    for (let i = 0; i < this.#pairs.length; i++) {
      const pair = this.#pairs[i];
      moved += this.#mode === "echo" && this.mergeable && this.#hook === undefined
        ? this.#echoMerged(pair, this.#relays[i])
        : this.#mode !== "source"
        ? this.#fromDriver(pair)
        : this.mergeable
        ? this.#sourceMergeable(pair, this.#merging[i])
        : this.#source(pair);
    }
    return moved;
  }

  /** Takes a burst from the driver's transmitq; sinks or echoes it. */
  #fromDriver(pair: DevicePair): number {
    const { tx, rx } = pair;
    const chain = this.#txChain;
    const burst = this.#burst;
    const echo = this.#mode === "echo";
    let max = this.#burstMax;
    const left = this.limit - this.stats.fromDriverPackets;
    if (left < max) max = left;
    let n = 0;
    let echoed = 0;
    let dropped = 0;
    let fromDriverBytes = 0;
    let toDriverBytes = 0;
    while (n < max && tx.pop(chain)) {
      const frameLen = readableLength(chain) - NET_HDR_SIZE;
      if (frameLen < 0) {
        throw new VirtqueueError(
          "transmitq",
          `chain ${chain.id} holds ${frameLen + NET_HDR_SIZE} bytes, less than the ` +
            `${NET_HDR_SIZE}-byte virtio-net header (§5.1.6.2)`,
        );
      }
      fromDriverBytes += frameLen;
      if (this.#hook !== undefined || echo) {
        // The frame starts NET_HDR_SIZE bytes into the chain: in the first segment for the usual
        // layout (header and data together), else in the segment the header ends in. A frame
        // spread over several segments is seen only up to its first segment's end by a hook.
        let s = 0, skip = NET_HDR_SIZE;
        while (s < chain.count - 1 && skip >= chain.len[s]) skip -= chain.len[s++];
        burst.bytes[n] = this.#memory.bytes(chain.region[s]);
        burst.offsets[n] = chain.offset[s] + skip;
        burst.lens[n] = frameLen;
      }
      if (echo) {
        if (rx.pop(this.#rxChain)) {
          const written = this.#copyOut(chain, this.#rxChain, n, frameLen);
          rx.pushUsed(this.#rxChain.id, written);
          toDriverBytes += frameLen;
          echoed++;
        } else {
          dropped++; // no receive buffer posted
        }
      }
      this.#heldIds[n] = chain.id;
      n++;
    }
    if (n === 0) return 0;
    // The counters change only for a burst that completed: a burst cut short by a rule the driver
    // broke returns none of its chains, so none of it is counted (not even its drops).
    this.stats.fromDriverBytes += fromDriverBytes;
    this.stats.toDriverDropped += dropped;
    this.stats.toDriverPackets += echoed;
    this.stats.toDriverBytes += toDriverBytes;
    burst.count = n;
    if (this.#hook !== undefined) this.#hook(burst);
    for (let i = 0; i < n; i++) tx.pushUsed(this.#heldIds[i], 0);
    this.stats.fromDriverPackets += n;
    this.#publish(tx, pair.txCall);
    if (echoed > 0) this.#publish(rx, pair.rxCall);
    return n;
  }

  /**
   * Echo with MRG_RXBUF: a frame may spread over several receive buffers (§5.1.6.3.2), through
   * the same {@linkcode Relay} the forwarder uses. Returns the frames taken.
   */
  #echoMerged(pair: DevicePair, relay: Relay): number {
    const r = this.#relayed, s = this.stats;
    const taken = r.taken, takenBytes = r.takenBytes, packets = r.packets, bytes = r.bytes;
    const dropped = r.dropped, calls = r.calls;
    let max = this.#burstMax;
    const left = this.limit - s.fromDriverPackets;
    if (left < max) max = left;
    relay.burst(this.#memory, pair, this.#memory, pair, true, max, r, this.#macSwap);
    s.fromDriverPackets += r.taken - taken;
    s.fromDriverBytes += r.takenBytes - takenBytes;
    s.toDriverPackets += r.packets - packets;
    s.toDriverBytes += r.bytes - bytes;
    s.toDriverDropped += r.dropped - dropped;
    s.calls += r.calls - calls;
    return r.taken - taken;
  }

  /** Fills the driver's posted receive buffers with the template frame. */
  #source(pair: DevicePair): number {
    const { rx } = pair;
    const chain = this.#rxChain;
    const template = this.#template;
    const frameLen = template.length - NET_HDR_SIZE;
    let max = this.#burstMax;
    const left = this.limit - this.stats.toDriverPackets;
    if (left < max) max = left;
    let n = 0;
    while (n < max && rx.pop(chain)) {
      if (!this.#fillWhole(rx, chain)) {
        if (writableLength(chain) < template.length) {
          throw new VirtqueueError(
            "receiveq",
            `receive buffer ${chain.id} holds ${writableLength(chain)} bytes, frame needs ` +
              `${template.length} (§5.1.6.3.1: buffers must fit a full frame without MRG_RXBUF)`,
          );
        }
        scatter(this.#memory, template, 0, template.length, chain, 0);
        rx.pushUsed(chain.id, template.length);
      }
      n++;
    }
    if (n === 0) return 0;
    this.stats.toDriverPackets += n;
    this.stats.toDriverBytes += n * frameLen;
    this.#publish(rx, pair.rxCall);
    return n;
  }

  /**
   * Source mode's usual buffer: when the template fits `chain`'s one writable segment, copies it
   * there (one `set()`) and pushes the chain used; false, with nothing done, otherwise.
   */
  #fillWhole(rx: DeviceQueue, chain: DescriptorChain): boolean {
    const template = this.#template;
    if (chain.count !== 1 || chain.writable[0] !== 1 || chain.len[0] < template.length) {
      return false;
    }
    this.#memory.bytes(chain.region[0]).set(template, chain.offset[0]);
    rx.pushUsed(chain.id, template.length);
    return true;
  }

  /**
   * Source mode with MRG_RXBUF (§5.1.6.3.2, §5.1.6.4): the template fills as many receive
   * chains as it needs, each returned with the bytes written into it; the first one's header
   * gets `num_buffers` once the frame is complete. A frame whose chains the driver has not all
   * posted yet is finished at a later poll; its chains are pushed used only then (the driver
   * must never see a first buffer before its num_buffers is right), while the whole frames
   * before it are published at once.
   */
  #sourceMergeable(pair: DevicePair, st: MergeState): number {
    const { rx } = pair;
    const chain = this.#rxChain;
    const template = this.#template;
    const total = template.length;
    const mem = this.#memory;
    let max = this.#burstMax;
    const left = this.limit - this.stats.toDriverPackets;
    if (left < max) max = left;
    let n = 0;
    while ((n < max || st.written > 0) && rx.pop(chain)) {
      // A whole frame in the first buffer: num_buffers 1, as the template has.
      if (st.written === 0 && this.#fillWhole(rx, chain)) {
        n++;
        continue;
      }
      const room = writableLength(chain);
      if (st.written === 0) {
        if (chain.len[0] < NET_HDR_SIZE) {
          throw new VirtqueueError(
            "receiveq",
            `receive buffer ${chain.id}: first segment of ${chain.len[0]} bytes cannot hold the ` +
              `${NET_HDR_SIZE}-byte header (§5.1.6.3.1)`,
          );
        }
        st.region = chain.region[0];
        st.offset = chain.offset[0];
      }
      const k = room < total - st.written ? room : total - st.written;
      scatter(mem, template, st.written, k, chain, 0);
      st.ids[st.buffers] = chain.id;
      st.lens[st.buffers] = k;
      st.written += k;
      st.buffers++;
      if (st.written === total) {
        // num_buffers (le16) of the first buffer, written before the publish below releases it.
        const bytes = mem.bytes(st.region);
        bytes[st.offset + NET_HDR_NUM_BUFFERS] = st.buffers & 0xff;
        bytes[st.offset + NET_HDR_NUM_BUFFERS + 1] = st.buffers >> 8;
        for (let i = 0; i < st.buffers; i++) rx.pushUsed(st.ids[i], st.lens[i]);
        st.written = 0;
        st.buffers = 0;
        n++;
      }
    }
    if (n === 0) return 0;
    this.stats.toDriverPackets += n;
    this.stats.toDriverBytes += n * (total - NET_HDR_SIZE);
    // Whole frames only: an incomplete frame's chains are held (not pushed), so what is
    // published here never exposes it, and publishing the frames before it gives the driver its
    // buffers back to post the chains that frame still needs (else both sides wait forever).
    this.#publish(rx, pair.rxCall);
    return n;
  }

  /**
   * Writes header + the transmitted frame (at `burst` slot `i`) into a receive chain; returns
   * the bytes written.
   */
  #copyOut(from: DescriptorChain, to: DescriptorChain, i: number, frameLen: number): number {
    const total = NET_HDR_SIZE + frameLen;
    if (writableLength(to) < total) {
      throw new VirtqueueError(
        "receiveq",
        `receive buffer ${to.id} holds ${writableLength(to)} bytes, frame needs ${total} ` +
          `(§5.1.6.3.1: buffers must fit a full frame without MRG_RXBUF)`,
      );
    }
    const mem = this.#memory;
    const template = this.#template;
    const srcBytes = this.#burst.bytes[i];
    const contiguous = from.count === 1 || (from.count === 2 && from.len[0] === NET_HDR_SIZE);
    if (to.count === 1 && contiguous && mem.bytes(to.region[0]) === srcBytes) {
      // Fast path: frame contiguous, one receive segment, same region: in-place copies only.
      const dst = to.offset[0];
      for (let k = 0; k < NET_HDR_SIZE; k++) srcBytes[dst + k] = template[k];
      const at = this.#burst.offsets[i];
      srcBytes.copyWithin(dst + NET_HDR_SIZE, at, at + frameLen);
    } else {
      scatter(mem, template, 0, NET_HDR_SIZE, to, 0);
      gatherScatter(mem, from, NET_HDR_SIZE, mem, to, NET_HDR_SIZE, frameLen);
    }
    if (this.#macSwap && frameLen >= 12 && to.len[0] >= NET_HDR_SIZE + 12) {
      swapMacs(mem.bytes(to.region[0]), to.offset[0] + NET_HDR_SIZE);
    }
    return total;
  }

  #publish(q: DeviceQueue, callFd: number): void {
    q.publishUsed();
    if (callFd >= 0 && q.needsCall()) {
      eventfdSignal(callFd);
      this.stats.calls++;
    }
  }
}

/** A frame being spread over receive buffers (mergeable source mode), per pair. */
interface MergeState {
  /** Bytes of header + frame written so far; 0 = no frame in progress. */
  written: number;
  /** Receive buffers it took so far. */
  buffers: number;
  /** Where its first buffer (the header) is. */
  region: number;
  /** Byte offset of that header in its region. */
  offset: number;
  /** Chain heads it took so far, pushed used once the frame is whole. */
  ids: Uint32Array;
  /** Bytes written into each of those chains. */
  lens: Uint32Array;
}
