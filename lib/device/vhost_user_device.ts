/**
 * A complete vhost-user net device: the protocol server ({@linkcode VhostUserBackend}) and the
 * data path ({@linkcode NetDevicePath}) run from one busy loop. It is the project's built-in
 * peer: `sink` counts what a driver sends, `source` generates, `echo` sends frames back.
 *
 * ```
 *   frontend ──socket──► backend.poll() (every 256 polls) ──onQueuesChanged──► rebuild pairs
 *   driver rings ◄─────► NetDevicePath.poll() (every poll): pair i = vrings 2i (rx), 2i+1 (tx)
 * ```
 *
 * A frontend that breaks a rule (protocol or ring) only ends its own session: the error is kept
 * in {@linkcode VhostUserDevice.errors} and a listening device waits for the next frontend.
 *
 * @module
 */

import { pollIn } from "../../ffi/poll.ts";
import { VhostUserBackend, type VhostUserBackendOptions } from "../vhost_user/backend.ts";
import {
  type DeviceMode,
  type NetDeviceOptions,
  NetDevicePath,
  type NetDeviceStats,
} from "./net_device.ts";
import { writeUdpFrame } from "../packet/udp_frame.ts";
import { EMPTY_MEMORY, VringPair } from "./vring_pair.ts";
import type { PairWorkers } from "./pair_workers.ts";
import { featureMask } from "../virtio/features.ts";

export type {
  DeviceMode,
  FrameBurst,
  FrameHook,
  NetDeviceOptions,
  NetDeviceStats,
} from "./net_device.ts";
export type { VhostUserBackend, VhostUserBackendOptions } from "../vhost_user/backend.ts";
export type { PairWorkers } from "./pair_workers.ts";

/** Options of {@linkcode VhostUserDevice}: the data path's and the protocol server's. */
export interface VhostUserDeviceOptions extends NetDeviceOptions, VhostUserBackendOptions {
  /**
   * Serve queue pair i on Worker i of these (one per offered pair; their own data path options
   * apply, not this device's `mode`...): this thread then only runs the protocol and sleeps in
   * poll(2) between messages. The device owns them from here on and closes them with itself.
   */
  workers?: PairWorkers;
}

/** When {@linkcode VhostUserDevice.run} returns; the first limit reached wins. */
export interface DeviceRunLimits {
  /**
   * Stop once this many frames were handled since the device was created: `sink`/`echo` count
   * `fromDriverPackets` (frames taken from the driver), `source` counts `toDriverPackets`. The data path never
   * handles more than this many, so the count is exact.
   */
  count?: number;
  /** Stop this long after the first session started (its queues ran). */
  durationMs?: number;
  /** Stop when `Atomics.load(stop, 0) !== 0` (checked every 256 polls). */
  stop?: Int32Array;
  /** Stop when the first frontend session ends. */
  untilDisconnect?: boolean;
  /**
   * Return `"slice"` after this long, so the caller's thread can handle events (signals, timers)
   * and call `run` again with the same limits (they are absolute, so slicing changes nothing).
   */
  sliceMs?: number;
  /**
   * Called about every {@linkcode tickMs} of loop time, e.g. to publish the counters; also when
   * a session ends, before its socket closes, so a frontend that sees the hang-up finds the
   * published counters final for that session.
   */
  onTick?: (device: VhostUserDevice) => void;
  /** Period of {@linkcode onTick} in ms (default 1). */
  tickMs?: number;
}

/** Why {@linkcode VhostUserDevice.run} returned. */
export type DeviceRunEnd = "count" | "duration" | "stop" | "disconnect" | "closed" | "slice";

/** Longest sleep in poll(2) while idle (no ring runs), ms. */
const IDLE_WAIT_MS = 100;
/** ...when a `stop` flag or an `onTick` must also be served while idle, ms. */
const IDLE_WAIT_SHARED_MS = 10;

/** Control messages are read once every this many data polls (each read costs a syscall). */
const CONTROL_EVERY = 256;

/**
 * A vhost-user net device served from the calling thread's busy loop.
 *
 * @example
 * ```ts ignore
 * import { VhostUserDevice } from "./vhost_user_device.ts";
 * using device = VhostUserDevice.listen("/run/vhost.sock", { mode: "sink" });
 * device.run({ count: 1_000_000 }); // returns once a frontend sent a million frames
 * console.log(device.stats.fromDriverPackets, device.errors);
 * ```
 */
export class VhostUserDevice {
  /**
   * The protocol server (its `onQueuesChanged` and `onSessionEnd` belong to this device: do not
   * replace them).
   */
  readonly backend: VhostUserBackend;
  /**
   * Counters since the device was created (device's view: rx = from the driver, tx = to the
   * driver); they continue across sessions.
   */
  readonly stats: NetDeviceStats;
  /** Every session-ending error (protocol or data path), in order. */
  readonly errors: Error[] = [];
  /**
   * Called after the device rebuilt its pairs from the backend's running rings (a ring started,
   * stopped or changed, a session ended), e.g. for a data path kept outside the device.
   */
  onPairsChanged: ((device: VhostUserDevice) => void) | null = null;

  readonly #path: NetDevicePath;
  #polls = 0;
  readonly #idleFds: number[] = [-1];
  /** The data path has pairs to service and is not paused. */
  #active = false;
  #paused = false;
  #startedAt = -1;
  #connected: boolean;
  #sessionsEnded = 0;
  #lastError: Error | null = null;
  /** Pair Workers, when the data path runs on them. */
  readonly #workers: PairWorkers | null;
  /**
   * Per vring, the position its Worker stopped it at while the ring stays started (the
   * backend's own queue object did not move), or -1: what attach and GET_VRING_BASE use.
   * Float64: a packed ring's position sets bit 31 while its used wrap counter is 1.
   */
  readonly #positions: Float64Array;
  /** An error found while rebuilding (inside a backend callback), to end the session with. */
  #pendingError: Error | null = null;
  /** Each pair Worker's counters as the device closed. */
  #finalQueues: NetDeviceStats[] | null = null;
  /** The running {@linkcode run}'s `onTick`, also called as a session ends. */
  #onTick: ((device: VhostUserDevice) => void) | undefined = undefined;

  private constructor(backend: VhostUserBackend, options: VhostUserDeviceOptions) {
    this.backend = backend;
    let frame = options.frame;
    if (options.mode === "source" && frame === undefined) {
      frame = new Uint8Array(64);
      writeUdpFrame(frame, 0, 64);
    }
    this.#path = new NetDevicePath(backend.memory ?? EMPTY_MEMORY, { ...options, frame });
    this.stats = this.#path.stats;
    this.#connected = backend.connected;
    this.#workers = options.workers ?? null;
    this.#positions = new Float64Array(2 * backend.queuePairs).fill(-1);
    if (this.#workers !== null) {
      if (this.#workers.count !== backend.queuePairs) {
        throw new RangeError(
          `${this.#workers.count} pair Workers for ${backend.queuePairs} queue pairs: give one each`,
        );
      }
      backend.onVringStop = (_, index) => this.#ringStopped(index);
    }
    backend.onQueuesChanged = () => this.#rebuild();
    backend.onSessionEnd = () => {
      if (this.#workers !== null) {
        // The Workers stop first, so the counters published below are final for the session.
        for (let i = 0; i < this.#workers.count; i++) this.#detachPair(i);
        this.#workers.sum(this.stats);
      }
      this.#onTick?.(this);
    };
  }

  /**
   * Listens at `path` for a frontend (one session at a time; after one ends, the next may
   * connect).
   *
   * @example
   * ```ts ignore
   * import { VhostUserDevice } from "./vhost_user_device.ts";
   * const device = VhostUserDevice.listen("/run/vhost.sock", { mode: "echo", macSwap: true });
   * ```
   */
  static listen(path: string, options: VhostUserDeviceOptions = {}): VhostUserDevice {
    return VhostUserDevice.#over(VhostUserBackend.listen(path, options), options);
  }

  /**
   * Connects to a frontend in server mode (e.g. DPDK `net_virtio_user0,path=SOCK,server=1`);
   * the device is closed when that session ends.
   *
   * @example
   * ```ts ignore
   * import { VhostUserDevice } from "./vhost_user_device.ts";
   * const device = VhostUserDevice.connect("/run/virtio-user.sock", { mode: "source" });
   * ```
   */
  static connect(path: string, options: VhostUserDeviceOptions = {}): VhostUserDevice {
    return VhostUserDevice.#over(VhostUserBackend.connect(path, options), options);
  }

  static #over(backend: VhostUserBackend, options: VhostUserDeviceOptions): VhostUserDevice {
    try {
      return new VhostUserDevice(backend, options);
    } catch (e) {
      backend.close();
      throw e;
    }
  }

  /** The data path's mode. */
  get mode(): DeviceMode {
    return this.#path.mode;
  }

  /** `performance.now()` when the first session's queues started running, or -1. */
  get startedAt(): number {
    return this.#startedAt;
  }

  /** Frontend sessions that have ended so far. */
  get sessionsEnded(): number {
    return this.#sessionsEnded;
  }

  /** True while at least one queue pair is being serviced. */
  get active(): boolean {
    return this.#active;
  }

  /**
   * When true, {@linkcode poll} moves no frames and only answers the frontend (its rings keep
   * their state); the counters stop changing.
   */
  get paused(): boolean {
    return this.#paused;
  }

  set paused(value: boolean) {
    if (value === this.#paused) return;
    const halted = this.#halted;
    this.#paused = value;
    if (this.#halted !== halted) this.#haltChanged();
  }

  /**
   * The link status this device reports (VIRTIO_NET_S_LINK_UP, virtio 1.2 §5.1.4). Setting it
   * false is pulling the cable: no frame moves either way until it is true again, and the
   * frontend is told (BACKEND_CONFIG_CHANGE_MSG, when it gave a back-end channel) so its port
   * goes link `"down"`. It sees the status with VIRTIO_NET_F_STATUS and the CONFIG protocol
   * feature offered and negotiated.
   *
   * @example
   * ```ts ignore
   * import { VhostUserDevice } from "./vhost_user_device.ts";
   * const device = VhostUserDevice.listen("/run/vhost.sock");
   * device.linkUp = false; // the port's linkchange event fires with link "down"
   * ```
   */
  get linkUp(): boolean {
    return this.backend.linkUp;
  }

  set linkUp(up: boolean) {
    const halted = this.#halted;
    this.backend.setLinkUp(up);
    if (this.#halted !== halted) this.#haltChanged();
  }

  /** No frame moves: paused, or the link reported down. */
  get #halted(): boolean {
    return this.#paused || !this.backend.linkUp;
  }

  #haltChanged(): void {
    if (this.#workers !== null) {
      this.#rebuild(); // detach all (their counters final), or attach the running pairs
      this.#workers.sum(this.stats);
    }
    this.#active = !this.#halted && this.#path.pairs > 0;
  }

  /**
   * One iteration: services every running pair once; reads control messages every 256 calls,
   * or on every call while no pair runs. Returns the frames moved. Never throws for what the
   * frontend did: a data path error ends that session (see {@linkcode errors}).
   *
   * @example
   * ```ts ignore
   * import { VhostUserDevice } from "./vhost_user_device.ts";
   * const device = VhostUserDevice.listen("/run/vhost.sock");
   * for (;;) device.poll();
   * ```
   */
  poll(): number {
    if (!this.#active) {
      this.#pollControl();
      if (this.#workers !== null) this.#noteWorkers();
      return 0;
    }
    let moved: number;
    try {
      moved = this.#path.poll();
    } catch (e) {
      this.#dataPathFailed(e);
      return 0;
    }
    // Control messages are handled only here, between bursts. NetDevicePath.poll() pushes and
    // publishes every chain it pops before returning, so when GET_VRING_BASE arrives no chain
    // is in flight and the position the backend reports is exact (vhost-user.rst "Stopping
    // rings": the backend must stop processing the ring before replying).
    if (++this.#polls === CONTROL_EVERY) {
      this.#polls = 0;
      this.#pollControl();
    }
    return moved;
  }

  /**
   * Polls until a limit is reached (or the device is closed) and says which.
   *
   * @example
   * ```ts ignore
   * import { VhostUserDevice } from "./vhost_user_device.ts";
   * const device = VhostUserDevice.listen("/run/vhost.sock", { mode: "source" });
   * const end = device.run({ count: 1000, durationMs: 10_000 }); // "count" or "duration"
   * device.close();
   * ```
   */
  run(limits: DeviceRunLimits = {}): DeviceRunEnd {
    const stats = this.stats;
    const source = this.#path.mode === "source";
    const count = limits.count ?? Infinity;
    const duration = limits.durationMs ?? Infinity;
    const stop = limits.stop;
    const untilDisconnect = limits.untilDisconnect ?? false;
    const onTick = limits.onTick;
    const tickMs = limits.tickMs ?? 1;
    const start = performance.now();
    const sliceEnd = limits.sliceMs === undefined ? Infinity : start + limits.sliceMs;
    let nextTick = start + tickMs;
    if (this.#workers !== null && count !== Infinity) {
      throw new RangeError(
        "run: count cannot be exact with pair Workers (each takes frames on its own); use " +
          "durationMs, stop or untilDisconnect",
      );
    }
    this.#path.limit = count; // the data path itself never goes past the count
    this.#onTick = onTick;
    try {
      for (let i = 0;;) {
        this.poll();
        if ((source ? stats.toDriverPackets : stats.fromDriverPackets) >= count) return "count";
        // The rest every 256 polls, or on each poll while idle (each then costs a syscall).
        if (++i < 256 && this.#active) continue;
        i = 0;
        if (this.backend.closed) return "closed";
        if (untilDisconnect && this.#sessionsEnded > 0) return "disconnect";
        if (stop !== undefined && Atomics.load(stop, 0) !== 0) return "stop";
        const now = performance.now();
        if (this.#startedAt >= 0 && now - this.#startedAt >= duration) return "duration";
        if (now >= sliceEnd) return "slice";
        if (onTick !== undefined && now >= nextTick) {
          nextTick = now + tickMs;
          onTick(this);
        }
        if (!this.#active) {
          // Nothing to service: sleep in poll(2) on the socket until a frontend connects or
          // sends, instead of spinning. Bounded so the limits above are still checked.
          let wait = stop !== undefined || onTick !== undefined
            ? IDLE_WAIT_SHARED_MS
            : IDLE_WAIT_MS;
          if (sliceEnd - now < wait) wait = sliceEnd - now;
          if (this.#startedAt >= 0 && this.#startedAt + duration - now < wait) {
            wait = this.#startedAt + duration - now;
          }
          this.#waitIdle(wait);
        }
      }
    } finally {
      this.#path.limit = Infinity;
      this.#onTick = undefined;
    }
  }

  /** Blocks up to `ms` until the session socket (or, with none, the listening one) is readable. */
  #waitIdle(ms: number): void {
    const b = this.backend;
    const fd = b.connectionFd >= 0 ? b.connectionFd : b.listenFd;
    if (fd < 0 || ms <= 0) return;
    this.#idleFds[0] = fd;
    pollIn(this.#idleFds, ms);
  }

  /** Ends any session and closes the socket. Idempotent. */
  close(): void {
    this.backend.close(); // ends the session: every pair is detached (see #rebuild)
    this.#path.detachAll();
    this.#active = false;
    const w = this.#workers;
    if (w !== null && this.#finalQueues === null) {
      w.sum(this.stats);
      this.#finalQueues = Array.from({ length: w.count }, (_, i) => w.queueStats(i));
      w.close();
    }
  }

  /**
   * Queue pair `i`'s own counters when pairs run on Workers ({@linkcode VhostUserDeviceOptions.workers}),
   * else null (one data path serves every pair).
   *
   * @example
   * ```ts ignore
   * import { VhostUserDevice } from "./vhost_user_device.ts";
   * const device = VhostUserDevice.listen("/run/vhost.sock", { queuePairs: 2, workers });
   * console.log(device.queueStats(0)?.fromDriverPackets);
   * ```
   */
  queueStats(i: number): NetDeviceStats | null {
    if (this.#workers === null) return null;
    return this.#finalQueues?.[i] ?? this.#workers.queueStats(i);
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #pollControl(): void {
    const b = this.backend;
    try {
      b.poll();
    } catch (e) {
      // poll() reports frontend faults through `error`; anything thrown is a local failure.
      const error = asError(e);
      this.#record(error);
      b.endSession(error);
    }
    this.#noteBackend();
    const pending = this.#pendingError;
    if (pending !== null) {
      this.#pendingError = null;
      this.#record(pending);
      b.endSession(pending);
    }
  }

  /** Worker mode: the aggregate counters, and a pair Worker's fault ends the session. */
  #noteWorkers(): void {
    const w = this.#workers!;
    w.sum(this.stats);
    for (let i = 0; i < w.count; i++) {
      const error = w.fault(i);
      if (error === null) continue;
      this.#record(error);
      this.backend.endSession(error);
    }
  }

  /** Stops pair `i`'s Worker, keeping the positions of its rings that stay started. */
  #detachPair(i: number): void {
    const b = this.backend;
    let at: [number, number] | null;
    try {
      at = this.#workers!.detach(i);
    } catch (e) {
      this.#pendingError ??= asError(e);
      return;
    }
    if (at === null) return;
    if (b.vrings[2 * i].queue !== null) this.#positions[2 * i] = at[0];
    if (b.vrings[2 * i + 1].queue !== null) this.#positions[2 * i + 1] = at[1];
  }

  /** GET_VRING_BASE on vring `index` (backend.onVringStop): its position from its Worker. */
  #ringStopped(index: number): number {
    const i = index >> 1;
    if (this.#workers!.running(i)) this.#detachPair(i);
    const at = this.#positions[index];
    this.#positions[index] = -1; // the ring stops: the backend's base is right from now on
    return at;
  }

  /** Any error from the data path: end the session, keep listening. */
  #dataPathFailed(e: unknown): void {
    const error = asError(e);
    this.#path.detachAll();
    this.#active = false;
    this.backend.endSession(error); // calls #rebuild, which records it
    this.#record(error);
  }

  /** Rebuilds the pairs from `backend.running` (onQueuesChanged). */
  #rebuild(): void {
    const b = this.backend, path = this.#path;
    this.#noteBackend();
    if (this.#workers !== null) {
      this.#rebuildWorkers();
      this.onPairsChanged?.(this);
      return;
    }
    path.detachAll();
    if (b.started && b.memory !== null) {
      path.setMemory(b.memory);
      path.mergeable = (b.features & featureMask("NET_F_MRG_RXBUF")) !== 0n;
      for (let i = 0; i < b.queuePairs; i++) {
        const rx = b.queue(2 * i), tx = b.queue(2 * i + 1);
        if (rx !== null && tx !== null) {
          path.attach(new VringPair(rx, tx, b.vrings[2 * i], b.vrings[2 * i + 1]));
        }
      }
    } else {
      path.setMemory(EMPTY_MEMORY); // let an unmapped GuestMemory be collected
    }
    this.#active = !this.#halted && path.pairs > 0;
    if (path.pairs > 0 && this.#startedAt < 0) this.#startedAt = performance.now();
    this.#polls = 0;
    this.onPairsChanged?.(this);
  }

  /** #rebuild with pair Workers: every pair detached, then each running one attached again. */
  #rebuildWorkers(): void {
    const b = this.backend, w = this.#workers!;
    for (let i = 0; i < w.count; i++) this.#detachPair(i);
    for (let k = 0; k < this.#positions.length; k++) {
      if (b.vrings[k].queue === null) this.#positions[k] = -1; // stopped or reset
    }
    let pairs = 0;
    if (b.started && b.memory !== null && !this.#halted && this.#pendingError === null) {
      for (let i = 0; i < b.queuePairs; i++) {
        if (b.queue(2 * i) === null || b.queue(2 * i + 1) === null) continue;
        try {
          w.attach(i, b, this.#positions[2 * i], this.#positions[2 * i + 1]);
        } catch (e) {
          this.#pendingError ??= asError(e); // ended at the next control poll
          break;
        }
        this.#positions[2 * i] = this.#positions[2 * i + 1] = -1; // the Worker's now
        pairs++;
      }
    }
    if (pairs > 0 && this.#startedAt < 0) this.#startedAt = performance.now();
  }

  /** Notes session ends and errors the backend reported. */
  #noteBackend(): void {
    const b = this.backend;
    const connected = b.connected;
    if (connected !== this.#connected) {
      this.#connected = connected;
      if (!connected) this.#sessionsEnded++;
    }
    const error = b.error;
    if (error === null || error === this.#lastError) return;
    // accept() failing again and again (e.g. EMFILE) sets a fresh error each time: keep one.
    const last = this.errors[this.errors.length - 1];
    if (!connected && last !== undefined && last.message === error.message) {
      this.#lastError = error;
      return;
    }
    this.#record(error);
  }

  #record(error: Error): void {
    if (error === this.#lastError) return;
    this.#lastError = error;
    this.errors.push(error);
  }
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
