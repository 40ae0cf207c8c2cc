/**
 * Two vhost-user ports and a {@linkcode ForwardPath} between them, served from one busy loop:
 * the device role of a two-port L2 forwarder (`examples/device.ts --mode forward`). Each port is
 * a {@linkcode VhostUserDevice} that only answers its frontend (paused: its own data path moves
 * nothing); the forwarder takes each port's running pairs as they start and stop.
 *
 * ```
 *   frontend A ──socket A──► device A (protocol) ──pairs──┐
 *   frontend B ──socket B──► device B (protocol) ──pairs──┴─► ForwardPath.poll(): A ⇄ B
 * ```
 *
 * A frontend that breaks a rule ends only its own session; the other port keeps running. Both
 * ports map their frontends' memory into one {@linkcode MemoryArena}, so each frame is copied
 * with one `copyWithin` (memmove) rather than a JavaScript loop.
 *
 * @module
 */

import { pollIn } from "../../ffi/poll.ts";
import { DEFAULT_DEVICE_FEATURES, type VhostUserBackendOptions } from "../vhost_user/backend.ts";
import { featureMask } from "../virtio/features.ts";
import { MemoryArena } from "../vhost_user/memory_arena.ts";
import { ForwardPath, type ForwardPort, type RelayStats } from "./forward.ts";
import type { DevicePair } from "./net_device.ts";
import type { DeviceRunEnd } from "./vhost_user_device.ts";
import { VhostUserDevice } from "./vhost_user_device.ts";
import { EMPTY_MEMORY, VringPair } from "./vring_pair.ts";

export type { RelayStats } from "./forward.ts";

/**
 * Options of {@linkcode ForwardDevice.listen}: both ports' protocol options (`features` default
 * `DEFAULT_DEVICE_FEATURES` with NET_F_MRG_RXBUF: jumbo frames reach a driver with small
 * receive buffers), and the burst.
 */
export interface ForwardDeviceOptions extends VhostUserBackendOptions {
  /** Most frames per pair and direction per poll (default 32). */
  burst?: number;
}

/** When {@linkcode ForwardDevice.run} returns; the first limit reached wins. */
export interface ForwardRunLimits {
  /** Stop this long after frames first could flow (both ports running). */
  durationMs?: number;
  /** Stop when `Atomics.load(stop, 0) !== 0`. */
  stop?: Int32Array;
  /** Return `"slice"` after this long (see `DeviceRunLimits.sliceMs`). */
  sliceMs?: number;
}

/**
 * Control messages are read once the polls since the last read weigh this much: an empty poll
 * weighs 1 (about 0.1 µs), one that moved frames 16 (microseconds), so the socket is read about
 * every half millisecond however full the bursts, and a loop of mostly empty polls does not
 * spend its time in a recvmsg(2) answering EAGAIN.
 */
const CONTROL_EVERY = 4096;
/** Weight of a poll that moved frames (see {@linkcode CONTROL_EVERY}). */
const BUSY_POLL_WEIGHT = 16;
/**
 * An arena for both ports, or null when the kernel refuses the reservation (strict overcommit):
 * the forwarder then copies with a loop over words, slower but the same frames.
 */
function reserveArena(): MemoryArena | null {
  try {
    return MemoryArena.reserve();
  } catch {
    return null;
  }
}

/** Longest sleep in poll(2) while nothing forwards, ms. */
const IDLE_WAIT_MS = 10;

/**
 * A forwarder between two vhost-user sockets.
 *
 * @example
 * ```ts ignore
 * import { ForwardDevice } from "./forward_device.ts";
 * using fwd = ForwardDevice.listen("/run/a.sock", "/run/b.sock");
 * fwd.run({ durationMs: 10_000 });
 * console.log(fwd.aToB.packets, fwd.bToA.packets, fwd.aToB.dropped);
 * ```
 */
export class ForwardDevice {
  /** Port A (its `errors` and `sessionsEnded` are A's). */
  readonly a: VhostUserDevice;
  /** Port B. */
  readonly b: VhostUserDevice;
  /** Frames from A's driver to B's. */
  readonly aToB: RelayStats;
  /** Frames from B's driver to A's. */
  readonly bToA: RelayStats;
  readonly #path: ForwardPath;
  readonly #idleFds = [-1, -1];
  /** The arena this forwarder reserved (closed with it), or null (none, or the caller's). */
  readonly #arena: MemoryArena | null;
  readonly #shared: boolean;
  #polls = 0;
  #startedAt = -1;

  private constructor(
    a: VhostUserDevice,
    b: VhostUserDevice,
    burst: number | undefined,
    arena: MemoryArena | null,
    shared: boolean,
  ) {
    this.#arena = arena;
    this.#shared = shared;
    this.a = a;
    this.b = b;
    this.#path = new ForwardPath(burst);
    this.aToB = this.#path.aToB;
    this.bToA = this.#path.bToA;
    for (const [k, d] of [[0, a], [1, b]] as const) {
      d.paused = true; // the devices answer their frontends; the forwarder moves the frames
      d.onPairsChanged = () => this.#setPort(k, d);
    }
  }

  /**
   * Listens at `pathA` and `pathB` (one frontend session at a time on each).
   *
   * @example
   * ```ts ignore
   * import { ForwardDevice } from "./forward_device.ts";
   * const fwd = ForwardDevice.listen("/run/a.sock", "/run/b.sock", { queuePairs: 2 });
   * ```
   */
  static listen(pathA: string, pathB: string, options: ForwardDeviceOptions = {}): ForwardDevice {
    const arena = options.memoryArena === undefined ? reserveArena() : null;
    const port = {
      ...options,
      features: options.features ?? DEFAULT_DEVICE_FEATURES | featureMask("NET_F_MRG_RXBUF"),
      memoryArena: options.memoryArena ?? arena ?? undefined,
    };
    let a: VhostUserDevice | null = null;
    try {
      a = VhostUserDevice.listen(pathA, port);
      const b = VhostUserDevice.listen(pathB, port);
      return new ForwardDevice(a, b, options.burst, arena, port.memoryArena !== undefined);
    } catch (e) {
      a?.close();
      arena?.close();
      throw e;
    }
  }

  /** True when both ports map their memory into one arena (copies are memmoves). */
  get sharedArena(): boolean {
    return this.#shared;
  }

  /** `performance.now()` when both ports first ran a pair, or -1. */
  get startedAt(): number {
    return this.#startedAt;
  }

  /** Pairs being forwarded now. */
  get pairs(): number {
    return this.#path.pairs;
  }

  /**
   * One iteration: forwards a burst per pair and direction; reads both ports' control messages
   * about every half millisecond (see `CONTROL_EVERY`), or on every call while no pair runs. Never throws for what a frontend
   * did: a rule broken ends that port's session (see its `errors`).
   */
  poll(): number {
    if (this.#path.pairs === 0) {
      this.a.poll();
      this.b.poll();
      return 0;
    }
    let moved = 0;
    try {
      moved = this.#path.poll();
    } catch (e) {
      const port = this.#path.faultPort === 0 ? this.a : this.b;
      port.backend.endSession(e instanceof Error ? e : new Error(String(e)));
    }
    this.#polls += moved > 0 ? BUSY_POLL_WEIGHT : 1;
    if (this.#polls >= CONTROL_EVERY) {
      // Between bursts: every chain popped was pushed and published (or is held by a frame in
      // progress, which GET_VRING_BASE's stop of that ring drops with it).
      this.#polls = 0;
      this.a.poll();
      this.b.poll();
    }
    return moved;
  }

  /**
   * Polls until a limit is reached or a port is closed.
   *
   * @example
   * ```ts ignore
   * import { ForwardDevice } from "./forward_device.ts";
   * const fwd = ForwardDevice.listen("/run/a.sock", "/run/b.sock");
   * const end = fwd.run({ durationMs: 5000 }); // "duration"
   * ```
   */
  run(limits: ForwardRunLimits = {}): DeviceRunEnd {
    const duration = limits.durationMs ?? Infinity;
    const stop = limits.stop;
    const sliceEnd = limits.sliceMs === undefined ? Infinity : performance.now() + limits.sliceMs;
    for (let i = 0;;) {
      this.poll();
      if (++i < 256 && this.#path.pairs > 0) continue;
      i = 0;
      if (this.a.backend.closed || this.b.backend.closed) return "closed";
      if (stop !== undefined && Atomics.load(stop, 0) !== 0) return "stop";
      const now = performance.now();
      if (this.#startedAt >= 0 && now - this.#startedAt >= duration) return "duration";
      if (now >= sliceEnd) return "slice";
      if (this.#path.pairs === 0) this.#waitIdle(Math.min(IDLE_WAIT_MS, sliceEnd - now));
    }
  }

  /** Ends both sessions and closes both sockets. Idempotent. */
  close(): void {
    this.a.close();
    this.b.close();
    this.#arena?.close(); // after both sessions ended: no region is mapped in it any more
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** Port `k`'s running pairs changed: hand them to the forwarder. */
  #setPort(k: 0 | 1, device: VhostUserDevice): void {
    const b = device.backend;
    const pairs: DevicePair[] = [];
    if (b.started && b.memory !== null) {
      for (let i = 0; i < b.queuePairs; i++) {
        const rx = b.queue(2 * i), tx = b.queue(2 * i + 1);
        if (rx === null || tx === null) break; // pairs forward by number: stop at a gap
        pairs.push(new VringPair(rx, tx, b.vrings[2 * i], b.vrings[2 * i + 1]));
      }
    }
    const port: ForwardPort = {
      memory: b.memory ?? EMPTY_MEMORY,
      pairs,
      mergeable: (b.features & featureMask("NET_F_MRG_RXBUF")) !== 0n,
    };
    this.#path.setPort(k, port);
    this.#polls = 0;
    if (this.#path.pairs > 0 && this.#startedAt < 0) this.#startedAt = performance.now();
  }

  /** Sleeps up to `ms` until either socket is readable. */
  #waitIdle(ms: number): void {
    if (ms <= 0) return;
    const fds = this.#idleFds;
    let n = 0;
    for (const d of [this.a, this.b]) {
      const fd = d.backend.connectionFd >= 0 ? d.backend.connectionFd : d.backend.listenFd;
      if (fd >= 0) fds[n++] = fd;
    }
    fds.length = n;
    if (n > 0) pollIn(fds, ms);
    fds.length = 2;
  }
}
