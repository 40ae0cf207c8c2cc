/**
 * Runs a {@linkcode VhostUserDevice} on its own Worker thread, so a driver in the main thread
 * (which blocks while it waits for vhost-user replies) and the device each busy-poll one core.
 *
 * ```
 *   main thread: DeviceThread ──postMessage(start)──► worker: VhostUserDevice.run()
 *     stats  ◄── SharedArrayBuffer counters (Float64Array, refreshed ~every 1 ms) ──┘
 *     stop() ──► SharedArrayBuffer control word (Int32Array) ──► run() returns
 *     done() ◄── postMessage(final counters, errors as strings) ◄──┘
 * ```
 *
 * Once its run ends by itself (count, duration) the worker moves no more frames but keeps
 * answering the frontend until it disconnects or {@linkcode DeviceThread.stop} is called, so a
 * driver can still stop its rings and close cleanly.
 *
 * @module
 */

import type { DeviceMode, NetDeviceStats } from "./net_device.ts";

export type { DeviceMode, NetDeviceStats } from "./net_device.ts";

/** Options of {@linkcode DeviceThread.start}. */
export interface DeviceThreadOptions {
  /** Socket path; default a fresh socket in a new temp dir (removed at stop). */
  path?: string;
  /** Connect to a listening frontend (server mode) instead of listening. */
  connect?: boolean;
  /** Data path mode (default `sink`). */
  mode?: DeviceMode;
  /** Echo: swap the MAC addresses. */
  macSwap?: boolean;
  /** Source: UDP frame size, 60..2036 bytes, up to 9000 with MRG_RXBUF negotiated (default 64). */
  frameSize?: number;
  /** Queue pairs offered (default 1). */
  queuePairs?: number;
  /**
   * Serve each queue pair on a Worker of its own (nested in the device's), with per-queue
   * counters in the result; `count` and `hook` do not combine with it.
   */
  workers?: boolean;
  /**
   * Start paused: answer the frontend, move no frames until {@linkcode DeviceThread.resume}.
   * A source for DPDK's virtio PMD needs it: the port's start discards, uncounted, every frame
   * already in its receive rings, so resume once the port has started.
   */
  paused?: boolean;
  /** End after this many frames (see `DeviceRunLimits.count`). */
  count?: number;
  /** End this long after the first session started. */
  durationMs?: number;
  /** End when the first frontend session ends. */
  untilDisconnect?: boolean;
  /** Virtio features offered (default `DEFAULT_DEVICE_FEATURES`). */
  features?: bigint;
  /** Protocol features offered (default `DEFAULT_PROTOCOL_FEATURES`; add CONFIG to serve `mac`). */
  protocolFeatures?: bigint;
  /** MAC address in the served virtio_net_config (6 bytes). */
  mac?: Uint8Array;
  /** MTU in the served virtio_net_config (offers the MTU protocol feature). */
  mtu?: number;
  /**
   * Module (URL or specifier) whose `hook` export runs over each burst the driver transmits, on
   * the device's thread (a function cannot cross to a Worker). An optional `result()` export is
   * called when the device closes; its value comes back as `hookResult`.
   */
  hook?: string;
}

/** What a device thread reports when it ends. */
export interface DeviceThreadResult {
  /** Final counters. */
  stats: NetDeviceStats;
  /** Every error of the run (session-ending ones included), as `Name: message` strings. */
  errors: string[];
  /** What the hook module's `result()` returned at close (after {@linkcode DeviceThread.stop}). */
  hookResult?: unknown;
  /** With `workers`: each queue pair's final counters (after {@linkcode DeviceThread.stop}). */
  queues?: NetDeviceStats[];
}

/** Control word values (index {@linkcode CONTROL_COMMAND} of the control Int32Array). */
export const DeviceCommand = {
  /** Keep running. */
  RUN: 0,
  /** Leave the loop, close the device, report. */
  STOP: 1,
  /** Stop moving frames but keep answering the frontend; report the counters. */
  PAUSE: 2,
  /** Started paused: answer the frontend, move nothing until RUN. */
  HOLD: 3,
} as const;

/** Index of the command in the control Int32Array. */
export const CONTROL_COMMAND = 0;
/** Index of the counters' sequence number (odd while the worker writes them). */
export const CONTROL_SEQUENCE = 1;
/** Int32 slots of the control SharedArrayBuffer. */
export const CONTROL_SLOTS = 2;
/** DeviceThread's control only, after the shared slots: the link status to report (1 up, 0 down). */
export const CONTROL_LINK = CONTROL_SLOTS;
/** Order of the counters in the counters Float64Array. */
export const COUNTER_FIELDS: readonly (keyof NetDeviceStats)[] = [
  "fromDriverPackets",
  "fromDriverBytes",
  "toDriverPackets",
  "toDriverBytes",
  "toDriverDropped",
  "calls",
];

/** The message that starts the worker. */
export interface DeviceWorkerStart {
  /** Always `"start"`. */
  type: "start";
  /** Socket path. */
  path: string;
  /** Options as given to {@linkcode DeviceThread.start} (path resolved). */
  options: DeviceThreadOptions;
  /** Control SharedArrayBuffer ({@linkcode CONTROL_SLOTS} Int32 slots). */
  control: SharedArrayBuffer;
  /** Counters SharedArrayBuffer (one Float64 per {@linkcode COUNTER_FIELDS} entry). */
  counters: SharedArrayBuffer;
}

/** Messages the worker posts. */
export type DeviceWorkerReply =
  | { type: "ready" }
  | { type: "paused"; stats: NetDeviceStats }
  | ({ type: "done" } & DeviceThreadResult)
  | { type: "closed"; errors: string[]; hookResult?: unknown; queues?: NetDeviceStats[] };

/** The worker's last report: every error, the hook module's result, per-queue counters. */
interface Closing {
  errors: string[];
  hookResult?: unknown;
  queues?: NetDeviceStats[];
}

/** How long {@linkcode DeviceThread.stop} waits for the worker before terminating it. */
const STOP_TIMEOUT_MS = 15_000;

/**
 * A vhost-user net device running on a Worker. Call {@linkcode stop} (or use `await using`) to
 * end it, even after {@linkcode done} resolved: that terminates the worker and removes the
 * temp dir.
 *
 * @example
 * ```ts ignore
 * import { DeviceThread } from "./device_thread.ts";
 * import { VirtioNet } from "../driver/virtio_net.ts";
 * await using device = await DeviceThread.start({ mode: "sink" });
 * const port = VirtioNet.open({ path: device.path });
 * // ... port.txBurst(...), port.txDrain() ...
 * port.close();
 * const { stats, errors } = await device.stop();
 * ```
 */
export class DeviceThread {
  /** The vhost-user socket path. */
  readonly path: string;
  readonly #worker: Worker;
  readonly #control: Int32Array;
  readonly #counters: Float64Array;
  readonly #done: Promise<DeviceThreadResult>;
  readonly #closed: Promise<Closing>;
  readonly #tempDir: string | null;
  readonly #paused: Promise<NetDeviceStats>;
  #result: DeviceThreadResult | null = null;
  #stopping: Promise<DeviceThreadResult> | null = null;

  private constructor(
    path: string,
    worker: Worker,
    control: Int32Array,
    counters: Float64Array,
    done: Promise<DeviceThreadResult>,
    closed: Promise<Closing>,
    paused: Promise<NetDeviceStats>,
    tempDir: string | null,
  ) {
    this.path = path;
    this.#worker = worker;
    this.#control = control;
    this.#counters = counters;
    this.#done = done.then((r) => (this.#result = r));
    this.#closed = closed;
    // If the worker ends instead of pausing (count reached meanwhile), its final counters do.
    this.#paused = Promise.race([paused, this.#done.then((r) => ({ ...r.stats }))]);
    this.#tempDir = tempDir;
  }

  /**
   * Starts the worker; resolves once the device listens (or is connected). Rejects with the
   * worker's error when it could not (bad path, nobody listening for `connect`...).
   *
   * @example
   * ```ts ignore
   * import { DeviceThread } from "./device_thread.ts";
   * const device = await DeviceThread.start({ mode: "source", count: 1000 });
   * console.log(device.path);
   * ```
   */
  static async start(options: DeviceThreadOptions = {}): Promise<DeviceThread> {
    let tempDir: string | null = null;
    let path = options.path;
    if (path === undefined) {
      tempDir = await Deno.makeTempDir({ prefix: "virtio-user-device-" });
      path = `${tempDir}/vhost-user.sock`;
    }
    const control = new Int32Array(new SharedArrayBuffer(4 * (CONTROL_SLOTS + 1)));
    control[CONTROL_LINK] = 1;
    const counters = new Float64Array(new SharedArrayBuffer(8 * COUNTER_FIELDS.length));
    if (options.paused) control[CONTROL_COMMAND] = DeviceCommand.HOLD; // before the worker reads it
    const worker = new Worker(new URL("./device_worker.ts", import.meta.url), { type: "module" });
    let ready!: () => void;
    let failed!: (e: Error) => void;
    const started = new Promise<void>((resolve, reject) => {
      ready = resolve;
      failed = reject;
    });
    let finish!: (r: DeviceThreadResult) => void;
    const done = new Promise<DeviceThreadResult>((resolve) => finish = resolve);
    let closedWith!: (closing: Closing) => void;
    const closed = new Promise<Closing>((resolve) => closedWith = resolve);
    let pausedWith!: (stats: NetDeviceStats) => void;
    const paused = new Promise<NetDeviceStats>((resolve) => pausedWith = resolve);
    // Settling a settled promise does nothing, so the first report of each kind wins.
    const end = (errors: string[], hookResult?: unknown, queues?: NetDeviceStats[]) => {
      finish({ stats: readCounters(control, counters), errors });
      closedWith({ errors, hookResult, queues });
      failed(new Error(`device worker did not start: ${errors.join("; ")}`));
    };
    worker.onmessage = (e: MessageEvent<DeviceWorkerReply>) => {
      const m = e.data;
      if (m.type === "ready") ready();
      else if (m.type === "paused") pausedWith(m.stats);
      else if (m.type === "done") finish({ stats: m.stats, errors: m.errors });
      else end(m.errors, m.hookResult, m.queues);
    };
    worker.onerror = (e: ErrorEvent) => {
      e.preventDefault(); // reported through the result, not as an uncaught error
      end([`device worker: ${e.message}`]);
    };
    worker.onmessageerror = () => end(["device worker: a message could not be read"]);
    const start: DeviceWorkerStart = {
      type: "start",
      path,
      options: { ...options, path },
      control: control.buffer as SharedArrayBuffer,
      counters: counters.buffer as SharedArrayBuffer,
    };
    worker.postMessage(start);
    try {
      await started;
    } catch (e) {
      worker.terminate();
      if (tempDir !== null) await Deno.remove(tempDir, { recursive: true }).catch(() => {});
      throw e;
    }
    return new DeviceThread(path, worker, control, counters, done, closed, paused, tempDir);
  }

  /**
   * The counters now: a consistent snapshot of what the worker published (at most ~1 ms old
   * while it runs), or the final counters once it ended.
   */
  get stats(): NetDeviceStats {
    if (this.#result !== null) return { ...this.#result.stats };
    return readCounters(this.#control, this.#counters);
  }

  /**
   * Resolves when the run ends by itself (count, duration, disconnect) or after
   * {@linkcode stop}.
   *
   * @example
   * ```ts ignore
   * import { DeviceThread } from "./device_thread.ts";
   * await using device = await DeviceThread.start({ mode: "source", count: 1000 });
   * // ... a driver receives ...
   * const { stats } = await device.done(); // stats.toDriverPackets === 1000
   * ```
   */
  done(): Promise<DeviceThreadResult> {
    return this.#done;
  }

  /**
   * Stops moving frames while still answering the frontend (so a driver can drain what was
   * sent and close cleanly); resolves with the counters, which no longer change. Then call
   * {@linkcode stop}.
   *
   * @example
   * ```ts ignore
   * import { DeviceThread } from "./device_thread.ts";
   * const device = await DeviceThread.start({ mode: "source" });
   * // ... a driver receives for a while ...
   * const { toDriverPackets } = await device.pause(); // the driver can now receive exactly these
   * ```
   */
  pause(): Promise<NetDeviceStats> {
    if (this.#result !== null) return Promise.resolve({ ...this.#result.stats });
    // RUN or HOLD -> PAUSE only: a stop already asked for stays a stop.
    Atomics.compareExchange(this.#control, CONTROL_COMMAND, DeviceCommand.RUN, DeviceCommand.PAUSE);
    Atomics.compareExchange(
      this.#control,
      CONTROL_COMMAND,
      DeviceCommand.HOLD,
      DeviceCommand.PAUSE,
    );
    return this.#paused;
  }

  /**
   * Starts moving frames after `start({ paused: true })`; does nothing otherwise.
   *
   * @example
   * ```ts ignore
   * import { DeviceThread } from "./device_thread.ts";
   * const device = await DeviceThread.start({ mode: "source", paused: true });
   * // ... the frontend connects and starts its port ...
   * device.resume();
   * ```
   */
  resume(): void {
    Atomics.compareExchange(this.#control, CONTROL_COMMAND, DeviceCommand.HOLD, DeviceCommand.RUN);
  }

  /**
   * Sets the link status the device reports (see `VhostUserDevice.linkUp`): down, no frame
   * moves and the frontend's port goes link `"down"`; up again, both resume. Takes effect
   * within about a millisecond.
   *
   * @example
   * ```ts ignore
   * import { DeviceThread } from "./device_thread.ts";
   * const device = await DeviceThread.start({ mode: "sink" });
   * device.setLinkUp(false);
   * ```
   */
  setLinkUp(up: boolean): void {
    Atomics.store(this.#control, CONTROL_LINK, up ? 1 : 0);
  }

  /**
   * Sets the stop flag, waits for the worker to close the device (its final counters and every
   * error), terminates it and removes the temp dir. Idempotent.
   *
   * @example
   * ```ts ignore
   * import { DeviceThread } from "./device_thread.ts";
   * const device = await DeviceThread.start({ mode: "sink" });
   * const { stats, errors } = await device.stop();
   * ```
   */
  stop(): Promise<DeviceThreadResult> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  /** Same as {@linkcode stop}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  async #stop(): Promise<DeviceThreadResult> {
    Atomics.store(this.#control, CONTROL_COMMAND, DeviceCommand.STOP);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<Closing>((resolve) => {
      timer = setTimeout(() => {
        resolve({
          errors: [`device worker did not stop within ${STOP_TIMEOUT_MS} ms; terminated`],
        });
      }, STOP_TIMEOUT_MS);
    });
    let closing: Closing;
    try {
      closing = await Promise.race([this.#closed, timeout]);
    } finally {
      clearTimeout(timer);
      this.#worker.terminate();
      if (this.#tempDir !== null) {
        await Deno.remove(this.#tempDir, { recursive: true }).catch(() => {});
      }
    }
    const stats = this.#result?.stats ?? readCounters(this.#control, this.#counters);
    // The closing report has every error, including any after the run ended.
    const { errors, hookResult, queues } = closing;
    this.#result = { stats, errors, hookResult, queues };
    return { stats: { ...stats }, errors: [...errors], hookResult, queues };
  }
}

/**
 * Reads the counters the worker publishes, retrying while it is writing them (a sequence lock:
 * the sequence number is odd during a write and changes with every write).
 *
 * @example
 * ```ts
 * import { CONTROL_SLOTS, COUNTER_FIELDS, readCounters } from "./device_thread.ts";
 * const control = new Int32Array(new SharedArrayBuffer(4 * CONTROL_SLOTS));
 * const counters = new Float64Array(new SharedArrayBuffer(8 * COUNTER_FIELDS.length));
 * console.assert(readCounters(control, counters).calls === 0);
 * ```
 */
export function readCounters(control: Int32Array, counters: Float64Array): NetDeviceStats {
  const stats = {} as NetDeviceStats;
  for (let tries = 0;; tries++) {
    const before = Atomics.load(control, CONTROL_SEQUENCE);
    for (let i = 0; i < COUNTER_FIELDS.length; i++) stats[COUNTER_FIELDS[i]] = counters[i];
    // A writer killed mid-write leaves the number odd: after many tries take what is there.
    if ((before & 1) === 0 && Atomics.load(control, CONTROL_SEQUENCE) === before) return stats;
    if (tries > 10_000) return stats;
  }
}

/**
 * Publishes `stats` into the counters (worker side of {@linkcode readCounters}); allocates
 * nothing.
 *
 * @example
 * ```ts
 * import { CONTROL_SLOTS, COUNTER_FIELDS, publishCounters } from "./device_thread.ts";
 * const control = new Int32Array(new SharedArrayBuffer(4 * CONTROL_SLOTS));
 * const counters = new Float64Array(new SharedArrayBuffer(8 * COUNTER_FIELDS.length));
 * publishCounters(control, counters, {
 *   fromDriverPackets: 1, fromDriverBytes: 60, toDriverPackets: 0, toDriverBytes: 0, toDriverDropped: 0, calls: 0,
 * });
 * console.assert(counters[0] === 1);
 * ```
 */
export function publishCounters(
  control: Int32Array,
  counters: Float64Array,
  stats: NetDeviceStats,
): void {
  Atomics.add(control, CONTROL_SEQUENCE, 1); // odd: readers retry
  counters[0] = stats.fromDriverPackets;
  counters[1] = stats.fromDriverBytes;
  counters[2] = stats.toDriverPackets;
  counters[3] = stats.toDriverBytes;
  counters[4] = stats.toDriverDropped;
  counters[5] = stats.calls;
  Atomics.add(control, CONTROL_SEQUENCE, 1); // even again: the snapshot is consistent
}
